"""``low_resolution``: Wiener sharpening of the blur that down- and up-sampling left, clamped to the local range."""

from __future__ import annotations

import numpy as np

from restorer.operators.deconvolution import WIENER_PER_VAR, clamp_overshoot, deconvolve, error_sigma
from restorer.operators.filters import as_image
from restorer.operators.kernels import gaussian_kernel

_LOWRES_SIGMA, _LOWRES_BALANCE = 0.4, 1e-2  # tuned: area-down + bicubic-up acts like a Gaussian of 0.4 * scale


def sharpen_resolution(
    img: np.ndarray, scale: float, strength: float = 1.0, noise: float | None = None, quality: float | None = None
) -> np.ndarray:
    """Restore detail lost to down-sampling by ``scale`` (image already back at full size), without halos.

    Wiener deconvolution of the equivalent Gaussian blur (std ``0.4 * scale`` px), then each pixel is kept within
    its 3x3 neighbourhood's range in the input, so edges steepen without over- or undershoot.

    Args:
        img: float32 HxWx3 RGB in [0, 1].
        scale: linear down-sampling factor the content suffered (>= 1).
        strength: up to 1 a blend with the input, above 1 a weaker prior; never a change of the scale.
        noise: std of the noise left in ``img`` (0-255 scale); ``None`` measures it.
        quality: JPEG quality the image went through, None if it was not compressed.

    Returns:
        float32 HxWx3 RGB in [0, 1].

    """
    x = as_image(img)
    if float(scale) <= 1.0 or strength <= 0:
        return x.copy()
    psf, floor = resolution_psf(scale)
    balance = floor + WIENER_PER_VAR * error_sigma(noise, quality, x) ** 2
    out = deconvolve(x, psf, balance=balance, strength=max(strength, 1.0))
    out = clamp_overshoot(out, x, 1)
    if strength < 1.0:
        out = x + np.float32(strength) * (out - x)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def resolution_psf(scale: float) -> tuple[np.ndarray, float]:
    """The Gaussian that down- and up-sampling by ``scale`` acts like, and its least Wiener balance."""
    return gaussian_kernel(_LOWRES_SIGMA * max(float(scale), 1.0)), _LOWRES_BALANCE
