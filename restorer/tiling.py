"""Tile-by-tile processing of large images: local operators run on overlapping tiles, each writes only its core.

An operator whose output at a pixel depends only on input within ``reach`` px of it (non-local means: patch radius
plus search radius; a deconvolution: the kernel's support times the iterations) gives, on a tile padded by at least
that much, exactly what it gives on the whole image at the tile's core. Memory then scales with the tile, not the
image: a 24 MP photo is one float32 copy in and one out, not the dozen whole-image temporaries an operator makes.
Images up to :data:`TILE_PIXELS` are never tiled, so results there stay what they always were.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

#: Images with more pixels than this are restored tile by tile (a 2048 x 2048 image, 4.2 MP, is still whole).
TILE_PIXELS = 2048 * 2048
#: Core side (px) of a tile for the cheap local filters (non-local means, rain removal).
TILE = 1024
#: Core side (px) of a tile for deconvolutions, whose FFTs of the mirrored tile take about 30 tile-sized arrays.
DECONV_TILE = 512


def needs_tiling(shape: tuple[int, ...], max_pixels: int = TILE_PIXELS) -> bool:
    """Whether an image of ``shape`` (H, W, ...) is processed tile by tile under the threshold ``max_pixels``."""
    return int(shape[0]) * int(shape[1]) > int(max_pixels)


def tiles(h: int, w: int, tile: int, overlap: int) -> Iterator[tuple[tuple[slice, slice], tuple[slice, slice]]]:
    """``(padded, core)`` slice pairs covering an ``h x w`` image; ``core`` is relative to the padded tile.

    Cores partition the image into tiles of about ``tile`` px (sizes balanced, so there is no sliver at the end);
    each padded tile adds up to ``overlap`` px on every side, less at the image border.

    >>> [(p[0].start, p[0].stop, c[0].start, c[0].stop) for p, c in tiles(10, 4, 6, 2)][:2]
    [(0, 7, 0, 5), (3, 10, 2, 7)]
    """
    if overlap < 0:
        raise ValueError(f"overlap must be >= 0, got {overlap}")
    for y0, y1 in _cuts(h, tile):
        py0, py1 = max(0, y0 - overlap), min(h, y1 + overlap)
        for x0, x1 in _cuts(w, tile):
            px0, px1 = max(0, x0 - overlap), min(w, x1 + overlap)
            yield (slice(py0, py1), slice(px0, px1)), (slice(y0 - py0, y1 - py0), slice(x0 - px0, x1 - px0))


def _cuts(n: int, tile: int) -> list[tuple[int, int]]:
    # [start, stop) of about n / tile balanced pieces of 0..n.
    if tile < 1:
        raise ValueError(f"tile must be >= 1, got {tile}")
    k = max(1, -(-n // tile))
    edges = [round(i * n / k) for i in range(k + 1)]
    return list(zip(edges[:-1], edges[1:], strict=True))


def map_tiles(
    fn: Callable[..., np.ndarray],
    image: np.ndarray,
    *,
    tile: int = TILE,
    overlap: int = 32,
    out: np.ndarray | None = None,
    boxed: bool = False,
) -> np.ndarray:
    """``fn`` applied tile by tile to ``image`` (HxW or HxWxC), each tile's core written into ``out``.

    Args:
        fn: maps an image tile to an output of the same height and width (float32 for image operators).
        image: the whole image; only read.
        tile: core side in px.
        overlap: context px read around each core; at least the operator's reach, or seams appear.
        out: where to write (may not be ``image``: neighbours still read the input); default a new float32 array.
        boxed: call ``fn(tile, box)`` with the tile's ``(rows, cols)`` slices in ``image`` (to cut per-pixel
            side inputs alike).

    Returns:
        ``out``.

    """
    h, w = image.shape[:2]
    if out is None:
        out = np.empty(image.shape, np.float32)
    elif out is image or np.shares_memory(out, image):
        raise ValueError("map_tiles cannot write into its input: a tile's neighbours still read its overlap")
    for padded, core in tiles(h, w, tile, overlap):
        res = fn(np.ascontiguousarray(image[padded]), padded) if boxed else fn(np.ascontiguousarray(image[padded]))
        out[padded][core] = res[core]
    return out


def map_tiles_inplace(
    fn: Callable[..., np.ndarray], image: np.ndarray, *, tile: int = TILE, overlap: int = 32, boxed: bool = False
) -> np.ndarray:
    """:func:`map_tiles` writing back into ``image`` itself, holding only two rows of tiles aside.

    A row of tiles reads ``overlap`` px of the rows above and below it, so each row's result is written back only
    once the row after it has been computed (``overlap`` may therefore not exceed a row's height). Saves a whole
    output image against :func:`map_tiles`.
    """
    h, w = image.shape[:2]
    rows, cols = _cuts(h, tile), _cuts(w, tile)
    if len(rows) > 1 and overlap > min(b - a for a, b in rows):
        raise ValueError(f"overlap {overlap} is larger than a row of tiles ({tile} px) written in place")
    pending: tuple[slice, np.ndarray] | None = None
    for y0, y1 in rows:
        py0, py1 = max(0, y0 - overlap), min(h, y1 + overlap)
        band = np.empty((y1 - y0, w, *image.shape[2:]), image.dtype)
        for x0, x1 in cols:
            px0, px1 = max(0, x0 - overlap), min(w, x1 + overlap)
            box = (slice(py0, py1), slice(px0, px1))
            res = fn(np.ascontiguousarray(image[box]), box) if boxed else fn(np.ascontiguousarray(image[box]))
            band[:, x0:x1] = res[y0 - py0 : y1 - py0, x0 - px0 : x1 - px0]
        if pending is not None:
            image[pending[0]] = pending[1]
        pending = (slice(y0, y1), band)
    if pending is not None:
        image[pending[0]] = pending[1]
    return image


def proxy_crops(image: np.ndarray, n: int = 4, size: int = 512, align: int = 16) -> np.ndarray:
    """``n x n`` crops of ``size`` px spread evenly over ``image``, stacked into one image (origins on ``align``).

    A bounded stand-in for statistics of a large image that are means or quantiles over small blocks (the noise
    level): the blocks of a few crops spread over the frame are a sample of all of them. Returns ``image`` when it
    is not larger than the crops together.
    """
    h, w = image.shape[:2]
    if h <= n * size or w <= n * size:
        return image
    ys = [int(v) // align * align for v in np.linspace(0, h - size, n)]
    xs = [int(v) // align * align for v in np.linspace(0, w - size, n)]
    return np.concatenate([np.concatenate([image[y : y + size, x : x + size] for x in xs], axis=1) for y in ys])
