"""Low resolution: detail lost to down-sampling, the image brought back to its size by interpolation.

Models: our area down / bicubic up; OpenCV resamplers down and a different one up (Real-ESRGAN's random modes);
MATLAB-style antialiased bicubic down and up (MiO's ``imresize``). Every model reports the schema's ``scale`` as the
down factor the content suffered once the small size is rounded to whole pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import ClassVar, Literal

import cv2
import numpy as np

from rl.degradations.base import DegradationModel, as_image, check, check_in, clip01, log_uniform, readonly


@dataclass(frozen=True)
class LowResolutionParams:
    """Area down-sampling by ``scale`` to round(W / scale) x round(H / scale), then bicubic back to the size."""

    kind: ClassVar[str] = "low_resolution"
    scale: float

    def __post_init__(self):
        check_in("low-resolution scale", self.scale, 1, 16)


def sample_low_resolution(rng: np.random.Generator, *, scale: tuple[float, float] = (2.0, 4.0)) -> LowResolutionParams:
    """Scale 2-4 log-uniform (``scale``)."""
    return LowResolutionParams(log_uniform(rng, *scale))


def _small_size(p: LowResolutionParams, h: int, w: int) -> tuple[int, int]:
    return max(1, round(w / p.scale)), max(1, round(h / p.scale))


def apply_low_resolution(img: np.ndarray, params: LowResolutionParams) -> np.ndarray:
    """Down-sample by ``scale`` with INTER_AREA, up-sample back with INTER_CUBIC, clip."""
    x = as_image(img)
    h, w = x.shape[:2]
    small = cv2.resize(x, _small_size(params, h, w), interpolation=cv2.INTER_AREA)
    return clip01(cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC))


def low_resolution_factors(params: LowResolutionParams, shape: tuple[int, ...]) -> dict:
    """The schema's low-resolution factor: the scale the content suffered once the small size is rounded."""
    h, w = int(shape[0]), int(shape[1])
    sw, sh = _small_size(params, h, w)
    return {"scale": math.sqrt(w / sw * h / sh)}


def describe_low_resolution(p: LowResolutionParams, f: dict) -> str:
    """The ground-truth observation of low resolution ``p``."""
    return f"synthesised {f['scale']:.2f}x area down-sampling, bicubic up-sampling back"


_INTER = {
    "area": cv2.INTER_AREA, "bilinear": cv2.INTER_LINEAR, "bicubic": cv2.INTER_CUBIC, "nearest": cv2.INTER_NEAREST,
    "lanczos": cv2.INTER_LANCZOS4,
}  # fmt: skip
_DOWN = ("area", "bilinear", "bicubic", "nearest")
_UP = ("bilinear", "bicubic", "lanczos", "nearest")


def _scale_factor(sw: int, sh: int, h: int, w: int) -> float:
    return math.sqrt(w / sw * h / sh)


@dataclass(frozen=True)
class ResampleParams:
    """Down-sampling by ``scale`` with OpenCV's ``down`` interpolation, back up with another, ``up``.

    OpenCV's bilinear, bicubic and nearest down-sampling do not low-pass first (as ``torch.nn.functional.interpolate``
    in Real-ESRGAN): they alias, leaving jaggies and moire that area down-sampling does not.
    """

    kind: ClassVar[str] = "low_resolution"
    scale: float
    down: Literal["area", "bilinear", "bicubic", "nearest"] = "bicubic"
    up: Literal["bilinear", "bicubic", "lanczos", "nearest"] = "bilinear"

    def __post_init__(self):
        check_in("low-resolution scale", self.scale, 1, 16)
        check(self.down in _DOWN, f"unknown down-sampler {self.down!r}; expected one of {_DOWN}")
        check(self.up in _UP, f"unknown up-sampler {self.up!r}; expected one of {_UP}")


