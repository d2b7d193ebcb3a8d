"""Low resolution: detail lost to down-sampling, the image brought back to its size by interpolation."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import cv2
import numpy as np

from rl.degradations.base import DegradationModel, as_image, check_in, clip01, log_uniform


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
)
