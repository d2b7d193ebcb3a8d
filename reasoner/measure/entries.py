"""Per-kind record entries of the ``measure`` backend: from calibrated severity and factors to a typed degradation.

Three tables keyed by :data:`reasoner.kinds.KINDS` (checked at import): :data:`IMPLIED`, the factors a severity
implies (the kind's inverse severity map, or a measured split of it), :data:`HEAD_WHOLE_AT`, the presence from which
the calibration's factor head alone gives them, and :data:`ENTRIES`, the function that writes a kind's entry. Entry
writers add what is measured directly (angles, airlight, the noise model, a defocus disk's or a motion's length read
off spectral zeros, JPEG quantisation steps) to the calibration's factors, and clip each factor to the range the
estimate is trusted in.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from reasoner.common import brightness_quantile
from reasoner.kinds import KINDS, check_table
from reasoner.measure import psf
from reasoner.measure.calibration import FACTOR_TARGETS, from_target, to_target
from reasoner.measure.features import local_crop, unclipped_noise_sigma
from reasoner.schema import Degradation, make_degradation
from reasoner.severity import low_light_gain_for

#: Mean of the synthesis depth map (normalised 0-1); beta is reported as -ln(t) / this, an assumption.
ASSUMED_MEAN_DEPTH = 0.5
#: Probability above which blur is reported as a defocus disk rather than a Gaussian.
DEFOCUS_SURE = 0.98
#: Periodicity score above which the quality read from DCT quantisation steps is used as is.
JPEG_DIRECT_SCORE = 0.5
#: Decimal places each factor is reported with (the estimates are not more precise than this).
FACTOR_DIGITS: dict[str, int] = {
    "sigma": 2,
    "length": 1,
    "angle": 1,
    "transmission": 3,
    "airlight": 3,
    "beta": 3,
    "exposure": 3,
    "gamma": 3,
    "density": 4,
    "scale": 2,
}


def rounded(x: float, nd: int = 3) -> float:
    """``x`` rounded to ``nd`` decimals, as a plain float (how severities and confidences are reported)."""
    return float(round(float(x), nd))


def clip(x: float, lo: float, hi: float) -> float:
    """``x`` clipped to ``[lo, hi]``, as a plain float."""
    return min(max(float(x), lo), hi)


#: The kernel measurements (:mod:`reasoner.measure.psf`, a Welch average over 256 px tiles) read at most this many
#: pixels: a larger image is measured on its central crop of that area (a 24 MP photo's full spectrum would cost
#: seconds and 0.3 GB for no better estimate; 2048 x 2048 already averages about 200 tiles).
PSF_MAX_PIXELS = 2048 * 2048


def _luma(rgb: np.ndarray, max_pixels: int | None = None) -> np.ndarray:
    if max_pixels is not None and rgb.shape[0] * rgb.shape[1] > max_pixels:
        side = int(max_pixels**0.5) // 8 * 8
        h, w = rgb.shape[:2]
        y0, x0 = max(0, (h - side) // 2) // 8 * 8, max(0, (w - side) // 2) // 8 * 8
        rgb = rgb[y0 : y0 + side, x0 : x0 + side]
    return rgb @ np.array([0.299, 0.587, 0.114], np.float32)


def psf_luma(rgb: np.ndarray) -> np.ndarray:
    """The luma the kernel measurements read: of ``rgb``'s central :data:`PSF_MAX_PIXELS` at most."""
    return _luma(rgb, PSF_MAX_PIXELS)


# --- factors a severity implies ---------------------------------------------------------------------------------


def _severity_map(kind: str) -> Callable[[float, Mapping[str, float]], dict]:
    spec = KINDS[kind]
    return lambda severity, stats: spec.factors_for(severity)


def _low_light_split(severity: float, stats: Mapping[str, float]) -> dict:
    # The severity fixes only the mid-tone gain; the brightest highlights tell how much of it is exposure (a linear
    # squash keeps them below 0.95 times the exposure) and gamma takes the rest.
    gain = low_light_gain_for(severity)
    exposure = min(max(stats["lum_p995"] / 0.95, gain), 1.0)
    return {"exposure": exposure, "gamma": min(max(1.0 + math.log2(exposure / gain), 1.0), 5.0)}


#: Factors a severity alone implies, per kind: the inverse severity map of :mod:`reasoner.kinds`, except low light,
#: which splits its gain into exposure and gamma using the highlights.
IMPLIED: dict[str, Callable[[float, Mapping[str, float]], dict]] = check_table(
    {kind: _severity_map(kind) for kind in KINDS} | {"low_light": _low_light_split}, "reasoner.measure IMPLIED"
)


def implied_factors(kind: str, severity: float, stats: Mapping[str, float]) -> dict:
    """Factors of ``kind`` implied by ``severity`` alone (:data:`IMPLIED`); ``stats`` are the image's statistics.

    >>> implied_factors("jpeg", 0.5, {})
    {'quality': 55}
    """
    return IMPLIED[kind](severity, stats)


