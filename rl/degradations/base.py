"""What every synthesis model shares: the model record the registry holds, image checks, sampling helpers.

Images are ``float32`` arrays of shape ``(H, W, 3)``, RGB, values in [0, 1], in and out (other float dtypes are
converted; inputs are never modified).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

SEED_HIGH = 2**31 - 1  # seeds stay exact as JSON numbers


@dataclass(frozen=True)
class DegradationModel:
    """One synthesis model of a degradation kind: how to sample its parameters, apply them and describe them.

    Attributes:
        kind: The degradation kind (a key of :data:`reasoner.kinds.KINDS`).
        name: The model's name within its kind (``"rnr"`` is the project's own protocol).
        params: The frozen parameter dataclass the model samples and applies; it identifies the model in
            :func:`rl.degradations.apply`, so every model has its own class.
        sample: ``sample(rng, **ranges) -> params``; keyword ranges default to the model's published ones.
        apply: ``apply(img, params) -> img``, pure: any randomness is a seed held by the parameters.
        factors: ``factors(params, shape) -> dict``: the schema's physical factors of the kind for an image of
            ``shape`` ``(H, W, ...)``; the severity follows from them through :mod:`reasoner.kinds`.
        describe: ``describe(params, factors) -> str``: the ground-truth record's observation.
        source: Where the protocol comes from (a paper, a repository file), for the reader.

    """

    kind: str
    name: str
    params: type
    sample: Callable[..., object]
    apply: Callable[[np.ndarray, object], np.ndarray]
    factors: Callable[[object, tuple[int, ...]], dict]
    describe: Callable[[object, dict], str]
    source: str = ""


def check(ok: bool, message: str) -> None:
    """Raise ``ValueError(message)`` unless ``ok`` (validation that survives ``python -O``, unlike assert)."""
    if not ok:
        raise ValueError(message)


def check_in(name: str, value: float, lo: float, hi: float, bounds: str = "[]") -> None:
    """Raise ``ValueError`` unless ``value`` lies in the interval ``lo, hi`` with ``bounds`` ends ("[]", "(]", ...).

    >>> check_in("quality", 101, 1, 100)
    Traceback (most recent call last):
    ValueError: quality must be in [1, 100], got 101
    """
    ok = (lo <= value if bounds[0] == "[" else lo < value) and (value <= hi if bounds[1] == "]" else value < hi)
    check(ok, f"{name} must be in {bounds[0]}{lo}, {hi}{bounds[1]}, got {value!r}")


def draw_seed(rng: np.random.Generator) -> int:
    """A seed for the randomness of an application, drawn from ``rng``."""
    return int(rng.integers(0, SEED_HIGH))


def log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    """A draw log-uniform in ``[lo, hi]``: uniform severities where the severity map is logarithmic."""
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def readonly(a: np.ndarray) -> np.ndarray:
    """``a`` made read-only: cached arrays are shared between callers."""
    a.flags.writeable = False
    return a


def as_image(img: np.ndarray) -> np.ndarray:
    """``img`` as a contiguous ``float32 HxWx3`` array in [0, 1] (a new array only where conversion needs one).

    Raises:
        ValueError: For another shape or dtype, or values outside [0, 1] beyond rounding (NaN included).

    """
    x = np.asarray(img)
    check(
        x.ndim == 3 and x.shape[2] == 3 and x.size > 0 and np.issubdtype(x.dtype, np.floating),
        f"expected a float HxWx3 RGB image in [0, 1], got a {x.dtype} array of shape {x.shape}",
    )
    x = np.ascontiguousarray(x, dtype=np.float32)
    lo, hi = float(x.min()), float(x.max())
    check(lo >= -1e-4 and hi <= 1 + 1e-4, "image values must lie in [0, 1] (and not be NaN)")
    return np.clip(x, 0.0, 1.0) if lo < 0 or hi > 1 else x  # rounding excursions of an upstream resampler


def clip01(x: np.ndarray) -> np.ndarray:
    """``x`` clipped to [0, 1] in place, as float32."""
    return np.clip(x, 0.0, 1.0, out=x).astype(np.float32, copy=False)