def sample_resample(rng: np.random.Generator, *, scale: tuple[float, float] = (1.5, 4.0)) -> ResampleParams:
    """Scale 1.5-4 log-uniform; down-sampler uniform over area, bilinear, bicubic, nearest; a different up-sampler."""
    s = log_uniform(rng, *scale)
    down = _DOWN[int(rng.integers(len(_DOWN)))]
    ups = [u for u in _UP if u != down]
    return ResampleParams(s, down, ups[int(rng.integers(len(ups)))])


def _resample_size(p: ResampleParams, h: int, w: int) -> tuple[int, int]:
    return max(1, round(w / p.scale)), max(1, round(h / p.scale))


def apply_resample(img: np.ndarray, params: ResampleParams) -> np.ndarray:
    """Resize to round(W / scale) x round(H / scale) with ``down``, back to W x H with ``up``, clip."""
    x = as_image(img)
    h, w = x.shape[:2]
    small = cv2.resize(x, _resample_size(params, h, w), interpolation=_INTER[params.down])
    return clip01(cv2.resize(small, (w, h), interpolation=_INTER[params.up]))


def resample_factors(params: ResampleParams, shape: tuple[int, ...]) -> dict:
    """The schema's low-resolution factor: the down factor after rounding the small size."""
    h, w = int(shape[0]), int(shape[1])
    return {"scale": _scale_factor(*_resample_size(params, h, w), h, w)}


def describe_resample(p: ResampleParams, f: dict) -> str:
    """The ground-truth observation of resampling ``p``."""
    return f"synthesised {f['scale']:.2f}x {p.down} down-sampling, {p.up} up-sampling back"


def _cubic(x: np.ndarray) -> np.ndarray:
    # Keys' cubic convolution kernel with a = -0.5 (MATLAB's "bicubic").
    a = np.abs(x)
    near = (1.5 * a - 2.5) * a * a + 1.0
    far = ((-0.5 * a + 2.5) * a - 4.0) * a + 2.0
    return np.where(a <= 1.0, near, np.where(a <= 2.0, far, 0.0))


@lru_cache(maxsize=16)
def _resize_matrix(n_in: int, n_out: int) -> np.ndarray:
    # (n_out, n_in) weights: output pixel i samples input coordinate (i + 0.5) / s - 0.5; when shrinking (s < 1) the
    # kernel is stretched by 1 / s (antialiasing); taps beyond the edges are mirrored back inside.
    s = n_out / n_in
    stretch = min(s, 1.0)
    support = 2.0 / stretch
    centre = (np.arange(n_out) + 0.5) / s - 0.5
    first = np.floor(centre - support).astype(int)
    taps = first[:, None] + np.arange(int(math.ceil(2 * support)) + 2)[None, :]
    weights = stretch * _cubic(stretch * (centre[:, None] - taps))
    weights /= weights.sum(axis=1, keepdims=True)
    mirrored = np.abs(taps)  # reflect about -0.5 and n_in - 0.5: index -1 is 0, n_in is n_in - 1
    mirrored = np.where(taps < 0, -taps - 1, mirrored)
    mirrored = np.where(mirrored >= n_in, 2 * n_in - 1 - mirrored, mirrored)
    mirrored = np.clip(mirrored, 0, n_in - 1)
    m = np.zeros((n_out, n_in))
    np.add.at(m, (np.repeat(np.arange(n_out), taps.shape[1]), mirrored.ravel()), weights.ravel())
    return readonly(m)


def imresize_bicubic(img: np.ndarray, height: int, width: int) -> np.ndarray:
    """MATLAB-style ``imresize(img, [height width], "bicubic")``: Keys cubic, antialiased when shrinking.

    ``img`` is ``float32 HxWx3`` (any range; not clipped, as MATLAB's double path); returns ``float32``. Separable,
    as a weight matrix per axis; mirrored borders.

    >>> imresize_bicubic(np.ones((8, 8, 3), np.float32), 2, 2).round(6).tolist()[0][0]
    [1.0, 1.0, 1.0]
    """
    x = np.asarray(img, np.float64)
    rows, cols = _resize_matrix(x.shape[0], int(height)), _resize_matrix(x.shape[1], int(width))
    tall = np.tensordot(rows, x, axes=(1, 0))  # (height, W, 3)
    return np.ascontiguousarray(np.tensordot(tall, cols, axes=(1, 1)).transpose(0, 2, 1), dtype=np.float32)


