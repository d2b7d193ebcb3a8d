"""Atmospheric scattering (haze, fog): contrast and colour fade towards the airlight with scene depth."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import ClassVar

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
)
