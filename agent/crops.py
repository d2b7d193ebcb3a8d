"""Big photos judged on crops: attempts run and are scored on a few crops, the chosen plan once at full size.

A 24 MP photo restored three times over costs three full passes of every operator, and most of that work is thrown
away (only one attempt is returned, often none). Above :attr:`agent.state.Settings.crops_above` pixels, and for a
restorer whose operators are local (``restorer.local``, the classical toolbox), the graph instead restores and
re-scores :data:`COUNT` crops of ``crop_side`` px — the middles of the photo's four quadrants, each cut with
:data:`MARGIN` px of real context around it so an operator's result at the crop equals its result on the whole photo
up to the operators' image-wide estimates — laid side by side as one 2 x 2 mosaic for the scorer. The chosen plan
then runs once on the whole photo, and that result is judged again against the whole input
(:func:`agent.graph.full_size`): returned only when that check says better too, so a plan that only looked good on the
crops never reaches the user.

Arrays: the input's crops (and each attempt's) are stored as one ``(COUNT, side + 2 * MARGIN, side + 2 * MARGIN, 3)``
float32 stack; :func:`mosaic` cuts their cores and tiles them for the scorer.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

#: Crops judged per attempt: the middles of the four quadrants (subject, sky and ground in most photos).
COUNT = 4
#: Context (px) cut around each crop: the local operators' reach (non-local means 8, rain 24, short deconvolutions
#: up to 64); the crop's own border pixels use it and are then dropped.
MARGIN = 64


def applies(shape: tuple[int, ...], above: int, side: int) -> bool:
    """Whether a photo of ``shape`` is judged on crops: more than ``above`` pixels (0: never) and room for them."""
    h, w = int(shape[0]), int(shape[1])
    return above > 0 and h * w > above and min(h, w) >= 2 * (side + 2 * MARGIN)


def boxes(shape: tuple[int, ...], side: int) -> list[tuple[int, int]]:
    """Top-left corners ``(y, x)`` of the :data:`COUNT` padded crops (``side + 2 * MARGIN`` square) of ``shape``.

    Each is centred on a quadrant's middle and kept inside the photo.

    >>> boxes((4000, 6000), 768)
    [(552, 1052), (552, 4052), (2552, 1052), (2552, 4052)]
    """
    h, w, full = int(shape[0]), int(shape[1]), side + 2 * MARGIN
    out = []
    for cy in (h // 4, 3 * h // 4):
        for cx in (w // 4, 3 * w // 4):
            out.append((min(max(0, cy - full // 2), h - full), min(max(0, cx - full // 2), w - full)))
    return out


def cut(pixels: np.ndarray, corners: list[tuple[int, int]], side: int) -> np.ndarray:
    """The padded crops of ``pixels`` at ``corners``, as one float32 stack."""
    full = side + 2 * MARGIN
    return np.stack([np.asarray(pixels[y : y + full, x : x + full], np.float32) for y, x in corners])


def mosaic(stack: np.ndarray) -> np.ndarray:
    """The crops' cores (margins dropped) tiled 2 x 2: one image the scorer reads like a photo."""
    cores = stack[:, MARGIN:-MARGIN, MARGIN:-MARGIN]
    return np.ascontiguousarray(np.concatenate([np.concatenate(list(cores[i : i + 2]), axis=1)
                                                for i in range(0, len(cores), 2)], axis=0))  # fmt: skip


def each(fn: Callable[[np.ndarray], np.ndarray], stack: np.ndarray) -> np.ndarray:
    """``fn`` run on every crop of ``stack`` on its own (each with its context), results stacked."""
    return np.stack([np.asarray(fn(np.ascontiguousarray(crop)), np.float32) for crop in stack])


def lineage(sources: list[int | None], chosen: int) -> list[int]:
    """Attempts to replay, in order, to rebuild attempt ``chosen`` from the input (``sources[i]``: attempt i's source).

    >>> lineage([None, 0, None], 1)
    [0, 1]
    """
    chain, i = [], chosen
    while i is not None:
        if i in chain:
            raise ValueError(f"attempt {chosen}'s sources loop: {sources}")
        chain.append(i)
        i = sources[i]
    return chain[::-1]


__all__ = ["COUNT", "MARGIN", "applies", "boxes", "cut", "each", "lineage", "mosaic"]
