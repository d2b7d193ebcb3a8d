"""Motion blur: our linear stroke, imagecorruptions' fading trail, Boracchi & Foi's random camera-shake trajectories.

Every model reports the schema's ``length`` and ``angle`` as those of the linear motion with the same spread along
its main axis as the kernel it convolves with (:func:`~rl.degradations.kernels.equivalent_motion`): a trail whose
weights fade, or a shake that curls back, counts by the extent it actually has.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import ClassVar

import cv2
import numpy as np

from rl.degradations.base import DegradationModel, as_image, check_in, clip01, draw_seed, log_uniform, readonly
from rl.degradations.kernels import equivalent_motion, motion_kernel


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


#: imagecorruptions' motion-blur severities as MiO uses them: (trail radius px, std of its weight profile px).
TRAILS = ((10.0, 3.0), (15.0, 5.0), (15.0, 8.0))


@dataclass(frozen=True)
class TrailBlurParams:
    """A one-sided trail: the image shifted by ``i`` px towards ``angle``, ``i = 0 .. 2 radius``, Gaussian-weighted.

    The weight of shift ``i`` is ``exp(-i^2 / (2 sigma^2))``; shifts are rounded to whole pixels (no anti-aliasing),
    borders replicated.
    """

    kind: ClassVar[str] = "motion_blur"
    radius: float  # the trail has 2 radius + 1 taps
    sigma: float  # std in px of the Gaussian weight profile along the trail
    angle: float  # direction the trail reaches, deg counter-clockwise from +x, image y down, in [0, 360)

    def __post_init__(self):
        check_in("trail radius (px)", self.radius, 1, 100)
        check_in("trail sigma (px)", self.sigma, 0, 100, "(]")
        check_in("trail angle (deg)", self.angle, 0, 360, "[)")


def sample_trail_blur(
    rng: np.random.Generator, *, severities: tuple[tuple[float, float], ...] = TRAILS
) -> TrailBlurParams:
    """One of ``severities`` uniformly (MiO: (10, 3), (15, 5), (15, 8)), imagecorruptions' angle uniform in +-90 deg.

    imagecorruptions' angle turns clockwise on screen (it shifts by ``(cos a, sin a)`` with y down), so it is stored
    negated, counter-clockwise.
    """
    radius, sigma = severities[int(rng.integers(len(severities)))]
    return TrailBlurParams(float(radius), float(sigma), float(-rng.uniform(-90.0, 90.0)) % 360.0)


@lru_cache(maxsize=16)
def trail_kernel(params: TrailBlurParams) -> np.ndarray:
    """The normalised ``float32`` kernel of ``params`` for ``cv2.filter2D`` (read-only, cached)."""
    p = params
    taps = np.arange(int(round(2 * p.radius)) + 1, dtype=np.float64)
    weights = np.exp(-(taps**2) / (2.0 * p.sigma**2))
    t = math.radians(p.angle)
    dx, dy = np.floor(taps * math.cos(t) + 0.5).astype(int), np.floor(-taps * math.sin(t) + 0.5).astype(int)
    r = int(max(np.abs(dx).max(), np.abs(dy).max()))
    k = np.zeros((2 * r + 1, 2 * r + 1))
    np.add.at(k, (r + dy, r + dx), weights)  # filter2D correlates: out(p) gathers img(p + offset)
    return readonly((k / k.sum()).astype(np.float32))


def apply_trail_blur(img: np.ndarray, params: TrailBlurParams) -> np.ndarray:
    """Convolve with :func:`trail_kernel`, replicated borders (imagecorruptions repeats the edge row)."""
    return clip01(cv2.filter2D(as_image(img), -1, trail_kernel(params), borderType=cv2.BORDER_REPLICATE))


def trail_blur_factors(params: TrailBlurParams, shape: tuple[int, ...]) -> dict:
    """The schema's motion factors: the trail's equivalent linear length and its axis in [0, 180)."""
    length, angle = equivalent_motion(trail_kernel(params))
    return {"length": length, "angle": angle}


def describe_trail_blur(p: TrailBlurParams, f: dict) -> str:
    """The ground-truth observation of a fading trail ``p``."""
    return (
        f"synthesised motion trail of {2 * p.radius + 1:.0f} taps with Gaussian weights (sigma={p.sigma:.1f} px) "
        f"towards {p.angle:.0f} deg (equivalent length={f['length']:.1f} px)"
    )


@dataclass(frozen=True)
class ShakeBlurParams:
    """Camera shake: a random-walk trajectory of ``path`` px total length, rasterised (bilinear) into the kernel.

    The walk (Boracchi & Foi 2012) keeps a constant speed; each step its velocity turns by Gaussian jitter, is
    pulled back towards the start (centripetal), and with a small probability jerks back hard; ``anxiety`` scales
    all three. Their strengths and the first direction are drawn from ``seed``.
    """

    kind: ClassVar[str] = "motion_blur"
    path: float  # total length of the trajectory in px
    anxiety: float = 0.05
    seed: int = 0
    samples: int = 64  # points along the trajectory (Boracchi & Foi's TrajSize)

    def __post_init__(self):
        check_in("shake path length (px)", self.path, 1, 200)
        check_in("shake anxiety", self.anxiety, 0, 1)
        check_in("trajectory samples", self.samples, 2, 100_000)


def sample_shake_blur(
    rng: np.random.Generator, *, path: tuple[float, float] = (8.0, 48.0), anxiety: tuple[float, float] = (0.0, 0.1)
) -> ShakeBlurParams:
    """Path 8-48 px log-uniform, anxiety uniform in [0, 0.1] (Boracchi & Foi's default draw ``0.1 * rand``)."""
    return ShakeBlurParams(log_uniform(rng, *path), float(rng.uniform(*anxiety)), draw_seed(rng))


def shake_trajectory(params: ShakeBlurParams) -> np.ndarray:
    """The trajectory as complex positions in px (real x, imaginary y down), starting at 0; ``samples`` long."""
    p, rng = params, np.random.default_rng(params.seed)
    centripetal, big_shake, jitter = 0.7 * rng.random(), 0.2 * rng.random(), 10.0 * rng.random()
    step = p.path / (p.samples - 1)
    first = 2.0 * math.pi * rng.random()
    v = step * complex(math.cos(first), math.sin(first))
    jerks, turns = rng.random(p.samples), rng.random(p.samples)
    gauss = rng.standard_normal((p.samples, 2)) @ np.array([1.0, 1j])
    x = np.zeros(p.samples, complex)
    for t in range(p.samples - 1):
        back = 2.0 * v * complex(math.cos(math.pi + turns[t] - 0.5), math.sin(math.pi + turns[t] - 0.5))
        dv = (back if jerks[t] < big_shake * p.anxiety else 0.0) + p.anxiety * (
            jitter * gauss[t] - centripetal * x[t]
        ) * step
        v = v + dv
        v = v / abs(v) * step if abs(v) > 0 else v
        x[t + 1] = x[t] + v
    return x


@lru_cache(maxsize=16)
def shake_kernel(params: ShakeBlurParams) -> np.ndarray:
    """The trajectory's time-weighted footprint, bilinear-splatted and centred; ``float32``, sums to 1, read-only."""
    x = shake_trajectory(params)
    x = x - complex((x.real.max() + x.real.min()) / 2, (x.imag.max() + x.imag.min()) / 2)
    r = int(math.ceil(max(np.abs(x.real).max(), np.abs(x.imag).max()))) + 1
    k = np.zeros((2 * r + 1, 2 * r + 1))
    fx, fy = x.real + r, x.imag + r
    x0, y0 = np.floor(fx).astype(int), np.floor(fy).astype(int)
    ax, ay = fx - x0, fy - y0
    for oy, ox, w in ((0, 0, (1 - ax) * (1 - ay)), (0, 1, ax * (1 - ay)), (1, 0, (1 - ax) * ay), (1, 1, ax * ay)):
        np.add.at(k, (y0 + oy, x0 + ox), w)
    return readonly((k / k.sum()).astype(np.float32))


def apply_shake_blur(img: np.ndarray, params: ShakeBlurParams) -> np.ndarray:
    """Convolve with :func:`shake_kernel`, reflected borders."""
    return clip01(cv2.filter2D(as_image(img), -1, shake_kernel(params), borderType=cv2.BORDER_REFLECT))


def shake_blur_factors(params: ShakeBlurParams, shape: tuple[int, ...]) -> dict:
    """The schema's motion factors: the kernel's equivalent linear length and main axis."""
    length, angle = equivalent_motion(shake_kernel(params))
    return {"length": length, "angle": angle}


def describe_shake_blur(p: ShakeBlurParams, f: dict) -> str:
    """The ground-truth observation of camera shake ``p``."""
    return (
        f"synthesised camera-shake blur along a random trajectory of {p.path:.1f} px (anxiety {p.anxiety:.3f}); "
        f"equivalent linear length={f['length']:.1f} px at {f['angle']:.0f} deg"
    )


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
    DegradationModel(
        kind="motion_blur",
        name="trail",
        params=TrailBlurParams,
        sample=sample_trail_blur,
        apply=apply_trail_blur,
        factors=trail_blur_factors,
        describe=describe_trail_blur,
        source="imagecorruptions motion_blur (Hendrycks & Dietterich 2019; bethgelab/imagecorruptions) as "
        "AgenticIR/MiO use it (dataset/add_single_degradation.py)",
    ),
    DegradationModel(
        kind="motion_blur",
        name="shake",
        params=ShakeBlurParams,
        sample=sample_shake_blur,
        apply=apply_shake_blur,
        factors=shake_blur_factors,
        describe=describe_shake_blur,
        source="random camera-shake trajectories (Boracchi & Foi 2012, Modeling the performance of image "
        "restoration from motion blur, IEEE TIP)",
    ),
)
