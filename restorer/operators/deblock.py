"""``jpeg``: non-local means matched to the quantisation error of the diagnosed quality factor."""

from __future__ import annotations

import math

import numpy as np

from restorer.operators.filters import as_image, nlm

_JPEG_H0, _JPEG_H1 = 3.5, 6.0  # tuned: NLM sigma (0-255) = H0 + H1 log(100 / quality)


def deblock(img: np.ndarray, quality: int, strength: float = 1.0) -> np.ndarray:
    """Reduce JPEG blocking and ringing with non-local means matched to the quantisation error.

    Args:
        img: float32 HxWx3 RGB in [0, 1].
        quality: IJG quality factor 1-100 (100 = lightest); the filter fades out over qualities 90-100, so
            near-lossless images keep their fine detail.
        strength: multiplier on the compression loss ``100 - quality``.

    Returns:
        float32 HxWx3 RGB in [0, 1].

    """
    x = as_image(img)
    h = jpeg_sigma(quality, strength)
    if h <= 0:
        return x.copy()
    return nlm(x, h, DEBLOCK_LUMA, DEBLOCK_CHROMA)


#: Filter strength ``h / sigma`` of the deblocking pass for luma and for chroma (chroma is quantised harder).
DEBLOCK_LUMA, DEBLOCK_CHROMA = 1.0, 2.0


def jpeg_sigma(quality: int, strength: float = 1.0) -> float:
    """The compression error (std, 0-255) :func:`deblock` filters for ``quality`` at ``strength`` (0: none).

    >>> round(jpeg_sigma(30), 2), jpeg_sigma(95, 0.0)
    (10.72, 0.0)
    """
    loss = (100.0 - float(quality)) * float(strength)
    if loss <= 0:
        return 0.0
    q = max(1.0, 100.0 - loss)
    return (_JPEG_H0 + _JPEG_H1 * math.log(100.0 / q)) * min(1.0, loss / 10.0)
