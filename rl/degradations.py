"""Degradation synthesis: sample typed parameters, apply them, map them to the schema's factors and severities.

Images are ``float32`` arrays of shape ``(H, W, 3)``, RGB, values in [0, 1], in and out (other float dtypes are
converted; inputs are never modified). Per kind: a frozen parameter dataclass ``<Kind>Params``, a sampler
``sample_<kind>(rng)`` and a pure ``apply_<kind>(img, params)``; any randomness of the application (noise draws,
streak positions, depth perturbation) is the integer ``seed`` the parameters hold. :func:`factors` maps parameters
to the schema's physical factors and to a severity through :mod:`reasoner.severity` (the one mapping); records
are built in :mod:`rl.ground_truth`. Sampling ranges are in each ``sample_<kind>`` docstring; they are
log-uniform where the severity map is logarithmic, so severities come out roughly uniform.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from itertools import combinations
from typing import ClassVar, Literal

import cv2
import numpy as np
from PIL import Image

from reasoner import severity as sev
from reasoner.imageio import to_uint8

#: Low-pass kinds: their spectra are near-indistinguishable attenuations of high frequencies and real captures
#: rarely stack them, so a sampled mixture holds at most one (else the ground truth asks for an unresolvable split).
LOW_PASS_KINDS: frozenset[str] = frozenset({"blur", "motion_blur", "low_resolution"})

_SEED_HIGH = 2**31 - 1  # seeds stay exact as JSON numbers
_HAZE_NEAR = 0.15  # normalised depth at the bottom edge of the frame
_RAIN_FOOTPRINT = 60.0  # mean area in px of one anti-aliased streak (10-40 px long, 1-2 px wide), calibrated
_RAIN_MEAN_OPACITY = 0.55
_POISSON_EXACT_BELOW = 25.0  # larger Poisson means are drawn as N(lam, lam): same two moments, much faster


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


def _in(name: str, value: float, lo: float, hi: float, bounds: str = "[]") -> None:
    ok = (lo <= value if bounds[0] == "[" else lo < value) and (value <= hi if bounds[1] == "]" else value < hi)
    _check(ok, f"{name} must be in {bounds[0]}{lo}, {hi}{bounds[1]}, got {value!r}")


@dataclass(frozen=True)
class NoiseParams:
    """Sensor noise, independent per pixel and channel, clipped to [0, 1] after."""

    kind: ClassVar[str] = "noise"
    sigma: float  # total std at mid-grey (0.5), on the 0-255 scale
    model: Literal["gaussian", "poisson_gaussian"] = "gaussian"
    rho: float = 0.0  # fraction of the variance at mid-grey that is shot noise; 0 for "gaussian"
    seed: int = 0  # seed of the noise draw

    def __post_init__(self):
        _in("noise sigma (0-255)", self.sigma, 0, 255, "(]")
        _check(self.model in ("gaussian", "poisson_gaussian"), f"unknown noise model {self.model!r}")
        if self.model == "gaussian":
            _in("rho of Gaussian noise", self.rho, 0, 0)
        else:
            _in("rho of Poisson-Gaussian noise", self.rho, 0, 1, "(]")


@dataclass(frozen=True)
class BlurParams:
    """Isotropic optical blur: a Gaussian of std ``sigma`` px, or a defocus disk of ``radius`` px (the other 0)."""

    kind: ClassVar[str] = "blur"
    kernel: Literal["gaussian", "defocus"]
    sigma: float = 0.0
    radius: float = 0.0

    def __post_init__(self):
        if self.kernel == "gaussian":
            _in("Gaussian blur sigma (px)", self.sigma, 0, 50, "(]")
            _in("radius of a Gaussian blur", self.radius, 0, 0)
        elif self.kernel == "defocus":
            _in("defocus radius (px)", self.radius, 0, 100, "(]")
            _in("sigma of a defocus blur", self.sigma, 0, 0)
        else:
            raise ValueError(f"unknown blur kernel {self.kernel!r}; expected 'gaussian' or 'defocus'")

    @property
    def equivalent_sigma(self) -> float:
        """Std in px of the Gaussian with the same second moment (a disk of radius r has r / 2)."""
        return self.sigma if self.kernel == "gaussian" else self.radius / 2.0


@dataclass(frozen=True)
class MotionBlurParams:
    """Linear motion of ``length`` px at ``angle`` degrees counter-clockwise from +x, y down (90 = vertical)."""

    kind: ClassVar[str] = "motion_blur"
    length: float
    angle: float

    def __post_init__(self):
        _in("motion length (px)", self.length, 1, 500)
        _in("motion angle (deg)", self.angle, 0, 180, "[)")


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
        _in("haze beta", self.beta, 0, 20, "(]")
        _check(len(self.airlight) == 3, f"airlight must be RGB, got {self.airlight!r}")
        object.__setattr__(self, "airlight", tuple(float(a) for a in self.airlight))  # hashable, from JSON lists too
        for a in self.airlight:
            _in("airlight", a, 0, 1)
        _in("horizon", self.horizon, 0, 1, "[)")
        _in("near depth", self.near, 0.05, 1)


@dataclass(frozen=True)
class LowLightParams:
    """Under-exposure ``out = exposure * x ** gamma`` plus Gaussian read noise, clipped to [0, 1]."""

    kind: ClassVar[str] = "low_light"
    exposure: float  # linear gain, 1 = correctly exposed
    gamma: float = 1.0
    read_sigma: float = 0.0  # read-noise std on the 0-255 scale
    seed: int = 0  # seed of the read-noise draw

    def __post_init__(self):
        _in("exposure", self.exposure, 0, 1, "(]")
        _in("gamma", self.gamma, 0.2, 5)
        _in("read_sigma (0-255)", self.read_sigma, 0, 255)


@dataclass(frozen=True)
class JpegParams:
    """JPEG compression at IJG ``quality`` (1-100) with Pillow's default 4:2:0 chroma subsampling."""

    kind: ClassVar[str] = "jpeg"
    quality: int

    def __post_init__(self):
        _check(isinstance(self.quality, int | np.integer), f"JPEG quality must be an integer, got {self.quality!r}")
        _in("JPEG quality", self.quality, 1, 100)


