"""``rain``: thin bright streaks found as excess over the background that persists along the rain direction."""

from __future__ import annotations

import numpy as np

from reasoner.streaks import carried_excess, streak_map, streak_parts, structure_lines
from restorer.operators.filters import as_image, clip01

#: Px around a pixel the streak map reads (4 px shifts across, a 17 px line opening along, both ways).
STREAK_REACH = 24


def derain(
    img: np.ndarray, density: float, angle: float, strength: float = 1.0, structures: np.ndarray | None = None
) -> np.ndarray:
    """Remove thin bright rain streaks running along ``angle``, leaving thin bright structures alone.

    The background is the median of pixels 2-4 px to either side across the streak direction; the excess over it
    is rain where it persists along the streak direction (a morphological opening of the excess with a 17 px line
    at ``angle``), and is subtracted there, fading in between two thresholds (:func:`reasoner.streaks.streak_map`).
    A connected line carrying far more excess than the typical one (a tripod's leg, a mast, a cable in the light)
    is a structure and is kept (:func:`reasoner.streaks.structure_lines`).

    Args:
        img: float32 HxWx3 RGB in [0, 1].
        density: diagnosed streak coverage (mean streak opacity, 0-1); 0 leaves the image alone.
        angle: streak direction in degrees counter-clockwise from +x (image y axis down).
        strength: divides the detection thresholds (higher removes fainter streaks, and more texture with them).
        structures: HxW mask of the structure lines, found on the whole image (:func:`prepare_derain`, for tiles
            of a large one, whose lines a tile would cut); None finds them on ``img``.

    Returns:
        float32 HxWx3 RGB in [0, 1].

    """
    x, s = as_image(img), float(strength)
    if s <= 0 or density <= 0:
        return x.copy()
    excess, weight = streak_map(x, angle, s)
    if structures is None:
        structures = structure_lines(*streak_parts(weight, carried_excess(excess, weight)))
    weight[structures] = 0.0
    return clip01(x - weight[..., None] * excess)


def prepare_derain(img: np.ndarray, density: float, angle: float, strength: float = 1.0) -> dict:
    """What :func:`derain` reads from the whole image, for tiles of a large one: the structure lines.

    A line's excess is summed over the whole line, which a tile may cut; the streak map itself is local, so it is
    made tile by tile (bounded memory), and only its lines are labelled over the whole frame.
    """
    from restorer.tiling import TILE, map_tiles

    s = float(strength)
    if s <= 0 or density <= 0:
        return {}

    def maps(tile: np.ndarray) -> np.ndarray:
        excess, weight = streak_map(as_image(tile), angle, s)
        return np.dstack([weight, carried_excess(excess, weight)]).astype(np.float32)

    m = map_tiles(maps, img, tile=TILE, overlap=STREAK_REACH, out=np.empty((*img.shape[:2], 2), np.float32))
    return {"structures": structure_lines(*streak_parts(m[..., 0], m[..., 1]))}
