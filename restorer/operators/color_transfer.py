"""Reference-guided colour transfer (not a degradation kind: the classical restorer runs it after the plan)."""

from __future__ import annotations

import cv2
import numpy as np

from restorer.operators.filters import as_image, clip01


def transfer_color(img: np.ndarray, reference: np.ndarray, weight: float = 1.0) -> np.ndarray:
    """Reinhard colour transfer: move the per-channel CIELAB mean and std towards ``reference``'s.

    Args:
        img: float32 HxWx3 RGB in [0, 1].
        reference: float HxWx3 RGB in [0, 1], any size.
        weight: blend in [0, 1]: 0 keeps ``img``, 1 applies the full transfer.

    Returns:
        float32 HxWx3 RGB in [0, 1].

    """
    x, r = as_image(img), as_image(reference)
    weight = min(max(float(weight), 0.0), 1.0)
    if weight == 0:
        return x.copy()
    lab = cv2.cvtColor(x, cv2.COLOR_RGB2Lab).reshape(-1, 3)
    ref = cv2.cvtColor(r, cv2.COLOR_RGB2Lab).reshape(-1, 3)
    ratio = np.clip(ref.std(0) / np.maximum(lab.std(0), 1e-3), 0.5, 2.0)  # a flat channel must not explode
    moved = ((lab - lab.mean(0)) * ratio + ref.mean(0)).astype(np.float32).reshape(x.shape)
    out = clip01(cv2.cvtColor(moved, cv2.COLOR_Lab2RGB))
    return clip01(x + np.float32(weight) * (out - x))
