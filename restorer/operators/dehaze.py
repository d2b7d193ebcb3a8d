"""``haze``: the dark-channel prior, its transmission refined and bounded by the error in the image.

Constants marked "tuned" were fitted for PSNR on crops of the calibration photos (``rl.photos.CALIBRATION_PHOTOS``)
with ``rl.degradations`` haze and AgenticIR-style haze (alone and with noise, JPEG, low resolution), and on the same
photos without haze given a false haze diagnosis.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from reasoner.measure.features import box_mean_std
from restorer.operators.deconvolution import error_sigma
from restorer.operators.filters import as_image, channel_min, clip01, guided_filter
from restorer.plan import haze_opacity

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


def _sky(grey: np.ndarray, airlight: float, sigma: float, r: int | None = None) -> np.ndarray:
    # Weight in [0, 1] of sky-like pixels: bright (near the airlight) and smooth beyond the error, feathered; ``r``
    # the window radius (default scaled to the image).
    r = max(3, min(grey.shape) // 32) if r is None else r
    mean, std = box_mean_std(grey, r)
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
    *,
    transmission_map: np.ndarray | None = None,
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
        transmission_map: float32 HxW transmission to use instead of estimating it from ``img`` (a tile of a large
            image is given its part of the whole image's, :func:`prepare_dehaze`).

    Returns:
        float32 HxWx3 RGB in [0, 1].

    """
    x = as_image(img)
    s = float(strength)
    opacity = haze_opacity(transmission, max(s, 1.0))
    if opacity <= 0 or s <= 0:
        return x.copy()
    a = np.maximum(np.asarray(airlight, np.float32).reshape(3), 0.05)
    grey = cv2.cvtColor(x, cv2.COLOR_RGB2GRAY)
    sigma = error_sigma(noise, quality, x) / 255.0
    t = _transmission(x, grey, a, opacity, sigma) if transmission_map is None else transmission_map
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


def _transmission(
    x: np.ndarray, grey: np.ndarray, a: np.ndarray, opacity: float, sigma: float, side: int | None = None
) -> np.ndarray:
    """The refined, bounded transmission map (float32 HxW) of ``x`` for airlight ``a`` and error ``sigma`` (0-1).

    ``side``: the shorter side of the image ``x`` stands for (a down-scaled proxy of a large one); windows are
    sized for that image and scaled to ``x``, so the proxy's map is the large image's, down-scaled.
    """
    n = min(x.shape[:2])
    side = n if side is None else int(side)
    k = n / side
    patch = int(np.clip(side // 8, 15, 41)) | 1  # a few objects wide at any resolution
    radius = max(8, side // 16)
    if side != n:
        patch, radius = max(1, round(patch * k)) | 1, max(1, round(radius * k))
    dark = cv2.erode(channel_min(x / a), cv2.getStructuringElement(cv2.MORPH_RECT, (patch, patch)))
    dark = guided_filter(grey, dark.astype(np.float32), radius, _HAZE_EPS)
    omega = min(opacity / max(float(dark.mean()), 1e-3), 1.0)
    t_min = min(max(T_MIN, T_PER_SIGMA * sigma), 0.9)
    t = np.maximum(1.0 - omega * dark, min(t_min, 1.0 - opacity))
    if SKY_T > 0:
        r = None if side == n else max(1, round(max(3, side // 32) * k))
        t = t + _sky(grey, float(a.mean()), sigma, r) * np.maximum(np.float32(SKY_T) - t, 0.0)
    return t


def prepare_dehaze(
    img: np.ndarray,
    transmission: float,
    airlight: Sequence[float],
    beta: float | None = None,
    strength: float = 1.0,
    noise: float | None = None,
    quality: float | None = None,
) -> dict:
    """What :func:`dehaze` reads from the whole image, for tiles of a large one: the transmission map and the noise.

    The map (a smooth, scene-scale quantity: a dark channel over objects, guided-filtered over a sixteenth of the
    frame) is estimated on an area-down-scaled copy of at most 4 MP and resized back; the noise is measured on
    full-resolution crops spread over the frame (down-scaling would average it away).
    """
    from restorer.operators.filters import estimate_noise
    from restorer.tiling import TILE_PIXELS, proxy_crops

    h, w = img.shape[:2]
    s = float(strength)
    opacity = haze_opacity(transmission, max(s, 1.0))
    if noise is None:
        noise = estimate_noise(proxy_crops(img))
    if opacity <= 0 or s <= 0:
        return {"noise": noise}
    k = min(1.0, (TILE_PIXELS / (h * w)) ** 0.5)
    small = (
        img
        if k >= 1.0
        else cv2.resize(img, (max(1, round(w * k)), max(1, round(h * k))), interpolation=cv2.INTER_AREA)
    )
    small = as_image(small)
    a = np.maximum(np.asarray(airlight, np.float32).reshape(3), 0.05)
    sigma = error_sigma(noise, quality) / 255.0
    t = _transmission(small, cv2.cvtColor(small, cv2.COLOR_RGB2GRAY), a, opacity, sigma, side=min(h, w))
    if t.shape != (h, w):
        t = cv2.resize(t.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    return {"noise": noise, "transmission_map": t.astype(np.float32, copy=False)}