#: Presence probability from which a kind's factors are its factor head's alone (blended linearly with the severity
#: map's from 0.5). The severity head is fitted on images with and without the kind, so it regresses towards
#: "absent" and its map under-states a degradation that is there. For haze the map's transmission was the worse of
#: the two under every haze model, also at presence 0.5-0.9 (held-out photos, single and mixed, logit-t error of
#: the head vs the map: MiO 0.33 vs 0.63, own 0.51 vs 0.75, depth proxy 0.63 vs 1.08, the map always too clear), and
#: dehazing too little was the largest loss on hazy MiO mixtures: haze uses its head as soon as it is reported
#: (MiO hazy cases 15.25 -> 15.73 dB on dev seeds, other kinds and harm unchanged). Other kinds keep 0.9: low light's
#: map is the better exposure, and using the head early elsewhere moved nothing on the dev seeds.
HEAD_WHOLE_AT: dict[str, float] = check_table({kind: 0.9 for kind in KINDS} | {"haze": 0.5}, "HEAD_WHOLE_AT")


def blended_factors(
    kind: str, severity: float, p: float, stats: Mapping[str, float], head: Mapping[str, float] | None
) -> dict:
    """Factors of ``kind``: the factor head's, pulled towards the severity map's as presence gets doubtful.

    The head is trained only on images that carry the kind, so on a borderline detection (often a false one) it
    still answers with a typical, strong degradation; the severity head's answer is the cautious one. They are
    blended in the head's regression space, all severity map at p <= 0.5 and all head from :data:`HEAD_WHOLE_AT`
    (0.9; haze 0.5). Without a head (older calibrations, or a kind that has none) the severity map's factors are
    returned.

    >>> round(blended_factors("haze", 0.2, 0.6, {}, {"transmission": 0.4})["transmission"], 3)  # haze: the head's
    0.4
    >>> round(blended_factors("haze", 0.2, 0.6, {}, None)["transmission"], 3)  # no head: the severity map's
    0.76
    >>> round(blended_factors("noise", 0.2, 0.6, {}, {"sigma": 30.0})["sigma"], 1)  # map 5.3, a quarter to the head
    8.1
    """
    fallback = implied_factors(kind, severity, stats)
    if head is None:
        return fallback
    whole = HEAD_WHOLE_AT[kind]
    w = 1.0 if p >= whole else clip((p - 0.5) / max(whole - 0.5, 1e-9), 0.0, 1.0)
    out = dict(fallback)
    for name, space in FACTOR_TARGETS[kind]:
        mixed = w * to_target(head[name], space) + (1 - w) * to_target(fallback[name], space)
        out[name] = from_target(mixed, space)
    return out


# --- entry writers ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reading:
    """What is known about one kind in one image when its entry is written.

    Attributes:
        kind: The degradation kind.
        severity: Calibrated severity, rounded (:func:`rounded`).
        confidence: Presence probability, rounded.
        factors: :func:`blended_factors` at that severity.
        prob: Every presence label's probability (kinds and auxiliary labels such as ``noise_poisson``).
        stats: The image's statistics (:func:`reasoner.measure.features.measure_all`).
        rgb: The image, ``float32 HxWx3 RGB in [0, 1]``.

    """

    kind: str
    severity: float
    confidence: float
    factors: Mapping[str, float]
    prob: Mapping[str, float]
    stats: Mapping[str, float]
    rgb: np.ndarray

    def entry(self, severity: float | None = None, **factors) -> Degradation:
        """The entry with these factors (reported to :data:`FACTOR_DIGITS`), at ``severity`` if given."""
        s = self.severity if severity is None else severity
        return make_degradation(self.kind, s, self.confidence, digits=FACTOR_DIGITS, **factors)


def _noise(r: Reading) -> Degradation:
    # The factor head reads strong noise low where clipping thinned it (PromptIR's sigma 50 on held-out photos: 37-46,
    # 0.82 of it on average): the std read on blocks clipping left whole is a lower bound, for either noise model (a
    # signal-dependent noise's quietest blocks are its darkest, below its std at mid-grey).
    model = "poisson_gaussian" if r.prob.get("noise_poisson", 0.0) >= 0.5 else "gaussian"
    sigma = r.factors["sigma"]
    seen = unclipped_noise_sigma(local_crop(r.rgb) * 255.0, sigma)  # where the head's noise statistics are read
    sigma = sigma if seen is None else max(sigma, seen)
    return r.entry(sigma=clip(sigma, 0.5, 255.0), model=model)


def _blur(r: Reading) -> Degradation:
    # A disk PSF of the wrong radius puts spectral zeros in the wrong place and wrecks deconvolution, while a Gaussian
    # of the same spread is a safe approximation: say "defocus" only when sure. A disk whose zero rings are seen in
    # the spectrum is measured, radius included (reasoner.measure.psf).
    disk = psf.defocus_radius(psf_luma(r.rgb))
    if disk is not None:
        return r.entry(sigma=disk[0] / 2, kernel="defocus")
    shape = "defocus" if r.prob.get("blur_defocus", 0.0) >= DEFOCUS_SURE else "gaussian"
    return r.entry(sigma=clip(r.factors["sigma"], 0.3, 50.0), kernel=shape)


