"""Small helpers every package shares: one-line errors, torch dtype names, working sizes, image arrays, memos.

Also the brightness statistics both the diagnosis and the brightening read (:func:`brightness_quantile`).

Standard library and numpy only (torch is imported inside :func:`torch_dtype`), so the lowest layers can use them;
``restorer``, ``retrieval``, ``rl`` and ``agent`` import these instead of keeping copies.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Hashable
from typing import TypeVar

import numpy as np

#: Accepted dtype names (and their short forms) for model backends.
DTYPE_NAMES: dict[str, str] = {
    "float32": "float32", "fp32": "float32",
    "bfloat16": "bfloat16", "bf16": "bfloat16",
    "float16": "float16", "fp16": "float16",
}  # fmt: skip


def one_line(error: BaseException | str, limit: int | None = None, *, with_type: bool = False) -> str:
    r"""An error (or text) as one line: whitespace runs folded, optionally cut to ``limit`` characters.

    >>> one_line(ValueError("bad\n  value"))
    'bad value'
    >>> one_line(KeyError("x"), with_type=True)
    "KeyError: 'x'"
    """
    text = " ".join(str(error).split())
    if isinstance(error, BaseException):
        if not text:
            text = type(error).__name__
        elif with_type:
            text = f"{type(error).__name__}: {text}"
    return text if limit is None or len(text) <= limit else text[: max(limit - 1, 0)] + "…"


def dtype_name(name: str, *, accelerator: bool = False) -> str:
    """The canonical dtype name for ``name`` ("auto": bfloat16 on an accelerator, float32 on CPU).

    >>> dtype_name("bf16"), dtype_name("auto"), dtype_name("auto", accelerator=True)
    ('bfloat16', 'float32', 'bfloat16')

    Raises:
        ValueError: For an unknown name, listing the valid ones.

    """
    if name == "auto":
        return "bfloat16" if accelerator else "float32"
    try:
        return DTYPE_NAMES[str(name).lower()]
    except KeyError:
        raise ValueError(f"unknown dtype {name!r}; choose auto, float32, bfloat16 or float16") from None


def torch_dtype(name, device: str | None = None):
    """The ``torch.dtype`` for a name (a dtype is returned as is); "auto" follows ``device`` (:func:`dtype_name`)."""
    import torch

    if isinstance(name, torch.dtype):
        return name
    accelerator = device is not None and not str(device).startswith("cpu")
    return getattr(torch, dtype_name(name, accelerator=accelerator))


def working_size(height: int, width: int, area: int, grid: int) -> tuple[int, int]:
    """``(h, w)`` of about ``area`` pixels with the aspect of ``height x width``, each side a multiple of ``grid``.

    >>> working_size(37, 53, 64 * 64, 8)
    (56, 80)
    """
    ratio = width / height
    h = max(grid, round(math.sqrt(area / ratio) / grid) * grid)
    w = max(grid, round(math.sqrt(area * ratio) / grid) * grid)
    return int(h), int(w)


def as_rgb_float(image: np.ndarray, what: str = "image") -> np.ndarray:
    """``image`` checked to be a finite float ``HxWx3`` RGB array in [0, 1] (values clipped), as float32.

    Raises:
        ValueError: For another shape or dtype, an empty array, or NaN/inf values (one line).

    """
    x = np.asarray(image)
    if x.ndim != 3 or x.shape[2] != 3 or x.size == 0 or not np.issubdtype(x.dtype, np.floating):
        raise ValueError(
            f"{what}: expected a float HxWx3 RGB image in [0, 1], got a {x.dtype} array of shape {x.shape}"
        )
    if not np.isfinite(x).all():
        raise ValueError(f"{what}: the image holds NaN or infinite values")
    return np.clip(x, 0.0, 1.0).astype(np.float32, copy=False)


def haar_sigma(y: np.ndarray) -> float:
    """Robust std of white noise in one channel ``y`` (HxW); 0 for a side below 3 px.

    The median absolute deviation of its finest diagonal Haar detail (Donoho's estimator), robust to texture.

    >>> round(haar_sigma(np.random.default_rng(0).normal(0, 2.0, (128, 128))), 1)
    2.0
    """
    if min(y.shape) < 3:
        return 0.0
    hh = (y[1:, 1:] - y[:-1, 1:] - y[1:, :-1] + y[:-1, :-1]) * 0.5
    return float(np.median(np.abs(hh)) / 0.6745)


T = TypeVar("T")


def content_key(array: np.ndarray, *extra: Hashable) -> tuple:
    """A key for what ``array`` holds (a digest of its bytes, its shape and dtype), and for ``extra``.

    The same pixels in another array give the same key.

    >>> a = np.arange(6, dtype=np.float32).reshape(2, 3)
    >>> content_key(a) == content_key(a.copy()), content_key(a) == content_key(a + 1), content_key(a, 1)[-1]
    (True, False, 1)
    """
    a = np.ascontiguousarray(array)
    return (hashlib.blake2b(a.reshape(-1).view(np.uint8), digest_size=16).digest(), a.shape, a.dtype.str, *extra)


def remembered(memo: dict, key: Hashable, compute: Callable[[], T], kept: int = 8) -> T:
    """``memo[key]``, computed by ``compute()`` the first time; ``memo`` keeps its last ``kept`` answers.

    For work several steps ask of the same image (a fitted JPEG grid, a source's statistics), keyed by
    :func:`content_key`.

    >>> memo, calls = {}, []
    >>> [remembered(memo, k, lambda: calls.append(1) or k * 2, kept=2) for k in (1, 1, 2, 3, 1)], len(calls)
    ([2, 2, 4, 6, 2], 4)
    """
    if key in memo:
        return memo[key]
    value = compute()
    while len(memo) >= kept:  # oldest first
        memo.pop(next(iter(memo)), None)
    memo[key] = value
    return value


def channel_max(x: np.ndarray) -> np.ndarray:
    """Per-pixel maximum over the channels of ``x`` (HxWxC -> HxW); much faster than ``x.max(axis=2)``."""
    return np.maximum.reduce([x[..., c] for c in range(x.shape[2])])


def subsample(image: np.ndarray, max_pixels: int) -> np.ndarray:
    """A regular subsample (every k-th row and column) of ``image`` with at most ``max_pixels`` pixels.

    A bounded sample of its pixel values for global quantiles, without the smoothing a resize does; ``image``
    itself when it is that small already.
    """
    h, w = image.shape[:2]
    k = int(np.ceil(np.sqrt(h * w / max_pixels)))
    return image if k <= 1 else np.ascontiguousarray(image[::k, ::k])


def brightness_quantile(rgb: np.ndarray, q: float, max_pixels: int | None = None) -> float:
    """The ``q`` quantile of brightness (HSV value: the largest channel), on at most ``max_pixels`` pixels.

    A regular subsample (:func:`subsample`) of a larger image; all its pixels by default.

    The diagnosis anchors an under-exposure's exposure on it (``reasoner.measure.entries``) and the brightening holds
    its tone curve to it (``restorer.operators.low_light.tone_curve``).

    >>> brightness_quantile(np.full((4, 4, 3), 0.25, np.float32), 0.99)
    0.25
    """
    x = rgb if max_pixels is None else subsample(rgb, max_pixels)
    return float(np.quantile(channel_max(x), q))
