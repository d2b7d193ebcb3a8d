"""Atmospheric scattering (haze, fog): contrast and colour fade towards the airlight with scene depth.

All models are Koschmieder's ``I = J t + A (1 - t)``, ``t = exp(-beta d)``; they differ in the depth ``d`` and the
airlight ``A``. No model has a per-image depth map (RESIDE and MiO estimate one per photo): depth is a proxy, a
ramp, a smooth random field or a constant, so haze does not follow the scene's objects. Every model reports the
schema's ``transmission`` as the mean of the ``t`` it applies.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import ClassVar, Literal

import cv2
import numpy as np

from rl.degradations.base import DegradationModel, as_image, check, check_in, draw_seed, readonly

_HAZE_NEAR = 0.15  # normalised depth at the bottom edge of the frame


@dataclass(frozen=True)
class HazeParams:
    """Atmospheric scattering ``I = J t + A (1 - t)`` with ``t = exp(-beta d)``, depth ``d`` in [0, 1]."""

    kind: ClassVar[str] = "haze"
    beta: float  # scattering coefficient for the normalised depth
    airlight: tuple[float, float, float]  # atmospheric light A, RGB in [0, 1]
    horizon: float = 0.4  # horizon height as a fraction of the frame from the top; depth 1 above it
    seed: int = 0  # seed of the smooth depth perturbation
    near: float = 0.15  # depth at the bottom edge: 0.15 is open ground receding to the horizon, 1 uniform fog

    def __post_init__(self):
        check_in("haze beta", self.beta, 0, 20, "(]")
        check(len(self.airlight) == 3, f"airlight must be RGB, got {self.airlight!r}")
        object.__setattr__(self, "airlight", tuple(float(a) for a in self.airlight))  # hashable, from JSON lists too
        for a in self.airlight:
            check_in("airlight", a, 0, 1)
        check_in("horizon", self.horizon, 0, 1, "[)")
        check_in("near depth", self.near, 0.05, 1)


@lru_cache(maxsize=2)
def _depth_profile(horizon: float, near: float, h: int) -> np.ndarray:
    # Ground-plane depth per row: 1 above the horizon, then proportional to 1 / (distance below it), ``near`` at
    # the bottom edge (near=1 is uniform fog).
    y = (np.arange(h, dtype=np.float32) + 0.5) / h
    return np.minimum(1.0, near * (1.0 - horizon) / np.maximum(y - horizon, 1e-6))


def sample_haze(
    rng: np.random.Generator,
    *,
    fog: float = 0.4,
    depth_coefficient: tuple[float, float] = (0.4, 2.5),
    airlight: tuple[float, float] = (0.75, 1.0),
) -> HazeParams:
    """Haze over open ground (60%) or fog that also veils the foreground (40%, bottom depth 0.4-1).

    Mean transmission is uniform in [exp(-2.5 d), exp(-0.4 d)] for the scene's mean depth d (so severities spread
    evenly); grey airlight 0.75-1 tinted +-0.05; horizon 0.2-0.6. Fog keeps "bright top" from being the cue.

    Args:
        rng: The random generator.
        fog: Probability of fog (the foreground veiled too).
        depth_coefficient: ``(lo, hi)``: the mean transmission lies in ``[exp(-hi d), exp(-lo d)]``.
        airlight: Range of the grey level of the airlight (each channel then tinted by +-0.05).

    """
    horizon = float(rng.uniform(0.2, 0.6))
    near = _HAZE_NEAR if rng.random() < 1.0 - fog else float(rng.uniform(0.4, 1.0))
    typical = float(_depth_profile(horizon, near, 64).mean())
    lo, hi = depth_coefficient
    t = rng.uniform(math.exp(-hi * typical), math.exp(-lo * typical))
    grey = rng.uniform(*airlight)
    tint = tuple(float(np.clip(grey + rng.uniform(-0.05, 0.05), 0.0, 1.0)) for _ in range(3))
    return HazeParams(-math.log(t) / typical, tint, horizon, draw_seed(rng), near)


def _transmission(p: HazeParams, h: int, w: int) -> np.ndarray:
    # Depth profile plus a seeded smooth wobble. Independent of the pixels, so the ground truth needs only the shape.
    depth = _depth_profile(p.horizon, p.near, h)
    coarse = np.random.default_rng(p.seed).normal(0.0, 0.08, (4, 4)).astype(np.float32)
    wobble = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
    depth = np.clip(depth[:, None] + wobble, _HAZE_NEAR / 3, 1.0)  # nothing touches the lens: t < 1
    return readonly(np.exp(-p.beta * depth).astype(np.float32))


def transmission_map(params: HazeParams, shape: tuple[int, ...]) -> np.ndarray:
    """Return the transmission ``t`` in (0, 1] (float32 HxW, read-only) that :func:`apply_haze` uses."""
    return _transmission(params, int(shape[0]), int(shape[1]))


def apply_haze(img: np.ndarray, params: HazeParams) -> np.ndarray:
    """Return ``J t + A (1 - t)`` with ``t`` from :func:`transmission_map` (in [0, 1] without clipping)."""
    x = as_image(img)
    t = transmission_map(params, x.shape)[..., None]
    return (x * t + np.asarray(params.airlight, np.float32) * (1.0 - t)).astype(np.float32, copy=False)


def haze_factors(params: HazeParams, shape: tuple[int, ...]) -> dict:
    """The schema's haze factors: mean transmission over a frame of ``shape``, airlight and beta."""
    t = float(transmission_map(params, shape).mean())
    return {"transmission": t, "airlight": list(params.airlight), "beta": params.beta}