@dataclass(frozen=True)
class RainParams:
    """Rain streaks composited as ``I (1 - a) + a * brightness`` with the streak opacity ``a`` (:func:`rain_layer`)."""

    kind: ClassVar[str] = "rain"
    coverage: float  # target mean of ``a``; the rendered mean (the ``density`` factor) comes out close
    angle: float = 90.0  # dominant streak direction, deg counter-clockwise from +x (90 = vertical); jitter +-3
    brightness: float = 0.9  # grey level of the streaks
    seed: int = 0  # seed of streak positions, lengths (10-40 px), widths (1-2 px), opacities (0.3-0.8)

    def __post_init__(self):
        _in("rain coverage", self.coverage, 0, 0.5)
        _in("rain angle (deg)", self.angle, 0, 180, "[)")
        _in("rain brightness", self.brightness, 0, 1)


@dataclass(frozen=True)
class LowResolutionParams:
    """Area down-sampling by ``scale`` to round(W / scale) x round(H / scale), then bicubic back to the size."""

    kind: ClassVar[str] = "low_resolution"
    scale: float

    def __post_init__(self):
        _in("low-resolution scale", self.scale, 1, 16)


Params = (
    NoiseParams
    | BlurParams
    | MotionBlurParams
    | HazeParams
    | LowLightParams
    | JpegParams
    | RainParams
    | LowResolutionParams
)


def _seed(rng: np.random.Generator) -> int:
    return int(rng.integers(0, _SEED_HIGH))


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def sample_noise(rng: np.random.Generator) -> NoiseParams:
    """Sigma 5-50 (0-255) log-uniform; Gaussian or Poisson-Gaussian (shot fraction rho 0.5-0.9), 50/50."""
    sigma = _log_uniform(rng, 5.0, 50.0)
    if rng.random() < 0.5:
        return NoiseParams(sigma, "gaussian", 0.0, _seed(rng))
    return NoiseParams(sigma, "poisson_gaussian", float(rng.uniform(0.5, 0.9)), _seed(rng))


