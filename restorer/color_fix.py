"""Colour and low-frequency correction of a restored image back towards its input (a fidelity guard).

Generative editors drift in colour and tone: the whole image turns warmer, a sky shifts hue, contrast changes. The
fixes here keep the restored image's detail and take the slowly varying part (colour, shading) from the input:

- ``wavelet`` (StableSR's wavelet colour fix): split both images into a high-frequency part and a low-frequency
  residual with an a-trous (dilated) 3x3 blur pyramid; keep the output's high frequencies and the input's residual.
- ``adain``: match the output's per-channel mean and standard deviation to the input's (global; gentler, keeps
  local shading changes).

Neither should run when restoring the tone *is* the task (low light, haze): the input's low frequencies are then
what was wrong. :data:`TONE_KINDS` names those kinds; :func:`fix_applies` says whether a plan allows the fix.
Numpy and OpenCV only; usable by any restorer.
"""

from __future__ import annotations

from collections.abc import Iterable

import cv2
import numpy as np

METHODS = ("wavelet", "adain")
#: Kinds whose removal changes the image's low frequencies on purpose: a colour fix towards the input undoes it.
TONE_KINDS = frozenset({"low_light", "haze"})
#: 1-2-1 binomial kernel of the a-trous wavelet transform (StableSR).
_B3 = np.outer([1.0, 2.0, 1.0], [1.0, 2.0, 1.0]) / 16.0


def _check(output: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    out, ref = np.asarray(output, np.float32), np.asarray(reference, np.float32)
    if out.ndim != 3 or out.shape[2] != 3 or out.shape != ref.shape:
        raise ValueError(
            f"colour fix needs two HxWx3 images of the same shape, got {out.shape} and {ref.shape}; "
            "resize the output to the input's size first"
        )
    return out, ref


def _atrous_blur(x: np.ndarray, dilation: int) -> np.ndarray:
    k = np.zeros((2 * dilation + 1, 2 * dilation + 1), np.float32)
    k[::dilation, ::dilation] = _B3
    return cv2.filter2D(x, -1, k, borderType=cv2.BORDER_REFLECT_101)


def wavelet_split(image: np.ndarray, levels: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """(high, low) of ``image`` (float32 HxWx3) with ``high + low == image``; ``low`` is blurred ``levels`` times.

    Each level blurs with the 1-2-1 kernel dilated by ``2**i`` pixels, so the residual keeps structure coarser than
    about ``2**levels`` pixels (32 px at 5 levels).
    """
    low = np.asarray(image, np.float32)
    high = np.zeros_like(low)
    for i in range(levels):
        blurred = _atrous_blur(low, 2**i)
        high += low - blurred
        low = blurred
    return high, low


def wavelet_fix(output: np.ndarray, reference: np.ndarray, levels: int = 5) -> np.ndarray:
    """``output``'s high frequencies on ``reference``'s low-frequency residual; float32 HxWx3 clipped to [0, 1].

    >>> import numpy as np
    >>> out = np.full((16, 16, 3), 0.8, np.float32); ref = np.full((16, 16, 3), 0.3, np.float32)
    >>> round(float(wavelet_fix(out, ref).mean()), 3)
    0.3
    """
    out, ref = _check(output, reference)
    levels = max(1, min(levels, int(np.log2(max(2, min(out.shape[:2]))))))  # no blur wider than the image
    high, _ = wavelet_split(out, levels)
    _, low = wavelet_split(ref, levels)
    return np.clip(high + low, 0.0, 1.0).astype(np.float32)


def adain_fix(output: np.ndarray, reference: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    """``output`` with each channel's mean and std matched to ``reference``'s; float32 HxWx3 clipped to [0, 1]."""
    out, ref = _check(output, reference)
    mo, so = out.mean(axis=(0, 1)), out.std(axis=(0, 1))
    mr, sr = ref.mean(axis=(0, 1)), ref.std(axis=(0, 1))
    return np.clip((out - mo) / (so + eps) * sr + mr, 0.0, 1.0).astype(np.float32)


def color_fix(output: np.ndarray, reference: np.ndarray, method: str | None = "wavelet") -> np.ndarray:
    """Apply the colour fix ``method`` (``"wavelet"``, ``"adain"`` or None) to ``output``, towards ``reference``.

    Both are float32 HxWx3 in [0, 1] of the same shape; returns a new float32 array.
    """
    if method is None:
        return np.array(output, np.float32, copy=True)
    if method == "wavelet":
        return wavelet_fix(output, reference)
    if method == "adain":
        return adain_fix(output, reference)
    raise ValueError(f"unknown colour fix {method!r}; choose one of {list(METHODS)} or None")


def fix_applies(kinds: Iterable[str]) -> bool:
    """Whether a colour fix towards the input suits a plan removing ``kinds`` (not when it restores tone)."""
    return not (set(kinds) & TONE_KINDS)
