"""``haze``: the dark-channel prior, its transmission map refined by a guided filter and scaled to the diagnosis."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from restorer.operators.filters import as_image, clip01

_HAZE_T_MIN, _HAZE_EPS = 0.1, 1e-2


def guided_filter(guide: np.ndarray, src: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """He et al.'s guided filter: ``src`` (float32 HxW) smoothed edge-aware along ``guide`` (float32 HxW).

    Args:
        guide: the guidance image, float32 HxW.
        src: the image to filter, float32 HxW.
        radius: box window radius in px.
        eps: regularisation on the guide's local variance (units of ``guide`` squared).

    Returns:
        float32 HxW.

    """
    size = (2 * radius + 1, 2 * radius + 1)

    def box(a):
        return cv2.boxFilter(a, cv2.CV_32F, size, borderType=cv2.BORDER_REFLECT)

    mean_i, mean_p = box(guide), box(src)
    a = (box(guide * src) - mean_i * mean_p) / (box(guide * guide) - mean_i * mean_i + eps)
    b = mean_p - a * mean_i
    return box(a) * guide + box(b)


def dehaze(
    img: np.ndarray,
    transmission: float,
    airlight: Sequence[float],
    beta: float | None = None,
    strength: float = 1.0,
) -> np.ndarray:
    """Remove haze with the dark-channel prior, its depth map scaled to the diagnosed mean transmission.

    Args:
        img: float32 HxWx3 RGB in [0, 1].
        transmission: diagnosed mean transmission in (0, 1]; the dark channel's ``omega`` is set so that the
            refined transmission map has this mean (the prior alone mistakes bright objects for haze).
        airlight: atmospheric light, RGB in [0, 1].
        beta: scattering coefficient; unused, the dark channel gives the relative depth.
        strength: multiplier on the haze opacity ``1 - transmission``.

    Returns:
        float32 HxWx3 RGB in [0, 1].

    """
    x = as_image(img)
    opacity = min((1.0 - float(transmission)) * float(strength), 0.95)
    if opacity <= 0:
        return x.copy()
    a = np.maximum(np.asarray(airlight, np.float32).reshape(3), 0.05)
    patch = int(np.clip(min(x.shape[:2]) // 8, 15, 41)) | 1  # a few objects wide at any resolution
    dark = cv2.erode((x / a).min(axis=2), cv2.getStructuringElement(cv2.MORPH_RECT, (patch, patch)))
    grey = cv2.cvtColor(x, cv2.COLOR_RGB2GRAY)
    dark = guided_filter(grey, dark.astype(np.float32), max(8, min(x.shape[:2]) // 16), _HAZE_EPS)
    omega = min(opacity / max(float(dark.mean()), 1e-3), 1.0)
    t = np.maximum(1.0 - omega * dark, min(_HAZE_T_MIN, 1.0 - opacity))[..., None]
    return clip01((x - a) / t + a)
