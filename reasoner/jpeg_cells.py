"""The JPEG quantisation cells of a decoded image: where its luma DCT coefficients were before compression.

A baseline JPEG stores each 8x8 block's DCT coefficient ``c`` as ``round(c / T)`` for the step ``T`` of its
quantisation table, so the decoder's coefficient ``d`` says only that ``c`` lay in the cell ``[d - T/2, d + T/2]``.
The image before compression lies in that box, and the box is convex: projecting any estimate onto it (clipping
each coefficient into its cell) never moves the estimate further from that image. A deblocking filter followed by
this projection therefore keeps only what the compression left uncertain (the POCS step of Zakhor 1992 and Yang et
al. 1995), and a restoration's change that stays inside the cells is one the file itself allows.

Only luma is used: chroma is subsampled (4:2:0) and quantised in another table. Steps are the IJG tables libjpeg
uses at a quality factor (what ``reasoner.measure`` reads off the DCT grid). The grid starts at the image's
top-left pixel unless cropped since (or a tile or crop of it is at hand): :func:`grid_origin` finds where, whatever
the quality (the diagnosis asks before it reads the quality), and :func:`carried_grid` says whether the image really
carries the grid of a quality (a resize after the compression erases it, and then nothing here applies).
"""

from __future__ import annotations

import numpy as np

from reasoner.common import content_key, remembered

_IJG_LUMA = np.array(
    [16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
     14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
     49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99],
    dtype=np.float64,
).reshape(8, 8)  # fmt: skip
#: Mean distance of the source's coefficients to the nearest multiple of their step, in steps, up to which the image
#: is taken to carry the grid of a quality (aligned JPEGs of held-out photos at quality 15-80, also double-compressed
#: and noisy ones: 0.02-0.07; a PNG, or the same JPEG cropped off the grid: 0.26, the 0.25 of no clustering at all).
GRID_FIT_MAX = 0.12
#: Coefficients the fit is measured on: beyond half a step (smaller ones sit at zero for any step), steps of at least
#: this (a step of 1-2 clusters anything), and at least this many of them.
_MIN_STEP, _MIN_COEFFICIENTS = 3.0, 64
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def dct_matrix(n: int = 8) -> np.ndarray:
    """The orthonormal DCT-II matrix JPEG's 8x8 transform is (``C @ block @ C.T``)."""
    k = np.arange(n)
    c = np.sqrt(2.0 / n) * np.cos(np.pi * (2 * k[None, :] + 1) * k[:, None] / (2 * n))
    c[0] /= np.sqrt(2.0)
    return c


DCT8 = dct_matrix()


def ijg_table(quality: int) -> np.ndarray:
    """The IJG luminance quantisation table libjpeg uses at ``quality`` (1-100).

    >>> ijg_table(50)[0, :3].tolist(), float(ijg_table(100)[7, 7])
    ([16.0, 11.0, 10.0], 1.0)
    """
    q = min(max(int(quality), 1), 100)
    scale = 5000.0 / q if q < 50 else 200.0 - 2.0 * q
    return np.clip(np.floor((_IJG_LUMA * scale + 50.0) / 100.0), 1, 255)


def luma255(rgb: np.ndarray) -> np.ndarray:
    """ITU-R BT.601 luma on the 0-255 scale (the Y that JPEG encoders quantise)."""
    return (rgb @ _LUMA) * 255.0


def luma_coefficients(y: np.ndarray, origin: tuple[int, int] = (0, 0)) -> np.ndarray:
    """DCT coefficients of luma ``y`` (0-255, level-shifted here): (rows, cols, 8, 8).

    The whole 8x8 blocks of the grid starting at ``origin`` (row, column).
    """
    y = y[origin[0] :, origin[1] :]
    h, w = y.shape[0] // 8, y.shape[1] // 8
    return DCT8 @ (y[: h * 8, : w * 8] - 128.0).reshape(h, 8, w, 8).transpose(0, 2, 1, 3) @ DCT8.T


def coefficients(rgb: np.ndarray, origin: tuple[int, int] = (0, 0)) -> np.ndarray:
    """:func:`luma_coefficients` of ``rgb``'s luma."""
    return luma_coefficients(luma255(rgb), origin)