def sample_blur(rng: np.random.Generator) -> BlurParams:
    """Gaussian sigma 0.8-4 px or defocus radius 1.5-8 px (equivalent sigma 0.75-4), 50/50, log-uniform."""
    if rng.random() < 0.5:
        return BlurParams("gaussian", sigma=_log_uniform(rng, 0.8, 4.0))
    return BlurParams("defocus", radius=_log_uniform(rng, 1.5, 8.0))


def sample_motion_blur(rng: np.random.Generator) -> MotionBlurParams:
    """Length 5-31 px log-uniform, angle uniform in [0, 180) degrees."""
    return MotionBlurParams(_log_uniform(rng, 5.0, 31.0), float(rng.uniform(0.0, 180.0)) % 180.0)


def sample_haze(rng: np.random.Generator) -> HazeParams:
    """Haze over open ground (60%) or fog that also veils the foreground (40%, bottom depth 0.4-1).

    Mean transmission is uniform in [exp(-2.5 d), exp(-0.4 d)] for the scene's mean depth d (so severities spread
    evenly); grey airlight 0.75-1 tinted +-0.05; horizon 0.2-0.6. Fog keeps "bright top" from being the cue.
    """
    horizon = float(rng.uniform(0.2, 0.6))
    near = _HAZE_NEAR if rng.random() < 0.6 else float(rng.uniform(0.4, 1.0))
    typical = float(_depth_profile(horizon, near, 64).mean())
    t = rng.uniform(math.exp(-2.5 * typical), math.exp(-0.4 * typical))
    grey = rng.uniform(0.75, 1.0)
    airlight = tuple(float(np.clip(grey + rng.uniform(-0.05, 0.05), 0.0, 1.0)) for _ in range(3))
    return HazeParams(-math.log(t) / typical, airlight, horizon, _seed(rng), near)


def sample_low_light(rng: np.random.Generator) -> LowLightParams:
    """Exposure 0.08-0.5 log-uniform, gamma 1-2, read noise sigma 1-3 (0-255; the noise kind covers more)."""
    exposure = _log_uniform(rng, 0.08, 0.5)
    return LowLightParams(exposure, float(rng.uniform(1.0, 2.0)), float(rng.uniform(1.0, 3.0)), _seed(rng))


def sample_jpeg(rng: np.random.Generator) -> JpegParams:
    """Quality uniform integer in [10, 90]."""
    return JpegParams(int(rng.integers(10, 91)))


def sample_rain(rng: np.random.Generator) -> RainParams:
    """Target coverage 0.012-0.08 (rain severity 0.15-1), angle within 25 deg of vertical, brightness 0.8-1."""
    coverage = float(rng.uniform(0.15, 1.0) * 0.08)
    return RainParams(coverage, float(rng.uniform(65.0, 115.0)), float(rng.uniform(0.8, 1.0)), _seed(rng))


def sample_low_resolution(rng: np.random.Generator) -> LowResolutionParams:
    """Scale 2-4 log-uniform."""
    return LowResolutionParams(_log_uniform(rng, 2.0, 4.0))


SAMPLERS: dict[str, Callable[[np.random.Generator], Params]] = {
    "haze": sample_haze,
    "rain": sample_rain,
    "motion_blur": sample_motion_blur,
    "blur": sample_blur,
    "low_resolution": sample_low_resolution,
    "low_light": sample_low_light,
    "noise": sample_noise,
    "jpeg": sample_jpeg,
}


def sample_ops(
    rng: np.random.Generator, kinds: Sequence[str] | None = None, n_kinds: int | tuple[int, int] = 1
) -> list[Params]:
    """Sample parameters for distinct kinds, returned in physical order.

    Args:
        rng: the random generator.
        kinds: the kinds to sample, used as given (even several low-pass ones); ``None`` draws them.
        n_kinds: how many kinds to draw, or an inclusive ``(low, high)`` range; 0 is a clean sample. Draws are
            uniform over the sets holding at most one of :data:`LOW_PASS_KINDS`.

    """
    if kinds is None:
        lo, hi = (n_kinds, n_kinds) if isinstance(n_kinds, int | np.integer) else n_kinds
        _check(0 <= lo <= hi <= len(SAMPLERS) - len(LOW_PASS_KINDS) + 1, f"bad n_kinds {n_kinds!r}")
        n = int(rng.integers(lo, hi + 1))
        valid = [c for c in combinations(sev.PHYSICAL_ORDER, n) if len(LOW_PASS_KINDS.intersection(c)) <= 1]
        kinds = valid[int(rng.integers(len(valid)))]
    _check(all(k in SAMPLERS for k in kinds), f"unknown kinds in {list(kinds)}; known: {list(sev.PHYSICAL_ORDER)}")
    _check(len(set(kinds)) == len(kinds), f"kinds must be distinct, got {list(kinds)}")
    return [SAMPLERS[k](rng) for k in sorted(kinds, key=sev.PHYSICAL_ORDER.index)]


