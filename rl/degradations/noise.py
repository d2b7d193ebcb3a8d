"""Sensor noise: Gaussian, or Poisson-Gaussian (shot noise that grows with brightness plus read noise)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np

from rl.degradations.base import DegradationModel, as_image, check, check_in, clip01, draw_seed, log_uniform

_POISSON_EXACT_BELOW = 25.0  # larger Poisson means are drawn as N(lam, lam): same two moments, much faster


@dataclass(frozen=True)
class NoiseParams:
    """Sensor noise, independent per pixel and channel, clipped to [0, 1] after."""

    kind: ClassVar[str] = "noise"
    sigma: float  # total std at mid-grey (0.5), on the 0-255 scale
    model: Literal["gaussian", "poisson_gaussian"] = "gaussian"
    rho: float = 0.0  # fraction of the variance at mid-grey that is shot noise; 0 for "gaussian"
    seed: int = 0  # seed of the noise draw

    def __post_init__(self):
        check_in("noise sigma (0-255)", self.sigma, 0, 255, "(]")
        check(self.model in ("gaussian", "poisson_gaussian"), f"unknown noise model {self.model!r}")
        if self.model == "gaussian":
            check_in("rho of Gaussian noise", self.rho, 0, 0)
        else:
            check_in("rho of Poisson-Gaussian noise", self.rho, 0, 1, "(]")


def sample_noise(
    rng: np.random.Generator,
    *,
    sigma: tuple[float, float] = (5.0, 50.0),
    poisson: float = 0.5,
    rho: tuple[float, float] = (0.5, 0.9),
) -> NoiseParams:
    """Sigma 5-50 (0-255) log-uniform; Gaussian or Poisson-Gaussian (shot fraction rho 0.5-0.9), 50/50.

    Args:
        rng: The random generator.
        sigma: Range of the total std at mid-grey, 0-255 scale (log-uniform).
        poisson: Probability of Poisson-Gaussian noise.
        rho: Range of its shot-noise fraction (uniform).

    """
    s = log_uniform(rng, *sigma)
    if rng.random() < 1.0 - poisson:
        return NoiseParams(s, "gaussian", 0.0, draw_seed(rng))
    return NoiseParams(s, "poisson_gaussian", float(rng.uniform(*rho)), draw_seed(rng))


def apply_noise(img: np.ndarray, params: NoiseParams) -> np.ndarray:
    """Add noise of total std ``sigma / 255`` at mid-grey; Poisson-Gaussian shot noise has peak 0.5 / (rho var)."""
    x, p = as_image(img), params
    rng = np.random.default_rng(p.seed)
    var = (p.sigma / 255.0) ** 2
    if p.model == "gaussian":
        return clip01(x + rng.standard_normal(x.shape, dtype=np.float32) * np.float32(math.sqrt(var)))
    peak = np.float32(0.5 / (p.rho * var))
    lam = x * peak
    exact = lam < _POISSON_EXACT_BELOW
    if exact.all():
        counts = rng.poisson(lam).astype(np.float32)
    else:
        counts = lam + np.sqrt(lam) * rng.standard_normal(x.shape, dtype=np.float32)
        counts[exact] = rng.poisson(lam[exact])
    read = rng.standard_normal(x.shape, dtype=np.float32) * np.float32(math.sqrt((1.0 - p.rho) * var))
    return clip01(counts / peak + read)


def noise_factors(params: NoiseParams, shape: tuple[int, ...]) -> dict:
    """The schema's noise factors: sigma at mid-grey (0-255) and the noise model."""
    return {"sigma": params.sigma, "model": params.model}


def describe_noise(p: NoiseParams, f: dict) -> str:
    """The ground-truth observation of noise ``p``."""
    if p.model == "gaussian":
        return f"synthesised Gaussian noise with sigma={p.sigma:.1f} (0-255)"
    return f"synthesised Poisson-Gaussian noise, sigma={p.sigma:.1f} (0-255, mid-grey), shot fraction {p.rho:.2f}"


#: This kind's models; :data:`rl.degradations.MODELS` files them by kind and name.
MODELS = (
    DegradationModel(
        kind="noise",
        name="rnr",
        params=NoiseParams,
        sample=sample_noise,
        apply=apply_noise,
        factors=noise_factors,
        describe=describe_noise,
        source="reason-restore's own protocol: ranges spread the severities of reasoner.kinds evenly",
    ),
)
