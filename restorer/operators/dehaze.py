"""``haze``: the dark-channel prior, its transmission refined and bounded by the error in the image.

Constants marked "tuned" were fitted for PSNR on crops of the calibration photos (``rl.photos.CALIBRATION_PHOTOS``)
with ``rl.degradations`` haze and AgenticIR-style haze (alone and with noise, JPEG, low resolution), and on the same
photos without haze given a false haze diagnosis.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from restorer.operators.deconvolution import error_sigma
from restorer.operators.filters import as_image, channel_min, clip01

_HAZE_EPS = 1e-2
#: Least transmission, and how it grows with the error (0-255) left in the image (tuned): dividing by t amplifies
#: noise and JPEG blocks by 1 / t, so a noisier image keeps more of its veil.
T_MIN, T_PER_SIGMA = 0.1, 8.0
#: Detail gain (tuned): the dehazed base gets 1 / t; the detail layer (input minus a guided-filter base of radius
#: DETAIL_RADIUS) gets 1 / t only in proportion v / (v + (DETAIL_K * error) ** 2), v its local variance, so noise,
#: blocks and smooth sky are not amplified.
DETAIL_RADIUS, DETAIL_K = 2, 5.0
#: Sky protection (tuned on false haze over bright paper and moon crops; costs 0.4 dB on true haze): where the
#: input is about as bright as the airlight (from SKY_BRIGHT of it up) and smooth (local std below SKY_STD plus twice
#: the error), the transmission is at least SKY_T. Sky has no dark pixels, so the prior reads it as dense haze, and
#: 1 / t would inflate its faint colour differences and compression steps into blotches.
SKY_BRIGHT, SKY_STD, SKY_T = 0.8, 0.02, 0.4


def guided_filter(guide: np.ndarray, src: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """He et al.'s guided filter: ``src`` (float32 HxW) smoothed edge-aware along ``guide`` (float32 HxW).

    Args:
        guide: the guidance image, float32 HxW.
        src: the image to filter, float32 HxW (or HxWxC with a single-channel guide: each channel alike).
        radius: box window radius in px.
        eps: regularisation on the guide's local variance (units of ``guide`` squared).

    Returns:
        float32 of ``src``'s shape.

    """
    size = (2 * radius + 1, 2 * radius + 1)

    def box(a):
        return cv2.boxFilter(a, cv2.CV_32F, size, borderType=cv2.BORDER_REFLECT)

    g = guide if src.ndim == guide.ndim else guide[..., None]
    mean_i, mean_p = box(guide), box(src)
    if src.ndim != guide.ndim:
        mean_i = mean_i[..., None]
    cov = box(g * src) - mean_i * mean_p
    var = box(guide * guide) - box(guide) ** 2
    a = cov / ((var if src.ndim == guide.ndim else var[..., None]) + eps)
    b = mean_p - a * mean_i
    return box(a) * g + box(b)


def _sky(grey: np.ndarray, airlight: float, sigma: float) -> np.ndarray:
    # Weight in [0, 1] of sky-like pixels: bright (near the airlight) and smooth beyond the error, feathered.
    r = max(3, min(grey.shape) // 32)
    size = (2 * r + 1, 2 * r + 1)
    mean = cv2.boxFilter(grey, -1, size, borderType=cv2.BORDER_REFLECT)
    std = np.sqrt(np.maximum(cv2.boxFilter(grey * grey, -1, size, borderType=cv2.BORDER_REFLECT) - mean**2, 0.0))
    bright = np.clip((mean / max(airlight, 0.05) - SKY_BRIGHT) / (1.0 - SKY_BRIGHT), 0.0, 1.0)
    flat = np.clip(1.0 - std / (SKY_STD + 2.0 * sigma), 0.0, 1.0)
    return cv2.GaussianBlur((bright * flat).astype(np.float32), (0, 0), r)


def dehaze(
    img: np.ndarray,
    transmission: float,
    airlight: Sequence[float],
    beta: float | None = None,
    strength: float = 1.0,
    noise: float | None = None,
    quality: float | None = None,
) -> np.ndarray:
    """Remove haze with the dark-channel prior, its depth map scaled to the diagnosed mean transmission.

    Args:
        img: float32 HxWx3 RGB in [0, 1].
        transmission: diagnosed mean transmission in (0, 1]; the dark channel's ``omega`` is set so that the
            refined transmission map has this mean (the prior alone mistakes bright objects for haze).
        airlight: atmospheric light, RGB in [0, 1].
        beta: scattering coefficient; unused, the dark channel gives the relative depth.
        strength: up to 1 a blend of the dehazed image with the input (an unsure detection dehazes gently); above
            1 the haze opacity ``1 - transmission`` is taken that much stronger.
        noise: std (0-255) of the noise left in ``img``; ``None`` measures it.
        quality: JPEG quality the image went through, None if it was not compressed.

    Returns:
        float32 HxWx3 RGB in [0, 1].

    """
    x = as_image(img)
    s = float(strength)
    opacity = min((1.0 - float(transmission)) * max(s, 1.0), 0.95)
    if opacity <= 0 or s <= 0:
        return x.copy()
    a = np.maximum(np.asarray(airlight, np.float32).reshape(3), 0.05)
    patch = int(np.clip(min(x.shape[:2]) // 8, 15, 41)) | 1  # a few objects wide at any resolution
    dark = cv2.erode(channel_min(x / a), cv2.getStructuringElement(cv2.MORPH_RECT, (patch, patch)))
    grey = cv2.cvtColor(x, cv2.COLOR_RGB2GRAY)
    dark = guided_filter(grey, dark.astype(np.float32), max(8, min(x.shape[:2]) // 16), _HAZE_EPS)
    omega = min(opacity / max(float(dark.mean()), 1e-3), 1.0)
    sigma = error_sigma(noise, quality, x) / 255.0
    t_min = min(max(T_MIN, T_PER_SIGMA * sigma), 0.9)
    t = np.maximum(1.0 - omega * dark, min(t_min, 1.0 - opacity))
    if SKY_T > 0:
        t = t + _sky(grey, float(a.mean()), sigma) * np.maximum(np.float32(SKY_T) - t, 0.0)
    t = t[..., None]
    if DETAIL_K > 0 and sigma > 0:
        base = guided_filter(grey, x, DETAIL_RADIUS, (DETAIL_K * sigma) ** 2)
        detail = x - base
        energy = cv2.cvtColor(detail * detail, cv2.COLOR_RGB2GRAY)  # a weighted mean over the channels, fast
        v = cv2.boxFilter(energy, -1, (2 * DETAIL_RADIUS + 1,) * 2)[..., None]
        w = v / (v + np.float32((DETAIL_K * sigma) ** 2))
        out = (base - a) / t + a + detail * (1.0 + w * (1.0 / t - 1.0))
    else:
        out = (x - a) / t + a
    if s < 1.0:
        out = x + np.float32(s) * (out - x)
    return clip01(out)