def _readonly(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False  # cached arrays are shared between callers
    return a


@lru_cache(maxsize=128)
def _stroke(dx: float, dy: float, radius: float, supersample: int = 8) -> np.ndarray:
    # Coverage of the points within `radius` px of the segment from -(dx, dy) to (dx, dy), on a supersample x
    # supersample grid per pixel: exact, symmetric anti-aliasing (cv2.line lands a sub-pixel off).
    k = math.ceil(max(abs(dx), abs(dy)) + radius + 0.5) - 1  # last pixel the stroke reaches into
    n, s = 2 * k + 1, supersample
    c = (np.arange(n * s) + 0.5) / s - (k + 0.5)  # sub-sample positions in px from the kernel centre
    x, y = c[None, :], c[:, None]
    along = np.clip((x * dx + y * dy) / (dx * dx + dy * dy), -1.0, 1.0) if dx or dy else 0.0
    inside = ((x - along * dx) ** 2 + (y - along * dy) ** 2 <= radius**2).astype(np.float32)
    kernel = inside.reshape(n, s, n, s).mean(axis=(1, 3))
    return _readonly(kernel / kernel.sum())


def disk_kernel(radius: float) -> np.ndarray:
    """Defocus disk of ``radius`` px, anti-aliased by supersampled coverage; float32, sums to 1, read-only."""
    return _stroke(0.0, 0.0, float(radius))


def motion_kernel(length: float, angle: float) -> np.ndarray:
    """Linear motion kernel ``length`` px end to end at ``angle`` deg counter-clockwise from +x (y down).

    A 1 px wide stroke with round ends, anti-aliased by supersampled coverage; float32, sums to 1, read-only.
    """
    half = max(length - 1.0, 0.0) / 2.0  # the round ends add the last 0.5 px at each end
    return _stroke(half * math.cos(math.radians(angle)), -half * math.sin(math.radians(angle)), 0.5)


@lru_cache(maxsize=2)
def _depth_profile(horizon: float, near: float, h: int) -> np.ndarray:
    # Ground-plane depth per row: 1 above the horizon, then proportional to 1 / (distance below it), ``near`` at
    # the bottom edge (near=1 is uniform fog).
    y = (np.arange(h, dtype=np.float32) + 0.5) / h
    return np.minimum(1.0, near * (1.0 - horizon) / np.maximum(y - horizon, 1e-6))


def _transmission(p: HazeParams, h: int, w: int) -> np.ndarray:
    # Depth profile plus a seeded smooth wobble. Independent of the pixels, so the ground truth needs only the shape.
    depth = _depth_profile(p.horizon, p.near, h)
    coarse = np.random.default_rng(p.seed).normal(0.0, 0.08, (4, 4)).astype(np.float32)
    wobble = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
    depth = np.clip(depth[:, None] + wobble, _HAZE_NEAR / 3, 1.0)  # nothing touches the lens: t < 1
    return _readonly(np.exp(-p.beta * depth).astype(np.float32))


def transmission_map(params: HazeParams, shape: tuple[int, ...]) -> np.ndarray:
    """Return the transmission ``t`` in (0, 1] (float32 HxW, read-only) that :func:`apply_haze` uses."""
    return _transmission(params, int(shape[0]), int(shape[1]))


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
    return _readonly(np.clip(alpha, 0.0, 1.0))


def rain_layer(params: RainParams, shape: tuple[int, ...]) -> np.ndarray:
    """Return the streak opacity ``a`` in [0, 1] (float32 HxW, read-only) that :func:`apply_rain` composites."""
    return _rain_alpha(params, int(shape[0]), int(shape[1]))


def _as_image(img: np.ndarray) -> np.ndarray:
    x = np.asarray(img)
    _check(
        x.ndim == 3 and x.shape[2] == 3 and x.size > 0 and np.issubdtype(x.dtype, np.floating),
        f"expected a float HxWx3 RGB image in [0, 1], got a {x.dtype} array of shape {x.shape}",
    )
    x = np.ascontiguousarray(x, dtype=np.float32)
    lo, hi = float(x.min()), float(x.max())
    _check(lo >= -1e-4 and hi <= 1 + 1e-4, "image values must lie in [0, 1] (and not be NaN)")
    return np.clip(x, 0.0, 1.0) if lo < 0 or hi > 1 else x  # rounding excursions of an upstream resampler


def _clip(x: np.ndarray) -> np.ndarray:
    return np.clip(x, 0.0, 1.0, out=x).astype(np.float32, copy=False)


def apply_noise(img: np.ndarray, params: NoiseParams) -> np.ndarray:
    """Add noise of total std ``sigma / 255`` at mid-grey; Poisson-Gaussian shot noise has peak 0.5 / (rho var)."""
    x, p = _as_image(img), params
    rng = np.random.default_rng(p.seed)
    var = (p.sigma / 255.0) ** 2
    if p.model == "gaussian":
        return _clip(x + rng.standard_normal(x.shape, dtype=np.float32) * np.float32(math.sqrt(var)))
    peak = np.float32(0.5 / (p.rho * var))
    lam = x * peak
    exact = lam < _POISSON_EXACT_BELOW
    if exact.all():
        counts = rng.poisson(lam).astype(np.float32)
    else:
        counts = lam + np.sqrt(lam) * rng.standard_normal(x.shape, dtype=np.float32)
        counts[exact] = rng.poisson(lam[exact])
    read = rng.standard_normal(x.shape, dtype=np.float32) * np.float32(math.sqrt((1.0 - p.rho) * var))
    return _clip(counts / peak + read)


def apply_blur(img: np.ndarray, params: BlurParams) -> np.ndarray:
    """Convolve with a Gaussian (std ``sigma`` px) or :func:`disk_kernel` (``radius`` px), reflected borders."""
    x = _as_image(img)
    if params.kernel == "gaussian":
        return _clip(cv2.GaussianBlur(x, (0, 0), params.sigma, borderType=cv2.BORDER_REFLECT))
    return _clip(cv2.filter2D(x, -1, disk_kernel(params.radius), borderType=cv2.BORDER_REFLECT))


def apply_motion_blur(img: np.ndarray, params: MotionBlurParams) -> np.ndarray:
    """Convolve with :func:`motion_kernel`, reflected borders."""
    kernel = motion_kernel(params.length, params.angle)
    return _clip(cv2.filter2D(_as_image(img), -1, kernel, borderType=cv2.BORDER_REFLECT))


def apply_haze(img: np.ndarray, params: HazeParams) -> np.ndarray:
    """Return ``J t + A (1 - t)`` with ``t`` from :func:`transmission_map` (in [0, 1] without clipping)."""
    x = _as_image(img)
    t = transmission_map(params, x.shape)[..., None]
    return (x * t + np.asarray(params.airlight, np.float32) * (1.0 - t)).astype(np.float32, copy=False)


def apply_low_light(img: np.ndarray, params: LowLightParams) -> np.ndarray:
    """Return ``exposure * x ** gamma`` plus Gaussian read noise of std ``read_sigma / 255``, clipped."""
    x, p = _as_image(img), params
    out = np.power(x, np.float32(p.gamma)) if p.gamma != 1 else x.copy()
    out *= np.float32(p.exposure)
    if p.read_sigma > 0:
        noise = np.random.default_rng(p.seed).standard_normal(x.shape, dtype=np.float32)
        out += noise * np.float32(p.read_sigma / 255.0)
    return _clip(out)


def apply_jpeg(img: np.ndarray, params: JpegParams) -> np.ndarray:
    """Encode the uint8-rounded image with Pillow at ``quality`` (4:2:0 subsampling) and decode it back."""
    buf = io.BytesIO()
    Image.fromarray(to_uint8(_as_image(img))).save(buf, format="JPEG", quality=int(params.quality))
    buf.seek(0)
    with Image.open(buf) as decoded:
        return np.asarray(decoded.convert("RGB"), np.float32) / np.float32(255.0)


def apply_rain(img: np.ndarray, params: RainParams) -> np.ndarray:
    """Composite :func:`rain_layer` ``a`` as ``I (1 - a) + a * brightness``."""
    x = _as_image(img)
    a = rain_layer(params, x.shape)[..., None]
    return (x * (1.0 - a) + a * np.float32(params.brightness)).astype(np.float32, copy=False)


def _small_size(p: LowResolutionParams, h: int, w: int) -> tuple[int, int]:
    return max(1, round(w / p.scale)), max(1, round(h / p.scale))


def apply_low_resolution(img: np.ndarray, params: LowResolutionParams) -> np.ndarray:
    """Down-sample by ``scale`` with INTER_AREA, up-sample back with INTER_CUBIC, clip."""
    x = _as_image(img)
    h, w = x.shape[:2]
    small = cv2.resize(x, _small_size(params, h, w), interpolation=cv2.INTER_AREA)
    return _clip(cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC))


