"""Sensor noise: our Gaussian / Poisson-Gaussian, BasicSR's Poisson, grey, channel-correlated and camera noise.

Every model reports the schema's ``sigma`` as the noise std it actually adds at mid-grey (0.5), on the 0-255 scale,
and ``model`` "poisson_gaussian" where the std grows with brightness (the schema has no pure-Poisson label).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import ClassVar, Literal

import cv2
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


_LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R BT.601, as cv2.COLOR_RGB2GRAY
_POISSON_LEVELS = 256.0  # BasicSR: 2 ** ceil(log2(distinct levels)), 256 for any 8-bit photo with > 128 levels


@dataclass(frozen=True)
class PoissonNoiseParams:
    """BasicSR's Poisson noise: ``scale * (Poisson(256 x) / 256 - x)`` on the 8-bit image, per channel or on luma."""

    kind: ClassVar[str] = "noise"
    scale: float  # multiplier of the shot noise (BasicSR's ``poisson_scale``)
    grey: bool = False  # one draw on the luma, the same in all channels
    seed: int = 0  # seed of the Poisson draw

    def __post_init__(self):
        check_in("Poisson noise scale", self.scale, 0, 20, "(]")
        check(isinstance(self.grey, bool | np.bool_), f"grey must be a bool, got {self.grey!r}")


def sample_poisson_noise(
    rng: np.random.Generator, *, scale: tuple[float, float] = (1.0, 3.0), grey: float = 0.0
) -> PoissonNoiseParams:
    """Scale uniform in [1, 3] (MiO's range; Real-ESRGAN uses [0.05, 3]), grey with probability ``grey`` (0).

    Args:
        rng: The random generator.
        scale: Range of the shot-noise multiplier (std at mid-grey is ``scale * 11.3`` on the 0-255 scale).
        grey: Probability of grey (luma) noise.

    """
    s = float(rng.uniform(*scale))
    return PoissonNoiseParams(s, bool(rng.random() < grey), draw_seed(rng))


def apply_poisson_noise(img: np.ndarray, params: PoissonNoiseParams) -> np.ndarray:
    """Add ``scale`` times the Poisson noise of the 8-bit-rounded image at 256 levels, clipped to [0, 1]."""
    x, p = as_image(img), params
    base = x @ _LUMA if p.grey else x
    base = np.rint(np.clip(base, 0.0, 1.0) * 255.0) / np.float32(255.0)
    levels = np.float32(_POISSON_LEVELS)
    noise = np.random.default_rng(p.seed).poisson(base * levels).astype(np.float32) / levels - base
    if p.grey:
        noise = noise[..., None]
    return clip01(x + noise * np.float32(p.scale))


def poisson_noise_factors(params: PoissonNoiseParams, shape: tuple[int, ...]) -> dict:
    """The schema's noise factors: the shot-noise std at mid-grey, ``scale * sqrt(0.5 / 256)`` (0-255 scale)."""
    return {"sigma": params.scale * math.sqrt(0.5 / _POISSON_LEVELS) * 255.0, "model": "poisson_gaussian"}


def describe_poisson_noise(p: PoissonNoiseParams, f: dict) -> str:
    """The ground-truth observation of BasicSR Poisson noise ``p``."""
    return (
        f"synthesised {'grey ' if p.grey else ''}Poisson shot noise (BasicSR scale={p.scale:.2f}), "
        f"sigma={f['sigma']:.1f} at mid-grey (0-255)"
    )


@dataclass(frozen=True)
class GreyNoiseParams:
    """Gaussian noise of std ``sigma`` (0-255) drawn once per pixel and added equally to R, G and B."""

    kind: ClassVar[str] = "noise"
    sigma: float
    seed: int = 0

    def __post_init__(self):
        check_in("grey noise sigma (0-255)", self.sigma, 0, 255, "(]")


def sample_grey_noise(rng: np.random.Generator, *, sigma: tuple[float, float] = (1.0, 30.0)) -> GreyNoiseParams:
    """Sigma uniform in [1, 30] on the 0-255 scale (Real-ESRGAN's ``noise_range``)."""
    return GreyNoiseParams(float(rng.uniform(*sigma)), draw_seed(rng))


def apply_grey_noise(img: np.ndarray, params: GreyNoiseParams) -> np.ndarray:
    """Add one ``N(0, (sigma/255)^2)`` draw per pixel to all three channels, clipped to [0, 1]."""
    x = as_image(img)
    noise = np.random.default_rng(params.seed).standard_normal(x.shape[:2], dtype=np.float32)
    return clip01(x + (noise * np.float32(params.sigma / 255.0))[..., None])


def grey_noise_factors(params: GreyNoiseParams, shape: tuple[int, ...]) -> dict:
    """The schema's noise factors: sigma (0-255), Gaussian."""
    return {"sigma": params.sigma, "model": "gaussian"}


def describe_grey_noise(p: GreyNoiseParams, f: dict) -> str:
    """The ground-truth observation of grey noise ``p``."""
    return f"synthesised grey (luma-only) Gaussian noise with sigma={p.sigma:.1f} (0-255)"