def _motion_blur(r: Reading) -> Degradation:
    # Motion removes spectral energy along its direction; frequency angle == motion angle. (make_degradation wraps the
    # angle into [0, 180) after rounding: 179.96 is stored as 0.0.)
    # Measured at the angle as reported, so the agent's check of the plan's kernel (psf.confirms_motion) reads the
    # same spectrum profile, remembered.
    angle = round(r.stats["orient_min_angle"] % 180, FACTOR_DIGITS["angle"]) % 180
    # motion is reported: shallow dips still say where the zeros are (psf.MIN_DIP_MOTION_REPORTED)
    seen = psf.motion_length(psf_luma(r.rgb), angle, min_dip=psf.MIN_DIP_MOTION_REPORTED)
    length = seen[0] if seen is not None else clip(r.factors["length"], 2.0, 500.0)
    return r.entry(length=length, angle=angle)


def _haze(r: Reading) -> Degradation:
    t = clip(r.factors["transmission"], 0.02, 0.99)
    # the brightest of the dark channel, raised (colour kept) to the level that dehazes no pixel past white
    raise_to = max(1.0, r.stats["airlight_floor"] / max(r.stats["airlight_lum"], 1e-3))
    air = [min(r.stats[f"airlight_{c}"] * raise_to, 1.0) for c in "rgb"]
    return r.entry(transmission=t, airlight=air, beta=-math.log(t) / ASSUMED_MEAN_DEPTH)


#: Weight of the highlights' exposure against the factor head's, in log exposure (:func:`_low_light`). The head was
#: fitted on the calibration scenes (half of them textures, the moon and a deep-sky field, whose brightest percent is
#: far from white) and read the exposure of held-out photos too high: on crops of the held-out photos and gradio's
#: under every zoo darkening (own, MiO's three, camera response; 86 crops), the brightening at the head's factors
#: came back at 21.2 dB on average, at the true ones 30.8. Halfway between the head and the exposure that puts the
#: brightest percent at white: 23.6 dB there, 23.3 on the calibration scenes (the head, fitted on them: 23.7).
#: Weights 0.4 / 0.6 traded the two the same way (the highlights' exposure alone: 25.7 and 19.5). Agent runs at fresh
#: low-light crops of the held-out photos (seeds 101-102, 54 each): darkening alone +1.41 dB per crop (27 up, 7 down),
#: under noise +0.55 (19 up, 18 down: the noise lifts the brightest percent, and a brighter output shows more of what
#: the denoiser left), saved as a camera JPEG +0.52 (24 up, 5 down); the largest losses were brighter outputs the
#: scorer would not trust (:data:`agent.policy.BRIGHTENED_EXTRAPOLATING_DB` since). A scene whose highlights are grey
#: (the moon, a night sky, gradio's cheetah on dry grass) is brightened more than it should (moon crops -5.7 dB).
LOW_LIGHT_TOP_WEIGHT = 0.5
#: Pixels read for the brightest percent: a regular subsample of a larger image.
_TOP_PIXELS = 1 << 20


def _low_light(r: Reading) -> Degradation:
    # The exposure that puts the brightest percent at white for the head's gamma is the top itself (white ** gamma is
    # white): the geometric blend hedges between the scene the head expects and a photo whose highlights reach white.
    head = clip(r.factors["exposure"], 0.01, 1.0)
    top = clip(brightness_quantile(r.rgb, 0.99, _TOP_PIXELS), 0.01, 1.0)
    exposure = head ** (1.0 - LOW_LIGHT_TOP_WEIGHT) * top**LOW_LIGHT_TOP_WEIGHT
    return r.entry(exposure=exposure, gamma=clip(r.factors["gamma"], 1.0, 5.0))


def _quality_read(r: Reading) -> int | None:
    """The JPEG quality read off the quantisation steps of the DCT grid, or None where no grid was read."""
    if r.stats["jpeg_read_score"] >= JPEG_DIRECT_SCORE and r.stats["jpeg_quality_read"] < 100:
        return int(r.stats["jpeg_quality_read"])
    return None


def _jpeg(r: Reading) -> Degradation:
    if (q := _quality_read(r)) is not None:  # the encoder's quality itself: trusted over the map
        return r.entry(rounded(KINDS["jpeg"].severity_of({"quality": q})), quality=q)
    return r.entry(quality=r.factors["quality"])


def _rain(r: Reading) -> Degradation:
    return r.entry(density=clip(r.factors["density"], 1e-4, 1.0), angle=r.stats["rain_angle"])


def _low_resolution(r: Reading) -> Degradation:
    return r.entry(scale=clip(r.factors["scale"], 1.0, 16.0))


#: The function that writes each kind's entry.
ENTRIES: dict[str, Callable[[Reading], Degradation]] = check_table(
    {
        "haze": _haze,
        "rain": _rain,
        "motion_blur": _motion_blur,
        "blur": _blur,
        "low_resolution": _low_resolution,
        "low_light": _low_light,
        "noise": _noise,
        "jpeg": _jpeg,
    },
    "reasoner.measure ENTRIES",
)
