"""The one place where physical degradation parameters map to severities in [0, 1].

Every producer of severities (synthesis ground truth, the ``measure`` diagnoser, model backends' post-checks,
rewards) goes through these functions, so "severity 0.4 noise" means the same thing everywhere.

| kind           | parameter (units)                                 | severity                    |
|----------------|---------------------------------------------------|-----------------------------|
| noise          | sigma, std at mid-grey on the 0-255 scale         | log(sigma/3) / log(50/3)    |
| blur           | sigma, equivalent Gaussian std in pixels          | log(sigma/0.5) / log(5/0.5) |
| motion_blur    | length of the linear kernel in pixels             | log(length/3) / log(36/3)   |
| haze           | mean transmission t in (0, 1]                     | (0.9 - t) / 0.7             |
| low_light      | mid-tone gain g = exposure * 0.5 ** (gamma - 1)   | log(1/g) / log(50)          |
| jpeg           | IJG quality factor 1-100                          | (100 - quality) / 90        |
| rain           | streak coverage, mean streak opacity over image   | coverage / 0.08             |
| low_resolution | linear down-sampling factor (2 = half width)      | log2(scale) / 2             |

All maps are clipped to [0, 1] and are monotone in their parameter (increasing, except transmission, JPEG quality
and low-light gain where larger means cleaner). Each has an inverse used to turn a calibrated severity back into
the physical factor. Levels derive from severity by fixed thresholds (:data:`LEVEL_THRESHOLDS`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

#: Degradation kinds in physical (forward) order: scene (haze, rain), optics and camera motion, resolution,
#: exposure, sensor noise, compression. Synthesis applies mixtures in this order; restoration reverses it.
PHYSICAL_ORDER: tuple[str, ...] = (
    "haze",
    "rain",
    "motion_blur",
    "blur",
    "low_resolution",
    "low_light",
    "noise",
    "jpeg",
)

#: Lower bounds of the levels mild, moderate and severe. Below the first a kind is "none" (not detected).
LEVEL_THRESHOLDS: tuple[float, float, float] = (0.1, 0.35, 0.65)


def _clip01(x: float) -> float:
    return 0.0 if x < 0.0 else 1.0 if x > 1.0 else float(x)


def _log_map(x: float, lo: float, hi: float) -> float:
    return _clip01(math.log(max(x, 1e-12) / lo) / math.log(hi / lo))


def _log_inv(s: float, lo: float, hi: float) -> float:
    return lo * (hi / lo) ** _clip01(s)


def noise_severity(sigma: float) -> float:
    """Severity of additive noise with std ``sigma`` (0-255 scale, at mid-grey)."""
    return _log_map(sigma, 3.0, 50.0)


def noise_sigma(severity: float) -> float:
    """Inverse of :func:`noise_severity` (returns 3 for severity 0)."""
    return _log_inv(severity, 3.0, 50.0)


def blur_severity(sigma: float) -> float:
    """Severity of an isotropic blur with equivalent Gaussian std ``sigma`` in pixels."""
    return _log_map(sigma, 0.5, 5.0)


def blur_sigma(severity: float) -> float:
    """Inverse of :func:`blur_severity`."""
    return _log_inv(severity, 0.5, 5.0)


def motion_severity(length: float) -> float:
    """Severity of a linear motion blur of ``length`` pixels."""
    return _log_map(length, 3.0, 36.0)


def motion_length(severity: float) -> float:
    """Inverse of :func:`motion_severity`."""
    return _log_inv(severity, 3.0, 36.0)


def haze_severity(transmission: float) -> float:
    """Severity of haze whose mean transmission over the image is ``transmission``."""
    return _clip01((0.9 - transmission) / 0.7)


def haze_transmission(severity: float) -> float:
    """Inverse of :func:`haze_severity`."""
    return 0.9 - 0.7 * _clip01(severity)


def low_light_gain(exposure: float, gamma: float) -> float:
    """Mid-tone gain of the low-light model ``out = exposure * x ** gamma``, relative to the input at 0.5."""
    return exposure * 0.5 ** (gamma - 1.0)


def low_light_severity(exposure: float, gamma: float) -> float:
    """Severity of under-exposure with linear ``exposure`` in (0, 1] and ``gamma`` >= 1."""
    return _clip01(math.log(1.0 / max(low_light_gain(exposure, gamma), 1e-6)) / math.log(50.0))


def low_light_gain_for(severity: float) -> float:
    """Inverse of :func:`low_light_severity` in terms of the mid-tone gain."""
    return 50.0 ** -_clip01(severity)


def jpeg_severity(quality: float) -> float:
    """Severity of JPEG compression at IJG ``quality`` (1-100)."""
    return _clip01((100.0 - quality) / 90.0)


def jpeg_quality(severity: float) -> int:
    """Inverse of :func:`jpeg_severity`, rounded to an integer quality in [10, 100]."""
    return int(round(100.0 - 90.0 * _clip01(severity)))


def rain_severity(coverage: float) -> float:
    """Severity of rain streaks covering ``coverage`` of the image (mean streak opacity, 0-1)."""
    return _clip01(coverage / 0.08)


def rain_coverage(severity: float) -> float:
    """Inverse of :func:`rain_severity`."""
    return 0.08 * _clip01(severity)


def low_resolution_severity(scale: float) -> float:
    """Severity of a ``scale``-times down-sampling (then up-sampling back) of the image."""
    return _clip01(math.log2(max(scale, 1.0)) / 2.0)


def low_resolution_scale(severity: float) -> float:
    """Inverse of :func:`low_resolution_severity`."""
    return 2.0 ** (2.0 * _clip01(severity))


def level_for(severity: float) -> str:
    """The level name ("none", "mild", "moderate", "severe") of a severity by :data:`LEVEL_THRESHOLDS`."""
    mild, moderate, severe = LEVEL_THRESHOLDS
    if severity >= severe:
        return "severe"
    if severity >= moderate:
        return "moderate"
    if severity >= mild:
        return "mild"
    return "none"


def overall_severity(severities: Iterable[float]) -> float:
    """Combine per-kind severities as independent losses: ``1 - prod(1 - s)``.

    >>> round(overall_severity([0.5, 0.5]), 3)
    0.75
    >>> overall_severity([])
    0.0
    """
    keep = 1.0
    for s in severities:
        keep *= 1.0 - _clip01(s)
    return _clip01(1.0 - keep)
