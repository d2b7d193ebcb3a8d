"""Linear motion blur: the camera or the subject moving in a straight line during the exposure."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import cv2
import numpy as np

from rl.degradations.base import DegradationModel, as_image, check_in, clip01, log_uniform
from rl.degradations.kernels import motion_kernel


@dataclass(frozen=True)
class MotionBlurParams:
    """Linear motion of ``length`` px at ``angle`` degrees counter-clockwise from +x, y down (90 = vertical)."""

    kind: ClassVar[str] = "motion_blur"
    length: float
    angle: float

    def __post_init__(self):
        check_in("motion length (px)", self.length, 1, 500)
        check_in("motion angle (deg)", self.angle, 0, 180, "[)")


def sample_motion_blur(rng: np.random.Generator, *, length: tuple[float, float] = (5.0, 31.0)) -> MotionBlurParams:
    """Length 5-31 px log-uniform (``length``), angle uniform in [0, 180) degrees."""
    return MotionBlurParams(log_uniform(rng, *length), float(rng.uniform(0.0, 180.0)) % 180.0)


def apply_motion_blur(img: np.ndarray, params: MotionBlurParams) -> np.ndarray:
    """Convolve with :func:`~rl.degradations.kernels.motion_kernel`, reflected borders."""
    kernel = motion_kernel(params.length, params.angle)
    return clip01(cv2.filter2D(as_image(img), -1, kernel, borderType=cv2.BORDER_REFLECT))


def motion_blur_factors(params: MotionBlurParams, shape: tuple[int, ...]) -> dict:
    """The schema's motion factors: length in px and angle in degrees."""
    return {"length": params.length, "angle": params.angle}


def describe_motion_blur(p: MotionBlurParams, f: dict) -> str:
    """The ground-truth observation of motion blur ``p``."""
    return f"synthesised linear motion blur of length={p.length:.1f} px, angle={p.angle:.1f} deg"


#: This kind's models; :data:`rl.degradations.MODELS` files them by kind and name.
MODELS = (
    DegradationModel(
        kind="motion_blur",
        name="rnr",
        params=MotionBlurParams,
        sample=sample_motion_blur,
        apply=apply_motion_blur,
        factors=motion_blur_factors,
        describe=describe_motion_blur,
        source="reason-restore's own protocol: ranges spread the severities of reasoner.kinds evenly",
    ),
)