def grid_fit(rgb: np.ndarray, quality: int) -> float | None:
    """How far ``rgb``'s luma coefficients sit from multiples of ``quality``'s steps (0: on them; 0.25: unrelated).

    Mean over the AC coefficients beyond half a step, of steps at least 3, of the distance to the nearest multiple
    in steps; None when too few coefficients qualify (a flat or tiny image says nothing). At most
    :data:`GRID_FIT_MAX` means the image is a JPEG of that quality decoded on this grid.
    """
    if min(np.shape(rgb)[:2]) < 8:
        return None
    return _fit(coefficients(rgb), quality)


#: Qualities either side of the diagnosed one that :func:`fitted_quality` tries: the diagnosis reads the quality off
#: nine low-frequency steps and can be a few off (a q27 file read as 25 fits its cells at 0.14, above the bound).
QUALITY_SPAN = 6


def fitted_quality(
    rgb: np.ndarray, quality: int, span: int = QUALITY_SPAN, origin: tuple[int, int] = (0, 0)
) -> tuple[int, float] | None:
    """The quality within ``span`` of ``quality`` whose steps ``rgb`` fits best, and that fit (:func:`grid_fit`).

    On the grid starting at ``origin``; None when no quality's fit can be measured.
    """
    if min(rgb.shape[:2]) < 8 + max(origin):
        return None
    c = coefficients(rgb, origin)
    qualities = range(max(1, quality - span), min(100, quality + span) + 1)
    fits = [(f, q) for q in qualities if (f := _fit(c, q)) is not None]
    if not fits:
        return None
    fit, best = min(fits)
    return best, fit


def _fit(c: np.ndarray, quality: int) -> float | None:
    t = np.broadcast_to(ijg_table(quality), c.shape)
    use = (np.abs(c) > t / 2) & (t >= _MIN_STEP)
    use[..., 0, 0] = False
    if int(use.sum()) < _MIN_COEFFICIENTS:
        return None
    return float((np.abs(c - t * np.round(c / t)) / t)[use].mean())


#: High-frequency DCT positions (u + v >= 5) whose steps exceed 1 at every quality up to 95: on a JPEG's own grid
#: most of them decode to (almost) exactly zero, on any other grid few do (:func:`grid_origin`).
_HIGH = np.add.outer(np.arange(8), np.arange(8)) >= 5
#: Side (px) of the central window :func:`grid_origin` looks on, and how many times more non-zero high-frequency
#: coefficients the next best offset must have than the best. 16 bundled photos cropped off the grid: Pillow q20-95
#: 1.2-16 (1.09-1.2 with noise sigma 3 added after a q75); without a grid (the PNG originals, blurred, noisy, resized,
#: up-sampled 2x) 1.00-1.05. Any offset is as good as another on an image with no grid, so a false find costs nothing.
ORIGIN_WINDOW, ORIGIN_LEAD = 192, 1.06


def grid_origin(rgb: np.ndarray) -> tuple[int, int]:
    """Where the 8x8 grid of a JPEG starts in ``rgb`` (row, column, each 0-7), whatever its quality.

    A tile or crop of a JPEG, or a JPEG cropped since, has its grid elsewhere than at the top-left pixel. The 64
    offsets are tried on a central window; the one whose blocks have the fewest non-zero high-frequency
    coefficients wins if it clearly leads (:data:`ORIGIN_LEAD`). (0, 0) when none does: no grid, or too small to tell
    (:func:`found_grid` tells the two apart).

    >>> rng = np.random.default_rng(0)
    >>> c = np.zeros((16, 16, 8, 8)); c[..., :3, :3] = rng.normal(0, 30, (16, 16, 3, 3))  # what a harsh JPEG keeps
    >>> blocks = (DCT8.T @ c @ DCT8).transpose(0, 2, 1, 3).reshape(128, 128) + 128
    >>> grey = lambda y: np.repeat(y[..., None] / 255.0, 3, axis=2)
    >>> grid_origin(grey(np.pad(blocks, ((3, 0), (5, 0)), mode="edge")[:128, :128]))   # cropped since: 3 rows, 5 cols
    (3, 5)
    >>> grid_origin(grey(rng.normal(128, 20, (128, 128))))
    (0, 0)
    """
    return found_grid(rgb) or (0, 0)


