"""``rain``: thin bright streaks found as excess over the background that persists along the rain direction."""

from __future__ import annotations

import math

import cv2
import numpy as np

from restorer.operators.filters import as_image, clip01

_RAIN_OFFSETS = (2, 3, 4)  # px across the streak where the background is sampled (streaks are 1-2 px wide)
_RAIN_LENGTH = 17  # tuned: px a bright run must hold along the streak direction (streaks are 10-40 px)
_RAIN_T0, _RAIN_T1 = 0.01, 0.06  # tuned: residual brightness where removal starts and is complete


def _line_se(length: int, angle: float) -> np.ndarray:
    # A 1 px line structuring element of `length` px at `angle` degrees (counter-clockwise, y down).
    r = length // 2
    se = np.zeros((2 * r + 1, 2 * r + 1), np.uint8)
    t = math.radians(angle)
    dx, dy = r * math.cos(t), -r * math.sin(t)
    cv2.line(se, (round(r - dx), round(r - dy)), (round(r + dx), round(r + dy)), 1, 1)
    return se


def derain(img: np.ndarray, density: float, angle: float, strength: float = 1.0) -> np.ndarray:
    """Remove thin bright rain streaks running along ``angle``.

    The background is the median of pixels 2-4 px to either side across the streak direction; the excess over it
    is rain where it persists along the streak direction (a morphological opening of the excess with a 17 px line
    at ``angle``), and is subtracted there, fading in between two thresholds.

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
    t = math.radians(float(angle) + 90.0)
    ux, uy = math.cos(t), -math.sin(t)
    h, w = x.shape[:2]
    shifted = [
        cv2.warpAffine(x, np.float32([[1, 0, d * ux], [0, 1, d * uy]]), (w, h), borderMode=cv2.BORDER_REFLECT)
        for k in _RAIN_OFFSETS
        for d in (k, -k)
    ]
    excess = np.maximum(x - np.median(shifted, axis=0), 0.0)
    along = cv2.morphologyEx(excess.mean(axis=2), cv2.MORPH_OPEN, _line_se(_RAIN_LENGTH, angle))
    weight = np.clip((along - _RAIN_T0 / s) / ((_RAIN_T1 - _RAIN_T0) / s), 0.0, 1.0)
    return clip01(x - weight[..., None] * excess)
