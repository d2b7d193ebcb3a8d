"""``motion_blur``: non-blind deconvolution of a linear motion PSF."""

from __future__ import annotations

import numpy as np

from restorer.operators.deconvolution import deconvolve
from restorer.operators.filters import as_image
from restorer.operators.kernels import line_kernel


def deblur_motion(
    img: np.ndarray, length: float, angle: float, strength: float = 1.0, noise: float | None = None
) -> np.ndarray:
    """Undo linear motion blur by non-blind deconvolution with a line PSF (:func:`~.kernels.line_kernel`).

    Args:
        img: float32 HxWx3 RGB in [0, 1].
        length: motion length in px.
        angle: motion direction in degrees counter-clockwise from +x (image y axis down).
        strength: multiplier on ``length``.
        noise: std of the noise left in ``img`` (0-255 scale), e.g. after denoising; ``None`` measures it.

    Returns:
        float32 HxWx3 RGB in [0, 1].

    """
    x, n = as_image(img), float(length) * float(strength)
    if n <= 1.0:
        return x.copy()
    return deconvolve(x, line_kernel(n, angle), noise)