@dataclass(frozen=True)
class CorrelatedNoiseParams:
    """Gaussian noise correlated across channels: covariance ``(level/255)^2 U^T diag(d) U``, ``U`` and ``d`` drawn.

    ``U`` is a random orthonormal matrix and ``d`` uniform in [0, 1]^3, both from ``seed`` (BSRGAN's third noise
    case), so the per-channel std is ``level * sqrt(diag)`` and the noise has a colour cast per pixel.
    """

    kind: ClassVar[str] = "noise"
    level: float  # noise level on the 0-255 scale before the random covariance shapes it
    seed: int = 0  # seed of the covariance and of the draw

    def __post_init__(self):
        check_in("correlated noise level (0-255)", self.level, 0, 255, "(]")


def sample_correlated_noise(rng: np.random.Generator, *, level: tuple[int, int] = (2, 25)) -> CorrelatedNoiseParams:
    """Level a uniform integer in [2, 25] on the 0-255 scale (BSRGAN's ``noise_level1, noise_level2``)."""
    return CorrelatedNoiseParams(float(rng.integers(level[0], level[1] + 1)), draw_seed(rng))


def _channel_mixing(p: CorrelatedNoiseParams) -> tuple[np.random.Generator, np.ndarray]:
    # The seed's generator (the draw continues from it) and M with noise = z @ M, so cov = M^T M = U^T diag(d) U.
    rng = np.random.default_rng(p.seed)
    d = rng.uniform(0.0, 1.0, 3)
    u, _ = np.linalg.qr(rng.standard_normal((3, 3)))
    return rng, (np.sqrt(d)[:, None] * u.T) * (p.level / 255.0)


def apply_correlated_noise(img: np.ndarray, params: CorrelatedNoiseParams) -> np.ndarray:
    """Add channel-correlated Gaussian noise (see :class:`CorrelatedNoiseParams`), clipped to [0, 1]."""
    x = as_image(img)
    rng, mix = _channel_mixing(params)
    z = rng.standard_normal((x.shape[0] * x.shape[1], 3), dtype=np.float32)
    return clip01(x + (z @ mix.astype(np.float32)).reshape(x.shape))


def correlated_noise_factors(params: CorrelatedNoiseParams, shape: tuple[int, ...]) -> dict:
    """The schema's noise factors: the RMS per-channel std, ``sqrt(trace(cov) / 3)`` on the 0-255 scale."""
    _, mix = _channel_mixing(params)
    return {"sigma": float(np.sqrt((mix**2).sum() / 3.0)) * 255.0, "model": "gaussian"}


def describe_correlated_noise(p: CorrelatedNoiseParams, f: dict) -> str:
    """The ground-truth observation of channel-correlated noise ``p``."""
    return f"synthesised channel-correlated Gaussian noise (level {p.level:.0f}), RMS sigma={f['sigma']:.1f} (0-255)"


_BAYER = {"bilinear": cv2.COLOR_BayerBG2RGB, "edge_aware": cv2.COLOR_BayerBG2RGB_EA}  # OpenCV's name for RGGB


@dataclass(frozen=True)
class CameraNoiseParams:
    """Camera noise: Poisson-Gaussian noise on an RGGB Bayer mosaic, demosaiced, then unsharp-masked as an ISP does.

    The mosaic noise has variance ``(sigma/255)^2 (rho m / 0.5 + 1 - rho)`` at mosaic value ``m`` (the Gaussian
    approximation of shot plus read noise); demosaicing spreads it into colour blotches correlated between
    neighbours, sharpening amplifies it. Demosaicing also touches the clean content (a slight softening, colour
    fringes on fine detail), as a camera does.
    """

    kind: ClassVar[str] = "noise"
    sigma: float  # mosaic noise std at mid-grey, 0-255 scale, before demosaicing and sharpening
    rho: float = 0.5  # shot-noise fraction of the variance at mid-grey
    demosaic: Literal["bilinear", "edge_aware"] = "bilinear"
    sharpen: float = 0.0  # unsharp-mask amount (Gaussian std 1 px)
    seed: int = 0

    def __post_init__(self):
        check_in("camera noise sigma (0-255)", self.sigma, 0, 255, "(]")
        check_in("camera noise shot fraction", self.rho, 0, 1)
        check(self.demosaic in _BAYER, f"unknown demosaicing {self.demosaic!r}; expected one of {sorted(_BAYER)}")
        check_in("sharpening amount", self.sharpen, 0, 2)


def sample_camera_noise(
    rng: np.random.Generator,
    *,
    sigma: tuple[float, float] = (4.0, 40.0),
    rho: tuple[float, float] = (0.3, 0.9),
    sharpen: tuple[float, float] = (0.0, 0.8),
) -> CameraNoiseParams:
    """Mosaic sigma 4-40 (0-255) log-uniform, shot fraction 0.3-0.9, bilinear or edge-aware 50/50, sharpen 0-0.8.

    Args:
        rng: The random generator.
        sigma: Range of the mosaic noise std at mid-grey (0-255, log-uniform).
        rho: Range of its shot-noise fraction (uniform).
        sharpen: Range of the unsharp-mask amount (uniform).

    """
    s, r = log_uniform(rng, *sigma), float(rng.uniform(*rho))
    method = "bilinear" if rng.random() < 0.5 else "edge_aware"
    return CameraNoiseParams(s, r, method, float(rng.uniform(*sharpen)), draw_seed(rng))


