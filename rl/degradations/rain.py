"""Rain: anti-aliased streaks, softened along their direction, composited over the scene."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import ClassVar

import cv2
import numpy as np

from rl.degradations.base import DegradationModel, as_image, check_in, draw_seed, readonly
from rl.degradations.kernels import motion_kernel

_RAIN_FOOTPRINT = 60.0  # mean area in px of one anti-aliased streak (10-40 px long, 1-2 px wide), calibrated
_RAIN_MEAN_OPACITY = 0.55


@dataclass(frozen=True)
class RainParams:
    """Rain streaks composited as ``I (1 - a) + a * brightness`` with the streak opacity ``a`` (:func:`rain_layer`)."""

    kind: ClassVar[str] = "rain"
    coverage: float  # target mean of ``a``; the rendered mean (the ``density`` factor) comes out close
    angle: float = 90.0  # dominant streak direction, deg counter-clockwise from +x (90 = vertical); jitter +-3
    brightness: float = 0.9  # grey level of the streaks
    seed: int = 0  # seed of streak positions, lengths (10-40 px), widths (1-2 px), opacities (0.3-0.8)

    def __post_init__(self):
        check_in("rain coverage", self.coverage, 0, 0.5)
        check_in("rain angle (deg)", self.angle, 0, 180, "[)")
        check_in("rain brightness", self.brightness, 0, 1)


def sample_rain(
    rng: np.random.Generator,
    *,
    severity: tuple[float, float] = (0.15, 1.0),
    angle: tuple[float, float] = (65.0, 115.0),
    brightness: tuple[float, float] = (0.8, 1.0),
) -> RainParams:
    """Target coverage 0.012-0.08 (rain severity 0.15-1), angle within 25 deg of vertical, brightness 0.8-1.

    Args:
        rng: The random generator.
        severity: Range of the target coverage as a fraction of 0.08 (the coverage of rain severity 1), uniform.
        angle: Range of the streak direction in degrees.
        brightness: Range of the streaks' grey level.

    """
    coverage = float(rng.uniform(*severity) * 0.08)
    return RainParams(coverage, float(rng.uniform(*angle)), float(rng.uniform(*brightness)), draw_seed(rng))


@lru_cache(maxsize=2)
def _rain_alpha(p: RainParams, h: int, w: int) -> np.ndarray:
    rng = np.random.default_rng(p.seed)
    # Streaks land independently and the last drawn wins: covering an area fraction f takes -log(1 - f) frames'
    # worth of streaks, and the mean opacity is then about f times the mean streak opacity.
    frac = min(p.coverage / _RAIN_MEAN_OPACITY, 0.95)
    n = int(round(-math.log1p(-frac) * h * w / _RAIN_FOOTPRINT))
    half = rng.uniform(10.0, 40.0, n) / 2
    theta = np.radians(p.angle + rng.uniform(-3.0, 3.0, n))
    cx, cy = rng.uniform(0, w, n), rng.uniform(0, h, n)
    dx, dy = half * np.cos(theta), -half * np.sin(theta)
    ends = np.rint(np.stack([cx - dx, cy - dy, cx + dx, cy + dy], axis=1) * 16).astype(np.int64).tolist()
    width = rng.integers(1, 3, n).tolist()
    opacity = np.rint(rng.uniform(0.3, 0.8, n) * 255).astype(np.int64).tolist()
    layer = np.zeros((h, w), np.uint8)
    for (x1, y1, x2, y2), t, a in zip(ends, width, opacity, strict=True):
        cv2.line(layer, (x1, y1), (x2, y2), a, t, cv2.LINE_AA, shift=4)
    soften = motion_kernel(5.0, p.angle)  # motion of the drop during exposure, along the streak
    alpha = cv2.filter2D(layer.astype(np.float32) / 255.0, -1, soften, borderType=cv2.BORDER_REFLECT)
    return readonly(np.clip(alpha, 0.0, 1.0))


def rain_layer(params: RainParams, shape: tuple[int, ...]) -> np.ndarray:
    """Return the streak opacity ``a`` in [0, 1] (float32 HxW, read-only) that :func:`apply_rain` composites."""
    return _rain_alpha(params, int(shape[0]), int(shape[1]))


def apply_rain(img: np.ndarray, params: RainParams) -> np.ndarray:
    """Composite :func:`rain_layer` ``a`` as ``I (1 - a) + a * brightness``."""
    x = as_image(img)
    a = rain_layer(params, x.shape)[..., None]
    return (x * (1.0 - a) + a * np.float32(params.brightness)).astype(np.float32, copy=False)


def rain_factors(params: RainParams, shape: tuple[int, ...]) -> dict:
    """The schema's rain factors: the rendered mean opacity over a frame of ``shape`` (density), and the angle."""
    return {"density": float(rain_layer(params, shape).mean()), "angle": params.angle}


def describe_rain(p: RainParams, f: dict) -> str:
    """The ground-truth observation of rain ``p``."""
    return (
        f"synthesised rain streaks at angle={p.angle:.1f} deg, brightness={p.brightness:.2f}, "
        f"coverage={f['density']:.4f}"
    )


#: This kind's models; :data:`rl.degradations.MODELS` files them by kind and name.
MODELS = (
    DegradationModel(
        kind="rain",
        name="rnr",
        params=RainParams,
        sample=sample_rain,
        apply=apply_rain,
        factors=rain_factors,
        describe=describe_rain,
        source="reason-restore's own protocol: ranges spread the severities of reasoner.kinds evenly",
    ),
)