APPLIERS: dict[str, Callable[[np.ndarray, Params], np.ndarray]] = {
    "haze": apply_haze,
    "rain": apply_rain,
    "motion_blur": apply_motion_blur,
    "blur": apply_blur,
    "low_resolution": apply_low_resolution,
    "low_light": apply_low_light,
    "noise": apply_noise,
    "jpeg": apply_jpeg,
}


def _ordered(ops: Sequence[Params]) -> list[Params]:
    _check(all(getattr(op, "kind", None) in APPLIERS for op in ops), f"not degradation parameters: {list(ops)}")
    kinds = [op.kind for op in ops]
    _check(len(set(kinds)) == len(kinds), f"at most one op per kind (a record has one entry per kind): {kinds}")
    return sorted(ops, key=lambda op: sev.PHYSICAL_ORDER.index(op.kind))


def apply(img: np.ndarray, ops: Sequence[Params]) -> np.ndarray:
    """Apply ``ops`` (at most one per kind) in :data:`reasoner.severity.PHYSICAL_ORDER`; returns a new image."""
    out = _as_image(img).copy()
    for op in _ordered(ops):
        out = APPLIERS[op.kind](out, op)
    return out


def factors(params: Params, shape: tuple[int, ...]) -> tuple[float, dict]:
    """Return the severity (via :mod:`reasoner.severity`) and the schema's factors of ``params`` for ``shape``.

    ``shape`` is ``(H, W, ...)``. Haze transmission and rain coverage are means of the layers the appliers use,
    which are cached, so calling this right after applying does not render them again.
    """
    p, h, w = params, int(shape[0]), int(shape[1])
    if isinstance(p, NoiseParams):
        return sev.noise_severity(p.sigma), {"sigma": p.sigma, "model": p.model}
    if isinstance(p, BlurParams):
        return sev.blur_severity(p.equivalent_sigma), {"sigma": p.equivalent_sigma, "kernel": p.kernel}
    if isinstance(p, MotionBlurParams):
        return sev.motion_severity(p.length), {"length": p.length, "angle": p.angle}
    if isinstance(p, HazeParams):
        t = float(_transmission(p, h, w).mean())
        return sev.haze_severity(t), {"transmission": t, "airlight": list(p.airlight), "beta": p.beta}
    if isinstance(p, LowLightParams):
        return sev.low_light_severity(p.exposure, p.gamma), {"exposure": p.exposure, "gamma": p.gamma}
    if isinstance(p, JpegParams):
        return sev.jpeg_severity(p.quality), {"quality": int(p.quality)}
    if isinstance(p, RainParams):
        coverage = float(_rain_alpha(p, h, w).mean())
        return sev.rain_severity(coverage), {"density": coverage, "angle": p.angle}
    if isinstance(p, LowResolutionParams):
        sw, sh = _small_size(p, h, w)
        scale = math.sqrt(w / sw * h / sh)  # what the content suffered once the small size is rounded
        return sev.low_resolution_severity(scale), {"scale": scale}
    raise ValueError(f"not degradation parameters: {params!r}")