def found_grid(rgb: np.ndarray) -> tuple[int, int] | None:
    """:func:`grid_origin` where an offset clearly leads, None where none does (no JPEG grid, or too small to tell).

    >>> found_grid(np.random.default_rng(0).normal(0.5, 0.08, (128, 128, 3))) is None
    True
    """
    h, w = rgb.shape[:2]
    # The window starts a multiple of 8 from the top-left pixel, so an offset in it is the image's.
    y0, x0 = (max((n - ORIGIN_WINDOW) // 2 - 8, 0) // 8 * 8 for n in (h, w))
    window = luma255(rgb[y0 : y0 + ORIGIN_WINDOW + 8, x0 : x0 + ORIGIN_WINDOW + 8])
    rows, cols = (window.shape[0] - 8) // 8, (window.shape[1] - 8) // 8
    if rows * cols < 16:
        return None
    zeros = np.array([[(np.abs(luma_coefficients(window, (dy, dx))[:rows, :cols][..., _HIGH]) < 1.0).mean()
                       for dx in range(8)] for dy in range(8)])  # fmt: skip
    order = np.argsort(zeros, axis=None)
    if (1.001 - zeros.flat[order[-2]]) < ORIGIN_LEAD * (1.001 - zeros.flat[order[-1]]):
        return None
    dy, dx = np.unravel_index(order[-1], zeros.shape)
    return (int(dy), int(dx))


#: The last few :func:`fitted_grid` answers, by the image's content and the quality asked. An attempt that undoes
#: JPEG asks twice about the same source (the deblocking projects into its cells, the scorer checks the change
#: against them), and each retry of that source asks again: 30 ms each on a 512 px image.
_FITTED: dict[tuple, tuple[int, tuple[int, int], float] | None] = {}
_FITTED_KEPT = 8


def fitted_grid(rgb: np.ndarray, quality: int) -> tuple[int, tuple[int, int], float] | None:
    """The quality, origin and fit of the JPEG grid ``rgb`` fits best near ``quality``, however badly.

    :func:`grid_origin`, then :func:`fitted_quality` there; None when nothing can be measured.
    """
    pixels = np.ascontiguousarray(rgb)

    def fit() -> tuple[int, tuple[int, int], float] | None:
        origin = grid_origin(pixels)
        found = fitted_quality(pixels, quality, origin=origin)
        return None if found is None else (found[0], origin, found[1])

    return remembered(_FITTED, content_key(pixels, int(quality)), fit, _FITTED_KEPT)


def carried_grid(rgb: np.ndarray, quality: int) -> tuple[int, tuple[int, int], float] | None:
    """:func:`fitted_grid` where ``rgb`` carries that grid (:data:`GRID_FIT_MAX`).

    None otherwise: not a JPEG, or resized since the compression.
    """
    found = fitted_grid(rgb, quality)
    return found if found is not None and found[2] <= GRID_FIT_MAX else None


def project(
    source: np.ndarray, estimate: np.ndarray, quality: int, margin: float = 0.5, origin: tuple[int, int] = (0, 0)
) -> np.ndarray:
    """``estimate`` with its luma DCT coefficients clipped into ``source``'s quantisation cells at ``quality``.

    Cells are widened by ``margin`` (0-255 units) for the 8-bit rounding of the decoded source. The luma change is
    added to all three channels alike, which leaves both chroma differences as they were; pixels outside whole
    blocks of the grid starting at ``origin`` are left as ``estimate`` has them. Returns a new float32 image clipped
    to [0, 1].
    """
    cs = coefficients(source, origin)
    ce = coefficients(estimate, origin)
    half = ijg_table(quality) / 2.0 + margin
    delta = DCT8.T @ (np.clip(ce, cs - half, cs + half) - ce) @ DCT8
    h, w = delta.shape[0] * 8, delta.shape[1] * 8
    oy, ox = origin
    out = np.array(estimate, dtype=np.float32, copy=True)
    out[oy : oy + h, ox : ox + w] += (delta.transpose(0, 2, 1, 3).reshape(h, w) / 255.0).astype(np.float32)[..., None]
    return np.clip(out, 0.0, 1.0)


def outside(
    source: np.ndarray, estimate: np.ndarray, quality: int, margin: float = 0.5, origin: tuple[int, int] = (0, 0)
) -> float:
    """RMS (0-255 luma units, per coefficient) of the part of ``estimate``'s change that leaves the cells."""
    cs = coefficients(source, origin)
    ce = coefficients(estimate, origin)
    half = ijg_table(quality) / 2.0 + margin
    excess = np.maximum(np.abs(ce - cs) - half, 0.0)
    return float(np.sqrt(np.mean(excess**2))) if excess.size else 0.0
