"""Under-exposure: our dark tone curve, MiO's HSV value edits, a camera-response model of a short exposure.

Every model reports the schema's ``exposure`` and ``gamma`` of ``out = exposure * x ** gamma``: exactly for the
project's own model, and for the others as the least-squares fit of that curve to what the model does to a grey
ramp from black to white (:func:`fit_tone_curve`): the tone curve a photo spanning the full range would get.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import ClassVar, Literal

import numpy as np

from rl.degradations.base import DegradationModel, as_image, check, check_in, clip01, draw_seed, log_uniform


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


_RAMP = np.linspace(0.0, 1.0, 256)  # the 8-bit grey levels the tone curves are fitted on
_GAMMAS = np.geomspace(0.2, 5.0, 1601)  # the schema's gamma range


def fit_tone_curve(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Least-squares ``(exposure, gamma)`` of ``y ~ exposure * x ** gamma``, exposure in (0, 1], gamma in [0.2, 5].

    For each gamma of a fine log grid the best exposure is closed-form, ``sum(y x^g) / sum(x^2g)`` (clamped into
    the schema's range); the pair with the least squared error wins.

    >>> x = np.linspace(0.01, 1.0, 100)
    >>> [round(v, 2) for v in fit_tone_curve(x, 0.3 * x**1.5)]
    [0.3, 1.5]
    """
    xg = np.power(np.asarray(x, np.float64)[None, :], _GAMMAS[:, None])
    y = np.asarray(y, np.float64)[None, :]
    exposure = np.clip((xg * y).sum(axis=1) / (xg * xg).sum(axis=1), 1e-3, 1.0)
    best = int(np.argmin(((exposure[:, None] * xg - y) ** 2).sum(axis=1)))
    return float(exposure[best]), float(_GAMMAS[best])


_MIO_MODES = ("shift", "gamma", "squash")


@dataclass(frozen=True)
class MioDarkParams:
    """MiO's darkening of the HSV value ``V = max(R, G, B)``, hue and saturation kept (RGB scaled by ``V' / V``).

    "shift": ``V' = V - amount / 255`` (``amount`` in 0-255 units); "gamma": ``V' = V ** (1 / amount)``;
    "squash": ``V' = (V - min V) / (max V - min V) * amount / 255`` (min and max over the image).
    """

    kind: ClassVar[str] = "low_light"
    mode: Literal["shift", "gamma", "squash"]
    amount: float

    def __post_init__(self):
        check(self.mode in _MIO_MODES, f"unknown darkening mode {self.mode!r}; expected one of {_MIO_MODES}")
        if self.mode == "gamma":
            check_in("darkening gamma", self.amount, 0.2, 1)
        else:
            check_in(f"darkening {self.mode} (0-255)", self.amount, 1, 255, "[)" if self.mode == "squash" else "[]")


def sample_mio_dark(
    rng: np.random.Generator,
    *,
    shift: tuple[int, int] = (30, 49),
    gamma: tuple[float, float] = (0.5, 0.7),
    squash: tuple[int, int] = (100, 149),
) -> MioDarkParams:
    """Mode uniform over shift (integer 30-49), gamma (0.5-0.7) and squash (integer maximum 100-149), as MiO.

    Args:
        rng: The random generator.
        shift: Inclusive range of the value shift, 0-255 units.
        gamma: Range of MiO's gamma (V is raised to ``1 / gamma``).
        squash: Inclusive range of the squashed maximum, 0-255 units.

    """
    mode = _MIO_MODES[int(rng.integers(3))]
    if mode == "gamma":
        return MioDarkParams(mode, float(rng.uniform(*gamma)))
    lo, hi = shift if mode == "shift" else squash
    return MioDarkParams(mode, float(rng.integers(lo, hi + 1)))


def _mio_value(v: np.ndarray, p: MioDarkParams) -> np.ndarray:
    if p.mode == "shift":
        return np.maximum(v - np.float32(p.amount / 255.0), 0.0)
    if p.mode == "gamma":
        return np.power(v, np.float32(1.0 / p.amount))
    lo, hi = float(v.min()), float(v.max())
    return (v - np.float32(lo)) * np.float32(p.amount / 255.0 / max(hi - lo, 1e-6))


def apply_mio_dark(img: np.ndarray, params: MioDarkParams) -> np.ndarray:
    """Darken the HSV value as :class:`MioDarkParams` says, keeping hue and saturation; clipped to [0, 1]."""
    x = as_image(img)
    v = x.max(axis=2)
    ratio = np.divide(_mio_value(v, params), v, out=np.zeros_like(v), where=v > 0)
    return clip01(x * ratio[..., None])


@lru_cache(maxsize=64)
def _mio_fit(p: MioDarkParams) -> tuple[float, float]:
    return fit_tone_curve(_RAMP, _mio_value(_RAMP.astype(np.float32), p))


def mio_dark_factors(params: MioDarkParams, shape: tuple[int, ...]) -> dict:
    """The schema's low-light factors: the tone curve fitted to the darkening of a full grey ramp."""
    exposure, gamma = _mio_fit(params)
    return {"exposure": exposure, "gamma": gamma}


def describe_mio_dark(p: MioDarkParams, f: dict) -> str:
    """The ground-truth observation of MiO darkening ``p``."""
    what = {
        "shift": f"value shifted down by {p.amount:.0f}/255",
        "gamma": f"value raised to the power {1.0 / p.amount:.2f}",
        "squash": f"value squashed into [0, {p.amount:.0f}/255]",
    }[p.mode]
    return f"synthesised darkening (HSV {what}): fitted exposure={f['exposure']:.3f}, gamma={f['gamma']:.2f}"