def describe_haze(p: HazeParams, f: dict) -> str:
    """The ground-truth observation of haze ``p``."""
    return (
        "synthesised haze with beta={:.2f}, airlight=({:.2f}, {:.2f}, {:.2f}), horizon at {:.2f} "
        "of the height, mean transmission={:.3f}".format(p.beta, *p.airlight, p.horizon, f["transmission"])
    )


def smooth_field(seed: int, h: int, w: int, cells: int = 5) -> np.ndarray:
    """A smooth random field (float32 HxW, zero mean, unit std over ``cells x cells`` control points), from ``seed``.

    Normal control points on a coarse grid, bicubic up to the frame: variation on the scale of a fifth of the
    frame, like the large structures of a depth map, with nothing finer.
    """
    coarse = np.random.default_rng(seed).standard_normal((cells, cells)).astype(np.float32)
    field = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
    return (field - field.mean()) / max(float(field.std()), 1e-6)


def _ramp(angle: float, h: int, w: int) -> np.ndarray:
    # 0 -> 1 across the frame along direction ``angle`` (deg counter-clockwise from +x, y down: 90 = far at the top).
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    t = math.radians(angle)
    u = (x + 0.5) / w * math.cos(t) - (y + 0.5) / h * math.sin(t)
    return (u - u.min()) / max(float(u.max() - u.min()), 1e-6)


@dataclass(frozen=True)
class MioHazeParams:
    """RESIDE / MiO haze: grey airlight ``A``, ``beta``, depth normalised to a maximum of 1.

    The depth is a proxy for MiO's estimated depth map: a ramp from 0.3 at the bottom to 1 at the top plus a smooth
    random field (std 0.15) from ``seed``, clipped to [0.05, 1], divided by its maximum as MiO does.
    """

    kind: ClassVar[str] = "haze"
    airlight: float  # grey level of A in [0, 1]
    beta: float
    seed: int = 0

    def __post_init__(self):
        check_in("airlight", self.airlight, 0, 1)
        check_in("haze beta", self.beta, 0, 20, "(]")


def sample_mio_haze(
    rng: np.random.Generator, *, airlight: tuple[float, float] = (0.7, 1.0), beta: tuple[float, float] = (0.6, 1.8)
) -> MioHazeParams:
    """A uniform in [0.7, 1.0] and beta uniform in [0.6, 1.8] (RESIDE's ranges, as MiO draws them)."""
    return MioHazeParams(float(rng.uniform(*airlight)), float(rng.uniform(*beta)), draw_seed(rng))