def _camera(x: np.ndarray, p: CameraNoiseParams, noisy: bool) -> np.ndarray:
    h, w = x.shape[:2]
    channel = np.empty((h, w), np.intp)  # RGGB: R at even rows and columns, B at odd ones, G elsewhere
    channel[0::2, 0::2], channel[0::2, 1::2], channel[1::2, 0::2], channel[1::2, 1::2] = 0, 1, 1, 2
    mosaic = np.take_along_axis(x, channel[..., None], axis=2)[..., 0]
    if noisy:
        var = (p.sigma / 255.0) ** 2 * (p.rho * mosaic / 0.5 + (1.0 - p.rho))
        z = np.random.default_rng(p.seed).standard_normal((h, w), dtype=np.float32)
        mosaic = mosaic + z * np.sqrt(var).astype(np.float32)
    raw = np.rint(np.clip(mosaic, 0.0, 1.0) * 65535.0).astype(np.uint16)  # OpenCV demosaics 8- or 16-bit only
    rgb = cv2.cvtColor(raw, _BAYER[p.demosaic]).astype(np.float32) / np.float32(65535.0)
    if p.sharpen > 0:
        soft = cv2.GaussianBlur(rgb, (0, 0), 1.0, borderType=cv2.BORDER_REFLECT)
        rgb = rgb + np.float32(p.sharpen) * (rgb - soft)
    return clip01(rgb)


def apply_camera_noise(img: np.ndarray, params: CameraNoiseParams) -> np.ndarray:
    """Mosaic, add noise, demosaic with OpenCV, unsharp-mask, clip (see :class:`CameraNoiseParams`)."""
    x = as_image(img)
    if min(x.shape[:2]) < 2:  # no 2x2 Bayer cell: noise the pixels directly
        return _camera(np.pad(x, ((0, 1), (0, 1), (0, 0)), mode="edge"), params, True)[: x.shape[0], : x.shape[1]]
    return _camera(x, params, True)


@lru_cache(maxsize=64)
def _camera_sigma(p: CameraNoiseParams) -> float:
    # The std the whole pipeline leaves on a flat mid-grey frame, 0-255: what a noise estimator would see.
    flat = np.full((96, 96, 3), 0.5, np.float32)
    residual = _camera(flat, p, True)[8:-8, 8:-8] - _camera(flat, p, False)[8:-8, 8:-8]
    return float(residual.std() * 255.0)


def camera_noise_factors(params: CameraNoiseParams, shape: tuple[int, ...]) -> dict:
    """The schema's noise factors: the std the pipeline leaves on flat mid-grey (0-255), measured with the seed."""
    return {"sigma": _camera_sigma(params), "model": "poisson_gaussian" if params.rho > 0 else "gaussian"}


def describe_camera_noise(p: CameraNoiseParams, f: dict) -> str:
    """The ground-truth observation of camera noise ``p``."""
    return (
        f"synthesised camera noise: Bayer mosaic sigma={p.sigma:.1f} (shot fraction {p.rho:.2f}), {p.demosaic} "
        f"demosaicing, sharpening {p.sharpen:.2f}; sigma={f['sigma']:.1f} at mid-grey (0-255)"
    )


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
    DegradationModel(
        kind="noise",
        name="poisson",
        params=PoissonNoiseParams,
        sample=sample_poisson_noise,
        apply=apply_poisson_noise,
        factors=poisson_noise_factors,
        describe=describe_poisson_noise,
        source="BasicSR generate_poisson_noise (Real-ESRGAN, Wang et al. 2021); MiO/AgenticIR scale 1-3",
    ),
    DegradationModel(
        kind="noise",
        name="grey",
        params=GreyNoiseParams,
        sample=sample_grey_noise,
        apply=apply_grey_noise,
        factors=grey_noise_factors,
        describe=describe_grey_noise,
        source="Real-ESRGAN gray noise (xinntao/Real-ESRGAN train_realesrnet_x4plus.yml, noise_range [1, 30])",
    ),
    DegradationModel(
        kind="noise",
        name="correlated",
        params=CorrelatedNoiseParams,
        sample=sample_correlated_noise,
        apply=apply_correlated_noise,
        factors=correlated_noise_factors,
        describe=describe_correlated_noise,
        source="BSRGAN add_Gaussian_noise, channel-correlated case (Zhang et al. 2021, cszn/BSRGAN utils_blindsr.py)",
    ),
    DegradationModel(
        kind="noise",
        name="camera",
        params=CameraNoiseParams,
        sample=sample_camera_noise,
        apply=apply_camera_noise,
        factors=camera_noise_factors,
        describe=describe_camera_noise,
        source="Poisson-Gaussian sensor noise (Foi et al. 2008) on a Bayer mosaic, OpenCV demosaicing, unsharp mask "
        "(a phone ISP; cf. Brooks et al. 2019, Unprocessing Images)",
    ),
)
