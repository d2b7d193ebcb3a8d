"""Rain: our composited streaks, MiO's noise-seeded additive streaks, screen-blended defocused streaks.

Every model reports the schema's ``density`` as the mean over the frame of the streak layer it actually blends in
(opacity towards the streak colour, or brightness added), and ``angle`` as the streak direction in degrees
counter-clockwise from +x (90 = vertical).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import ClassVar

import cv2
import numpy as np

from rl.degradations.base import DegradationModel, as_image, check_in, clip01, draw_seed, log_uniform, readonly
from rl.degradations.kernels import motion_kernel, stroke_kernel

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


@dataclass(frozen=True)
class MioRainParams:
    """MiO rain: sparse random seeds smeared into streaks, the layer stretched to a peak of 1 and added to R, G, B.

    Seeds land on a fraction ``value / 25600`` of the pixels; each is smeared along a line of ``length`` px reduced
    by ``1 - length / 100`` (at most ``length``), softened by a 3x3 Gaussian; the layer is scaled to [0, 1],
    quantised down to 8 bits and added, then clipped.
    """

    kind: ClassVar[str] = "rain"
    value: float  # drop-density strength, 50-99 in MiO
    length: float  # streak length parameter in px, 20-39 in MiO
    angle: float = 90.0  # deg counter-clockwise from +x (MiO's angle a is 90 + a here)
    seed: int = 0

    def __post_init__(self):
        check_in("rain strength", self.value, 1, 2560)
        check_in("streak length (px)", self.length, 2, 99)
        check_in("rain angle (deg)", self.angle, 0, 180, "[)")


def sample_mio_rain(
    rng: np.random.Generator,
    *,
    value: tuple[int, int] = (50, 99),
    length: tuple[int, int] = (20, 39),
    angle: tuple[int, int] = (-30, 29),
) -> MioRainParams:
    """Strength integer 50-99, length integer 20-39 px, angle integer -30..29 deg from vertical, as MiO."""
    ln = int(rng.integers(length[0], length[1] + 1))
    a = int(rng.integers(angle[0], angle[1] + 1))
    v = int(rng.integers(value[0], value[1] + 1))
    return MioRainParams(float(v), float(ln), float(90 + a), draw_seed(rng))


@lru_cache(maxsize=2)
def _mio_rain_layer(p: MioRainParams, h: int, w: int) -> np.ndarray:
    u = np.random.default_rng(p.seed).uniform(0.0, 256.0, (h, w))
    seeds = np.where(u >= 256.0 - p.value / 100.0, u, 0.0).astype(np.float32)
    cross = np.array([[0, 0.1, 0], [0.1, 8, 0.1], [0, 0.1, 0]], np.float32)
    seeds = cv2.filter2D(seeds, -1, cross)
    span = min(p.length, math.sqrt(2.0) * (1.0 - p.length / 100.0) * p.length)  # MiO's shrunk diagonal, clipped
    half, t = max(span - 1.0, 0.0) / 2.0, math.radians(p.angle)
    line = stroke_kernel(half * math.cos(t), -half * math.sin(t), 0.5) * span  # about 1 per pixel along the line
    streak = cv2.GaussianBlur(line.astype(np.float32), (3, 3), 0)
    layer = cv2.filter2D(seeds, -1, streak)
    lo, hi = float(layer.min()), float(layer.max())
    layer = np.floor((layer - lo) / max(hi - lo, 1e-12) * 255.0) / 255.0  # MiO's min-max stretch, then uint8
    return readonly(layer.astype(np.float32))


def mio_rain_layer(params: MioRainParams, shape: tuple[int, ...]) -> np.ndarray:
    """The brightness (float32 HxW in [0, 1], read-only) :func:`apply_mio_rain` adds."""
    return _mio_rain_layer(params, int(shape[0]), int(shape[1]))


def apply_mio_rain(img: np.ndarray, params: MioRainParams) -> np.ndarray:
    """Add :func:`mio_rain_layer` to every channel and clip."""
    x = as_image(img)
    return clip01(x + mio_rain_layer(params, x.shape)[..., None])


def mio_rain_factors(params: MioRainParams, shape: tuple[int, ...]) -> dict:
    """The schema's rain factors: the mean brightness added (before clipping) and the angle."""
    return {"density": float(mio_rain_layer(params, shape).mean()), "angle": params.angle}


def describe_mio_rain(p: MioRainParams, f: dict) -> str:
    """The ground-truth observation of MiO rain ``p``."""
    return (
        f"synthesised additive rain (MiO: strength {p.value:.0f}, streak length {p.length:.0f} px) at "
        f"angle={p.angle:.0f} deg, mean added brightness={f['density']:.4f}"
    )


@dataclass(frozen=True)
class ScreenRainParams:
    """Streaks screen-blended over the scene, ``1 - (1 - I)(1 - b R)``: out-of-focus drops that never darken.

    ``R`` holds anti-aliased streaks of about ``length`` px (0.5-1.5 times, from ``seed``) and opacity 0.4-1,
    smeared along ``angle`` and defocused by a Gaussian of std ``blur`` px; ``b`` is ``brightness``.
    """

    kind: ClassVar[str] = "rain"
    density: float  # target mean of b R; the rendered mean (the factor) comes out near it
    angle: float = 90.0
    length: float = 30.0  # mean streak length in px
    blur: float = 1.0  # defocus std in px
    brightness: float = 0.9
    seed: int = 0

    def __post_init__(self):
        check_in("rain density", self.density, 0, 0.5)
        check_in("rain angle (deg)", self.angle, 0, 180, "[)")
        check_in("streak length (px)", self.length, 2, 200)
        check_in("streak blur (px)", self.blur, 0, 10)
        check_in("streak brightness", self.brightness, 0, 1)


