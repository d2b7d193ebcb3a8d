"""``rain``: thin bright streaks found as excess over the background that persists along the rain direction."""

from __future__ import annotations

import numpy as np

from reasoner.streaks import streak_map, streak_parts, structure_lines
from restorer.operators.filters import as_image, clip01


def derain(img: np.ndarray, density: float, angle: float, strength: float = 1.0) -> np.ndarray:
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

    Returns:
        float32 HxWx3 RGB in [0, 1].

    """
    x, s = as_image(img), float(strength)
    if s <= 0 or density <= 0:
        return x.copy()
    excess, weight = streak_map(x, angle, s)
    weight[structure_lines(*streak_parts(excess, weight))] = 0.0
    return clip01(x - weight[..., None] * excess)
