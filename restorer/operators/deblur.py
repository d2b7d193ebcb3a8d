"""``blur``: non-blind deconvolution of an isotropic Gaussian or defocus-disk PSF."""

from __future__ import annotations

import numpy as np

from restorer.operators.deconvolution import WIENER_FLOOR, WIENER_PER_VAR, deconvolve, error_sigma
from restorer.operators.filters import as_image
from restorer.operators.kernels import disk_kernel, gaussian_kernel

#: A Gaussian blur up to AMBIGUOUS_SIGMA px looks like 2-3x down-sampling, which measurements confuse with it; there
#: the Wiener prior is at least AMBIGUOUS_FLOOR (tuned), so that a down-sampled image read as blurred is not rung
#: (aliasing inverted: -2.7 dB instead of -5.3 dB at 2x) while a truly blurred one keeps most of its gain (4.9
#: instead of 6.3 dB at sigma 1, 3.6 instead of 3.8 at sigma 2).
AMBIGUOUS_SIGMA, AMBIGUOUS_FLOOR = 2.0, 1e-3


def deblur(
    img: np.ndarray,
    sigma: float,
    kernel: str = "gaussian",
    strength: float = 1.0,
    noise: float | None = None,
    quality: float | None = None,
) -> np.ndarray:
    """Undo isotropic optical blur by non-blind deconvolution (:func:`~restorer.operators.deconvolution.deconvolve`).

    Args:
        img: float32 HxWx3 RGB in [0, 1].
        sigma: equivalent Gaussian std of the blur in px; a defocus disk has radius ``2 * sigma``.
        kernel: ``"gaussian"`` or ``"defocus"``.
        strength: up to 1 a blend with the input, above 1 a weaker prior; never a change of the kernel.
        noise: std of the noise left in ``img`` (0-255 scale), e.g. after denoising; ``None`` measures it.
        quality: JPEG quality the image went through, None if it was not compressed.

    Returns:
        float32 HxWx3 RGB in [0, 1].

    """
    x = as_image(img)
    psf, floor = blur_psf(sigma, kernel)
    if float(sigma) <= 0 or strength <= 0:
        return x.copy()
    balance = None
    if floor > WIENER_FLOOR:
        balance = floor + WIENER_PER_VAR * error_sigma(noise, quality, x) ** 2
    return deconvolve(x, psf, noise, balance, quality=quality, strength=strength)


def blur_psf(sigma: float, kernel: str = "gaussian") -> tuple[np.ndarray, float]:
    """The PSF of isotropic blur ``sigma`` (defocus: a disk of radius ``2 * sigma``) and its least Wiener balance."""
    if kernel not in ("gaussian", "defocus"):
        raise ValueError(f"unknown blur kernel {kernel!r}; expected 'gaussian' or 'defocus'")
    s = max(float(sigma), 1e-3)
    if kernel == "defocus":
        return disk_kernel(2.0 * s), WIENER_FLOOR
    return gaussian_kernel(s), AMBIGUOUS_FLOOR if s <= AMBIGUOUS_SIGMA else WIENER_FLOOR