@lru_cache(maxsize=2)
def _mio_transmission(p: MioHazeParams, h: int, w: int) -> np.ndarray:
    depth = 0.3 + 0.7 * _ramp(90.0, h, w) + 0.15 * smooth_field(p.seed, h, w)
    depth = np.clip(depth, 0.05, 1.0)
    return readonly(np.exp(-p.beta * depth / depth.max()).astype(np.float32))


def apply_mio_haze(img: np.ndarray, params: MioHazeParams) -> np.ndarray:
    """Return ``J t + A (1 - t)`` with the proxy depth of :class:`MioHazeParams`."""
    x = as_image(img)
    t = _mio_transmission(params, x.shape[0], x.shape[1])[..., None]
    return (x * t + np.float32(params.airlight) * (1.0 - t)).astype(np.float32, copy=False)


def mio_haze_factors(params: MioHazeParams, shape: tuple[int, ...]) -> dict:
    """The schema's haze factors: mean transmission over a frame of ``shape``, grey airlight and beta."""
    t = float(_mio_transmission(params, int(shape[0]), int(shape[1])).mean())
    return {"transmission": t, "airlight": [params.airlight] * 3, "beta": params.beta}


def describe_mio_haze(p: MioHazeParams, f: dict) -> str:
    """The ground-truth observation of MiO haze ``p``."""
    return (
        f"synthesised haze (RESIDE/MiO scattering, depth proxy) with A={p.airlight:.2f}, beta={p.beta:.2f}, "
        f"mean transmission={f['transmission']:.3f}"
    )


DEPTHS = ("ramp", "field", "homogeneous")
_WARM = (1.0, 0.25, -1.0)  # the warm direction of an airlight's colour shift


@dataclass(frozen=True)
class ProxyHazeParams:
    """Scattering over a chosen depth proxy with a possibly coloured airlight.

    Depth ``d`` is "ramp" (0.2 to 1 along ``angle``), "field" (a smooth random field from ``seed`` in [0.2, 1]) or
    "homogeneous" (1 everywhere: fog of uniform density, ``t`` constant).
    """

    kind: ClassVar[str] = "haze"
    beta: float
    airlight: tuple[float, float, float]  # RGB in [0, 1]
    depth: Literal["ramp", "field", "homogeneous"] = "ramp"
    angle: float = 90.0  # direction in which depth grows, deg counter-clockwise from +x, y down (90: far at the top)
    seed: int = 0

    def __post_init__(self):
        check_in("haze beta", self.beta, 0, 20, "(]")
        check(len(self.airlight) == 3, f"airlight must be RGB, got {self.airlight!r}")
        object.__setattr__(self, "airlight", tuple(float(a) for a in self.airlight))
        for a in self.airlight:
            check_in("airlight", a, 0, 1)
        check(self.depth in DEPTHS, f"unknown depth proxy {self.depth!r}; expected one of {DEPTHS}")
        check_in("ramp angle (deg)", self.angle, 0, 360, "[)")


def _proxy_depth(p: ProxyHazeParams, h: int, w: int) -> np.ndarray:
    if p.depth == "homogeneous":
        return np.ones((h, w), np.float32)
    if p.depth == "ramp":
        return 0.2 + 0.8 * _ramp(p.angle, h, w)
    field = smooth_field(p.seed, h, w, cells=4)
    return 0.2 + 0.8 * (field - field.min()) / max(float(field.max() - field.min()), 1e-6)


