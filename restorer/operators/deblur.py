"""``blur``: non-blind deconvolution of an isotropic Gaussian or defocus-disk PSF."""

from __future__ import annotations

import cv2
import numpy as np

from restorer.operators.deconvolution import WIENER_FLOOR, WIENER_PER_VAR, deconvolve, error_sigma
from restorer.operators.filters import as_image, estimate_noise
from restorer.operators.kernels import disk_kernel, gaussian_kernel

#: A Gaussian blur up to AMBIGUOUS_SIGMA px looks like 2-3x down-sampling, which measurements confuse with it; there
#: the Wiener prior is at least AMBIGUOUS_FLOOR (tuned), so that a down-sampled image read as blurred is not rung
#: (aliasing inverted: -2.7 dB instead of -5.3 dB at 2x) while a truly blurred one keeps most of its gain (4.9
#: instead of 6.3 dB at sigma 1, 3.6 instead of 3.8 at sigma 2).
AMBIGUOUS_SIGMA, AMBIGUOUS_FLOOR = 2.0, 1e-3
#: Plain areas keep the input (tuned): the deconvolution's change is weighted by g / (g + (FLAT_K * error) ** 2), g the
#: input's squared luma gradient averaged over a (2 FLAT_RADIUS + 1)^2 window and error the noise and JPEG error
#: (at least 0.5, 0-255). A plain area of a blurred photo (sky, a wall, a floor) holds nothing to recover, only the
#: ringing a kernel a little off in size or shape spreads into it (a soft lens deconvolved with a hard disk: a
#: rippled sky, a cross-hatched floor), and the artefact checks do not always name it. Over blur from every zoo model
#: (alone, with noise, with JPEG) restored by the hand plan: calibration photos +0.20 dB mean (44 crops; soft disks
#: +0.51, Real-ESRGAN kernels -0.04, our own exact disks and Gaussians -0.16), crops worse than the input 7 -> 4;
#: held-out photos +0.17 dB (47; +0.31 / +0.16 / -0.06), worse 3 -> 1. K 2 and 8 gained less on calibration photos.
FLAT_K, FLAT_RADIUS = 4.0, 4


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
    noise = estimate_noise(x) if noise is None else noise  # measured once, for the prior and the plain areas
    error = error_sigma(noise, quality)
    balance = floor + WIENER_PER_VAR * error**2 if floor > WIENER_FLOOR else None
    keep = plain_kept(x, error) if FLAT_K > 0 else None
    return deconvolve(x, psf, noise, balance, quality=quality, strength=strength, keep=keep)


def plain_kept(x: np.ndarray, sigma: float) -> np.ndarray:
    """The share (float32 HxW) of a deconvolution's correction kept at each pixel of ``x``: little where it is plain.

    ``g / (g + (FLAT_K * sigma) ** 2)``, ``g`` the squared luma gradient of ``x`` averaged over a window and
    ``sigma`` the error in ``x`` (0-255, at least 0.5): see :data:`FLAT_K`.
    """
    grey = cv2.cvtColor(x, cv2.COLOR_RGB2GRAY)
    gx = cv2.Sobel(grey, cv2.CV_32F, 1, 0, ksize=3) / 8.0
    gy = cv2.Sobel(grey, cv2.CV_32F, 0, 1, ksize=3) / 8.0
    size = (2 * FLAT_RADIUS + 1,) * 2
    g = cv2.boxFilter(gx * gx + gy * gy, -1, size, borderType=cv2.BORDER_REFLECT)
    t = np.float32((FLAT_K * max(float(sigma), 0.5) / 255.0) ** 2)
    return g / (g + t)


def blur_psf(sigma: float, kernel: str = "gaussian") -> tuple[np.ndarray, float]:
    """The PSF of isotropic blur ``sigma`` (defocus: a disk of radius ``2 * sigma``) and its least Wiener balance."""
    if kernel not in ("gaussian", "defocus"):
        raise ValueError(f"unknown blur kernel {kernel!r}; expected 'gaussian' or 'defocus'")
    s = max(float(sigma), 1e-3)
    if kernel == "defocus":
        return disk_kernel(2.0 * s), WIENER_FLOOR
    return gaussian_kernel(s), AMBIGUOUS_FLOOR if s <= AMBIGUOUS_SIGMA else WIENER_FLOOR