_CRFS = ("gamma", "sigmoid")


@dataclass(frozen=True)
class CrfDarkParams:
    """A short exposure through a camera response ``f``: ``out = f(gain * f^-1(x) + noise)``.

    ``f`` is "gamma" (``E ** (1 / 2.2)``) or "sigmoid" (``(1 + c) E^n / (E^n + c)``, a film-like shoulder). The
    noise, in linear irradiance, is shot noise of a sensor with ``photons`` at full scale plus read noise.
    """

    kind: ClassVar[str] = "low_light"
    gain: float  # linear exposure relative to a correct one
    crf: Literal["gamma", "sigmoid"] = "gamma"
    n: float = 1.0  # sigmoid exponent
    c: float = 0.3  # sigmoid knee
    photons: float = 2000.0  # photo-electrons at full scale (shot noise)
    read_sigma: float = 0.001  # read-noise std in linear units of full scale
    seed: int = 0

    def __post_init__(self):
        check_in("exposure gain", self.gain, 0, 1, "(]")
        check(self.crf in _CRFS, f"unknown camera response {self.crf!r}; expected one of {_CRFS}")
        check_in("sigmoid exponent", self.n, 0.2, 5)
        check_in("sigmoid knee", self.c, 0.01, 10)
        check_in("photons at full scale", self.photons, 1, 1e7)
        check_in("read noise (linear)", self.read_sigma, 0, 0.5)


def sample_crf_dark(
    rng: np.random.Generator,
    *,
    gain: tuple[float, float] = (0.03, 0.3),
    photons: tuple[float, float] = (500.0, 5000.0),
    read_sigma: tuple[float, float] = (0.0005, 0.003),
) -> CrfDarkParams:
    """Gain 0.03-0.3 (1.7-5 stops under) log-uniform, gamma or sigmoid response 50/50 (n 0.8-1.2, c 0.2-0.6).

    Args:
        rng: The random generator.
        gain: Range of the linear exposure gain (log-uniform).
        photons: Range of the photo-electrons at full scale (log-uniform).
        read_sigma: Range of the read-noise std in linear units (log-uniform).

    """
    g = log_uniform(rng, *gain)
    crf = _CRFS[int(rng.integers(2))]
    n, c = (float(rng.uniform(0.8, 1.2)), float(rng.uniform(0.2, 0.6))) if crf == "sigmoid" else (1.0, 0.3)
    return CrfDarkParams(g, crf, n, c, log_uniform(rng, *photons), log_uniform(rng, *read_sigma), draw_seed(rng))


def _response(e: np.ndarray, p: CrfDarkParams) -> np.ndarray:
    e = np.clip(e, 0.0, 1.0)
    if p.crf == "gamma":
        return np.power(e, np.float32(1.0 / 2.2))
    en = np.power(e, np.float32(p.n))
    return np.float32(1.0 + p.c) * en / (en + np.float32(p.c))


def _irradiance(x: np.ndarray, p: CrfDarkParams) -> np.ndarray:
    if p.crf == "gamma":
        return np.power(x, np.float32(2.2))
    return np.power(np.float32(p.c) * x / (np.float32(1.0 + p.c) - x), np.float32(1.0 / p.n))


def apply_crf_dark(img: np.ndarray, params: CrfDarkParams) -> np.ndarray:
    """Invert the response, scale the irradiance by ``gain``, add shot and read noise, re-apply the response."""
    x, p = as_image(img), params
    e = _irradiance(x, p) * np.float32(p.gain)
    rng = np.random.default_rng(p.seed)
    std = np.sqrt(e / np.float32(p.photons) + np.float32(p.read_sigma**2))
    e = e + rng.standard_normal(x.shape, dtype=np.float32) * std
    return clip01(_response(e, p).astype(np.float32))


@lru_cache(maxsize=64)
def _crf_fit(p: CrfDarkParams) -> tuple[float, float]:
    ramp = _RAMP.astype(np.float32)
    return fit_tone_curve(_RAMP, _response(_irradiance(ramp, p) * np.float32(p.gain), p))


def crf_dark_factors(params: CrfDarkParams, shape: tuple[int, ...]) -> dict:
    """The schema's low-light factors: the tone curve fitted to the noise-free response on a full grey ramp."""
    exposure, gamma = _crf_fit(params)
    return {"exposure": exposure, "gamma": gamma}


def describe_crf_dark(p: CrfDarkParams, f: dict) -> str:
    """The ground-truth observation of a short exposure ``p``."""
    return (
        f"synthesised short exposure ({math.log2(1.0 / p.gain):.1f} stops under) through a {p.crf} camera response "
        f"with shot and read noise: fitted exposure={f['exposure']:.3f}, gamma={f['gamma']:.2f}"
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
    DegradationModel(
        kind="low_light",
        name="mio",
        params=MioDarkParams,
        sample=sample_mio_dark,
        apply=apply_mio_dark,
        factors=mio_dark_factors,
        describe=describe_mio_dark,
        source="AgenticIR/MiO darken() (dataset/add_single_degradation.py): HSV value shift, gamma or linear squash",
    ),
    DegradationModel(
        kind="low_light",
        name="crf",
        params=CrfDarkParams,
        sample=sample_crf_dark,
        apply=apply_crf_dark,
        factors=crf_dark_factors,
        describe=describe_crf_dark,
        source="camera-response low-light synthesis (Grossberg & Nayar 2003 response curves; cf. Lv et al. 2021, "
        "Attention guided low-light enhancement, and Brooks et al. 2019 noise)",
    ),
)
