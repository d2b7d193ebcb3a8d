"""``low_light``: the inverse tone curve, with the read noise the gain amplifies removed before it."""

from __future__ import annotations

import numpy as np

from restorer.operators.filters import as_image, clip01, estimate_noise, nlm


def brighten(img: np.ndarray, exposure: float, gamma: float = 1.0, strength: float = 1.0) -> np.ndarray:
    """Invert under-exposure ``y = exposure * x ** gamma`` and denoise the read noise the gain amplifies.

    The division by ``exposure`` comes first, so the amplified noise is still stationary and non-local means
    (sigma measured, :func:`~restorer.operators.filters.estimate_noise`) removes it before the tone curve;
    highlights roll off softly.

    Args:
        img: float32 HxWx3 RGB in [0, 1].
        exposure: linear exposure multiplier in (0, 1].
        gamma: tone-curve exponent.
        strength: interpolates from no change: ``exposure ** strength`` and ``1 + (gamma - 1) * strength``.

    Returns:
        float32 HxWx3 RGB in [0, 1].

    """
    x, s = as_image(img), float(strength)
    e, g = float(exposure) ** s, max(1.0 + (float(gamma) - 1.0) * s, 0.2)
    if s <= 0 or (e >= 1.0 and g == 1.0):
        return x.copy()
    lin = x / np.float32(e)
    knee = np.float32(0.8)  # identity below, then a tanh shoulder reaching 1: no hard clipping of highlights
    lin = np.where(lin > knee, knee + (1 - knee) * np.tanh((lin - knee) / (1 - knee)), lin).astype(np.float32)
    sigma = estimate_noise(x) / e
    if sigma > 1.0:
        lin = nlm(lin, sigma)
    return clip01(np.power(lin, np.float32(1.0 / g)))