@dataclass(frozen=True)
class MioLowResolutionParams:
    """MATLAB bicubic down-sampling by ``scale`` to ceil(H / scale) x ceil(W / scale), MATLAB bicubic back up."""

    kind: ClassVar[str] = "low_resolution"
    scale: float = 4.0

    def __post_init__(self):
        check_in("low-resolution scale", self.scale, 1, 16)


def sample_mio_low_resolution(
    rng: np.random.Generator, *, scale: tuple[float, float] = (4.0, 4.0)
) -> MioLowResolutionParams:
    """Scale 4 (MiO's only one); a wider ``scale`` range is drawn log-uniform."""
    return MioLowResolutionParams(log_uniform(rng, *scale))


def mio_small_size(params: MioLowResolutionParams, shape: tuple[int, ...]) -> tuple[int, int]:
    """``(height, width)`` of the down-sampled image for a frame of ``shape`` (MATLAB rounds up)."""
    return max(1, math.ceil(int(shape[0]) / params.scale - 1e-9)), max(
        1, math.ceil(int(shape[1]) / params.scale - 1e-9)
    )


def apply_mio_low_resolution(img: np.ndarray, params: MioLowResolutionParams) -> np.ndarray:
    """:func:`imresize_bicubic` down to :func:`mio_small_size`, then back to the frame; clipped."""
    x = as_image(img)
    sh, sw = mio_small_size(params, x.shape)
    return clip01(imresize_bicubic(imresize_bicubic(x, sh, sw), x.shape[0], x.shape[1]))


def mio_low_resolution_factors(params: MioLowResolutionParams, shape: tuple[int, ...]) -> dict:
    """The schema's low-resolution factor: the down factor after rounding the small size up."""
    sh, sw = mio_small_size(params, shape)
    return {"scale": _scale_factor(sw, sh, int(shape[0]), int(shape[1]))}


def describe_mio_low_resolution(p: MioLowResolutionParams, f: dict) -> str:
    """The ground-truth observation of MATLAB-bicubic low resolution ``p``."""
    return (
        f"synthesised {f['scale']:.2f}x antialiased bicubic down-sampling (MATLAB imresize), bicubic up-sampling back"
    )


#: This kind's models; :data:`rl.degradations.MODELS` files them by kind and name.
MODELS = (
    DegradationModel(
        kind="low_resolution",
        name="rnr",
        params=LowResolutionParams,
        sample=sample_low_resolution,
        apply=apply_low_resolution,
        factors=low_resolution_factors,
        describe=describe_low_resolution,
        source="reason-restore's own protocol: ranges spread the severities of reasoner.kinds evenly",
    ),
    DegradationModel(
        kind="low_resolution",
        name="resample",
        params=ResampleParams,
        sample=sample_resample,
        apply=apply_resample,
        factors=resample_factors,
        describe=describe_resample,
        source="Real-ESRGAN / BSRGAN random resize modes (area, bilinear, bicubic; Wang et al. 2021, Zhang et al. "
        "2021) plus nearest, up-sampled back with another interpolator",
    ),
    DegradationModel(
        kind="low_resolution",
        name="mio",
        params=MioLowResolutionParams,
        sample=sample_mio_low_resolution,
        apply=apply_mio_low_resolution,
        factors=mio_low_resolution_factors,
        describe=describe_mio_low_resolution,
        source="MATLAB imresize bicubic x1/4 as AgenticIR/MiO (BasicSR matlab_functions.imresize), brought back x4",
    ),
)