def sample_proxy_haze(
    rng: np.random.Generator,
    *,
    transmission: tuple[float, float] = (0.2, 0.9),
    airlight: tuple[float, float] = (0.6, 1.0),
    tint: float = 0.12,
) -> ProxyHazeParams:
    """Depth proxy uniform over :data:`DEPTHS`, mean transmission uniform in [0.2, 0.9], tinted airlight.

    The ramp grows within 40 deg of upwards; the airlight's grey level is uniform in [0.6, 1], shifted by up to
    ``tint`` along the warm-cool axis (R up and B down: yellowish smog; the reverse: bluish mist).

    Args:
        rng: The random generator.
        transmission: Range of the mean transmission (beta is solved for it on the proxy's mean depth).
        airlight: Range of the airlight's grey level.
        tint: Largest shift of the airlight's red and blue channels (green moves a quarter as much).

    """
    depth = DEPTHS[int(rng.integers(len(DEPTHS)))]
    angle = float(rng.uniform(50.0, 130.0))
    seed = draw_seed(rng)
    t = float(rng.uniform(*transmission))
    mean_depth = float(_proxy_depth(ProxyHazeParams(1.0, (1.0, 1.0, 1.0), depth, angle, seed), 64, 64).mean())
    grey, warmth = float(rng.uniform(*airlight)), float(rng.uniform(-tint, tint))
    colour = tuple(float(np.clip(grey + warmth * c, 0.0, 1.0)) for c in _WARM)
    return ProxyHazeParams(-math.log(t) / mean_depth, colour, depth, angle, seed)


@lru_cache(maxsize=2)
def _proxy_transmission(p: ProxyHazeParams, h: int, w: int) -> np.ndarray:
    return readonly(np.exp(-p.beta * _proxy_depth(p, h, w)).astype(np.float32))


def apply_proxy_haze(img: np.ndarray, params: ProxyHazeParams) -> np.ndarray:
    """Return ``J t + A (1 - t)`` over the proxy depth of :class:`ProxyHazeParams`."""
    x = as_image(img)
    t = _proxy_transmission(params, x.shape[0], x.shape[1])[..., None]
    return (x * t + np.asarray(params.airlight, np.float32) * (1.0 - t)).astype(np.float32, copy=False)


def proxy_haze_factors(params: ProxyHazeParams, shape: tuple[int, ...]) -> dict:
    """The schema's haze factors: mean transmission over a frame of ``shape``, airlight and beta."""
    t = float(_proxy_transmission(params, int(shape[0]), int(shape[1])).mean())
    return {"transmission": t, "airlight": list(params.airlight), "beta": params.beta}


def describe_proxy_haze(p: ProxyHazeParams, f: dict) -> str:
    """The ground-truth observation of proxy-depth haze ``p``."""
    return (
        "synthesised {} haze with beta={:.2f}, airlight=({:.2f}, {:.2f}, {:.2f}), mean transmission={:.3f}".format(
            {"ramp": "receding", "field": "patchy", "homogeneous": "uniform"}[p.depth], p.beta, *p.airlight,
            f["transmission"],
        )
    )  # fmt: skip


#: This kind's models; :data:`rl.degradations.MODELS` files them by kind and name.
MODELS = (
    DegradationModel(
        kind="haze",
        name="rnr",
        params=HazeParams,
        sample=sample_haze,
        apply=apply_haze,
        factors=haze_factors,
        describe=describe_haze,
        source="reason-restore's own protocol: ranges spread the severities of reasoner.kinds evenly",
    ),
    DegradationModel(
        kind="haze",
        name="mio",
        params=MioHazeParams,
        sample=sample_mio_haze,
        apply=apply_mio_haze,
        factors=mio_haze_factors,
        describe=describe_mio_haze,
        source="RESIDE (Li et al. 2019) ranges as MiO/AgenticIR draw them (dataset/add_single_degradation.py); "
        "a ramp + smooth-field depth proxy replaces their estimated depth maps",
    ),
    DegradationModel(
        kind="haze",
        name="proxy",
        params=ProxyHazeParams,
        sample=sample_proxy_haze,
        apply=apply_proxy_haze,
        factors=proxy_haze_factors,
        describe=describe_proxy_haze,
        source="Koschmieder scattering (Narasimhan & Nayar 2002) over ramp / random-field / constant depth with a "
        "coloured airlight (cf. imagecorruptions fog, Hendrycks & Dietterich 2019)",
    ),
)
