"""``motion_blur``: non-blind deconvolution of a linear motion PSF, kept within the input's range over the PSF."""

from __future__ import annotations

import numpy as np

from restorer.operators.deconvolution import WIENER_FLOOR, clamp_to_footprint, deconvolve
from restorer.operators.filters import as_image
from restorer.operators.kernels import line_kernel


def deblur_motion(
    img: np.ndarray,
    length: float,
    angle: float,
    strength: float = 1.0,
    noise: float | None = None,
    quality: float | None = None,
) -> np.ndarray:
    """Undo linear motion blur by non-blind deconvolution with a line PSF (:func:`~.kernels.line_kernel`).

    The result is clamped to the input's range over the PSF (:func:`~.deconvolution.clamp_to_footprint`): real
    motion is rarely a uniform line, and the overshoot of a line PSF on a trail or a shaken path is what clips.

    Args:
        img: float32 HxWx3 RGB in [0, 1].
        length: motion length in px.
        angle: motion direction in degrees counter-clockwise from +x (image y axis down).
        strength: up to 1 a blend with the input, above 1 a weaker prior; never a change of the kernel.
        noise: std of the noise left in ``img`` (0-255 scale), e.g. after denoising; ``None`` measures it.
        quality: JPEG quality the image went through, None if it was not compressed.

    Returns:
        float32 HxWx3 RGB in [0, 1].

    """
    x = as_image(img)
    if float(length) <= 1.0 or strength <= 0:
        return x.copy()
    psf = motion_psf(length, angle)[0]
    return clamp_to_footprint(deconvolve(x, psf, noise, quality=quality, strength=strength), x, psf)


def motion_psf(length: float, angle: float) -> tuple[np.ndarray, float]:
    """The line PSF of motion ``length`` px at ``angle`` degrees and its least Wiener balance."""
    return line_kernel(max(float(length), 1.0), angle), WIENER_FLOOR
