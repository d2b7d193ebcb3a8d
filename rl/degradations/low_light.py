"""Under-exposure: a dark, compressed tone curve with the read noise of a short exposure."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from rl.degradations.base import DegradationModel, as_image, check_in, clip01, draw_seed, log_uniform


@dataclass(frozen=True)
class LowLightParams:
    """Under-exposure ``out = exposure * x ** gamma`` plus Gaussian read noise, clipped to [0, 1]."""

    kind: ClassVar[str] = "low_light"
    exposure: float  # linear gain, 1 = correctly exposed
    gamma: float = 1.0
    read_sigma: float = 0.0  # read-noise std on the 0-255 scale
    seed: int = 0  # seed of the read-noise draw

    def __post_init__(self):
        check_in("exposure", self.exposure, 0, 1, "(]")
        check_in("gamma", self.gamma, 0.2, 5)
        check_in("read_sigma (0-255)", self.read_sigma, 0, 255)


def sample_low_light(
    rng: np.random.Generator,
    *,
    exposure: tuple[float, float] = (0.08, 0.5),
    gamma: tuple[float, float] = (1.0, 2.0),
    read_sigma: tuple[float, float] = (1.0, 3.0),
) -> LowLightParams:
    """Exposure 0.08-0.5 log-uniform, gamma 1-2, read noise sigma 1-3 (0-255; the noise kind covers more)."""
    e = log_uniform(rng, *exposure)
    return LowLightParams(e, float(rng.uniform(*gamma)), float(rng.uniform(*read_sigma)), draw_seed(rng))


def apply_low_light(img: np.ndarray, params: LowLightParams) -> np.ndarray:
    """Return ``exposure * x ** gamma`` plus Gaussian read noise of std ``read_sigma / 255``, clipped."""
    x, p = as_image(img), params
    out = np.power(x, np.float32(p.gamma)) if p.gamma != 1 else x.copy()
    out *= np.float32(p.exposure)
    if p.read_sigma > 0:
        noise = np.random.default_rng(p.seed).standard_normal(x.shape, dtype=np.float32)
        out += noise * np.float32(p.read_sigma / 255.0)
    return clip01(out)


def low_light_factors(params: LowLightParams, shape: tuple[int, ...]) -> dict:
    """The schema's low-light factors: exposure gain and gamma."""
    return {"exposure": params.exposure, "gamma": params.gamma}


def describe_low_light(p: LowLightParams, f: dict) -> str:
    """The ground-truth observation of under-exposure ``p``."""
    return (
        f"synthesised under-exposure with exposure={p.exposure:.3f}, gamma={p.gamma:.2f}, "
        f"read noise sigma={p.read_sigma:.1f} (0-255)"
    )


#: This kind's models; :data:`rl.degradations.MODELS` files them by kind and name.
MODELS = (
    DegradationModel(
        kind="low_light",
        name="rnr",
        params=LowLightParams,
        sample=sample_low_light,
        apply=apply_low_light,
        factors=low_light_factors,
        describe=describe_low_light,
        source="reason-restore's own protocol: ranges spread the severities of reasoner.kinds evenly",
    ),
)