def sample_screen_rain(
    rng: np.random.Generator,
    *,
    density: tuple[float, float] = (0.01, 0.08),
    angle: tuple[float, float] = (70.0, 110.0),
    length: tuple[float, float] = (15.0, 45.0),
    blur: tuple[float, float] = (0.5, 1.5),
    brightness: tuple[float, float] = (0.7, 1.0),
) -> ScreenRainParams:
    """Density 0.01-0.08 uniform, angle within 20 deg of vertical, length 15-45 px log-uniform, blur 0.5-1.5 px.

    Args:
        rng: The random generator.
        density: Range of the target mean streak opacity.
        angle: Range of the streak direction in degrees.
        length: Range of the mean streak length in px (log-uniform).
        blur: Range of the defocus std in px.
        brightness: Range of the streaks' brightness ``b``.

    """
    return ScreenRainParams(
        float(rng.uniform(*density)), float(rng.uniform(*angle)), log_uniform(rng, *length),
        float(rng.uniform(*blur)), float(rng.uniform(*brightness)), draw_seed(rng),
    )  # fmt: skip


@lru_cache(maxsize=2)
def _screen_layer(p: ScreenRainParams, h: int, w: int) -> np.ndarray:
    rng = np.random.default_rng(p.seed)
    footprint = p.length * 1.3 * 0.7 * p.brightness  # length x anti-aliased width x mean opacity x brightness
    n = int(round(p.density * h * w / footprint))
    half = p.length * rng.uniform(0.5, 1.5, n) / 2
    theta = np.radians(p.angle + rng.uniform(-2.0, 2.0, n))
    cx, cy = rng.uniform(0, w, n), rng.uniform(0, h, n)
    dx, dy = half * np.cos(theta), -half * np.sin(theta)
    ends = np.rint(np.stack([cx - dx, cy - dy, cx + dx, cy + dy], axis=1) * 16).astype(np.int64).tolist()
    opacity = np.rint(rng.uniform(0.4, 1.0, n) * 255).astype(np.int64).tolist()
    layer = np.zeros((h, w), np.uint8)
    for (x1, y1, x2, y2), a in zip(ends, opacity, strict=True):
        cv2.line(layer, (x1, y1), (x2, y2), a, 1, cv2.LINE_AA, shift=4)
    r = layer.astype(np.float32) / 255.0
    if p.blur > 0:
        r = cv2.GaussianBlur(r, (0, 0), p.blur, borderType=cv2.BORDER_REFLECT)
        r = r / max(float(r.max()), 1e-6) if r.max() > 0 else r  # defocus spreads drops, it does not dim them
    return readonly(np.clip(r * np.float32(p.brightness), 0.0, 1.0))


def screen_rain_layer(params: ScreenRainParams, shape: tuple[int, ...]) -> np.ndarray:
    """The screen opacity ``b R`` (float32 HxW in [0, 1], read-only) :func:`apply_screen_rain` blends."""
    return _screen_layer(params, int(shape[0]), int(shape[1]))


def apply_screen_rain(img: np.ndarray, params: ScreenRainParams) -> np.ndarray:
    """Screen-blend :func:`screen_rain_layer` over the image: ``1 - (1 - I)(1 - b R)``."""
    x = as_image(img)
    r = screen_rain_layer(params, x.shape)[..., None]
    return (1.0 - (1.0 - x) * (1.0 - r)).astype(np.float32, copy=False)


def screen_rain_factors(params: ScreenRainParams, shape: tuple[int, ...]) -> dict:
    """The schema's rain factors: the mean screen opacity ``b R`` over a frame of ``shape``, and the angle."""
    return {"density": float(screen_rain_layer(params, shape).mean()), "angle": params.angle}


def describe_screen_rain(p: ScreenRainParams, f: dict) -> str:
    """The ground-truth observation of screen-blended rain ``p``."""
    return (
        f"synthesised screen-blended rain streaks (~{p.length:.0f} px, defocus {p.blur:.1f} px) at "
        f"angle={p.angle:.0f} deg, coverage={f['density']:.4f}"
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
    DegradationModel(
        kind="rain",
        name="mio",
        params=MioRainParams,
        sample=sample_mio_rain,
        apply=apply_mio_rain,
        factors=mio_rain_factors,
        describe=describe_mio_rain,
        source="MiOIR / AgenticIR add_rain (Kong et al. 2024; dataset/add_single_degradation.py)",
    ),
    DegradationModel(
        kind="rain",
        name="screen",
        params=ScreenRainParams,
        sample=sample_screen_rain,
        apply=apply_screen_rain,
        factors=screen_rain_factors,
        describe=describe_screen_rain,
        source="screen-blend rain layers as in Rain100L/H and DDN synthesis (Yang et al. 2017; Fu et al. 2017)",
    ),
)
