"""``blur``: non-blind deconvolution of an isotropic Gaussian or defocus-disk PSF."""

from __future__ import annotations

import numpy as np

from restorer.operators.deconvolution import deconvolve
from restorer.operators.filters import as_image
from restorer.operators.kernels import disk_kernel, gaussian_kernel


def deblur(
    img: np.ndarray, sigma: float, kernel: str = "gaussian", strength: float = 1.0, noise: float | None = None
) -> np.ndarray:
    """Undo isotropic optical blur by non-blind deconvolution (:func:`~restorer.operators.deconvolution.deconvolve`).

    Args:
        img: float32 HxWx3 RGB in [0, 1].
        sigma: equivalent Gaussian std of the blur in px; a defocus disk has radius ``2 * sigma``.
        kernel: ``"gaussian"`` or ``"defocus"``.
        strength: multiplier on ``sigma``.
        noise: std of the noise left in ``img`` (0-255 scale), e.g. after denoising; ``None`` measures it.

    Returns:
        float32 HxWx3 RGB in [0, 1].

    """
    if kernel not in ("gaussian", "defocus"):
        raise ValueError(f"unknown blur kernel {kernel!r}; expected 'gaussian' or 'defocus'")
    x, s = as_image(img), float(sigma) * float(strength)
    if s <= 0:
        return x.copy()
    psf = disk_kernel(2.0 * s) if kernel == "defocus" else gaussian_kernel(s)
    return deconvolve(x, psf, noise)
