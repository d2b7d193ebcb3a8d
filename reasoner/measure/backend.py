"""The ``measure`` reasoner: a CPU diagnosis from measured statistics, no model weights.

Statistics (``reasoner.features``) go through the committed calibration (``reasoner.calibration``) to per-kind
severity and presence probability. Physical factors come from the calibration's factor heads (regressors trained
only on images that carry the kind; older calibrations without them fall back to the inverse severity map) plus
direct measurements (angles, airlight, noise model, JPEG quantisation steps); the chain of thought cites the
statistics it rests on.

Images with a side below :data:`MIN_SIDE` pixels (down to 1x1) are not refused: they get a valid record that
assesses no degradation (an empty list that the reasoning says means "not assessed", not "clean") and cites only
what can be measured at that size (tone, scene cues). A refusal would break batch runs and rewards on an input that
simply carries too little to measure; a record with made-up statistics would be worse.
"""

from __future__ import annotations

import math
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from reasoner.imageio import LoadedImage, from_array, load_image
from reasoner.measure import psf
from reasoner.measure.calibration import FACTOR_TARGETS, Calibration, from_target, load_calibration, to_target
from reasoner.measure.features import global_view, measure_all, tone_stats
from reasoner.measure.semantics import describe, scene_stats
from reasoner.schema import (
    KINDS,
    DiagnosisRecord,
    Provenance,
    ReasoningStep,
    combined_severity,
    make_degradation,
    stored_evidence,
)
from reasoner.severity import (
    LEVEL_THRESHOLDS,
    blur_sigma,
    haze_transmission,
    jpeg_quality,
    jpeg_severity,
    level_for,
    low_light_gain_for,
    low_resolution_scale,
    motion_length,
    noise_sigma,
    rain_coverage,
)
from reasoner.version import rnr_version

#: Mean of the synthesis depth map (normalised 0-1); beta is reported as -ln(t) / this, an assumption.
ASSUMED_MEAN_DEPTH = 0.5
#: Probability above which blur is reported as a defocus disk rather than a Gaussian.
DEFOCUS_SURE = 0.98
#: Periodicity score above which the quality read from DCT quantisation steps is used as is.
JPEG_DIRECT_SCORE = 0.5
#: Shorter side (px) below which nothing is assessed: one JPEG block, and the smallest side at which every local
#: statistic is defined (the rain-direction cells need 4 px at half resolution); below it the calibration would read
#: reflections of a few pixels, or NaN.
MIN_SIDE = 8
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
#: Global tone statistics, measurable at any size, cited when an image cannot be assessed.
_TONE_EVIDENCE = ("lum_mean", "lum_p50", "lum_p995", "frac_dark", "dark_mean", "saturation")


def _r(x: float, nd: int = 3) -> float:
    return float(round(float(x), nd))


def _luma(rgb: np.ndarray) -> np.ndarray:
    return rgb @ np.array([0.299, 0.587, 0.114], np.float32)


def _clip(x: float, lo: float, hi: float) -> float:
    return min(max(float(x), lo), hi)


class MeasureReasoner:
    """Diagnose images from pixel statistics and a small committed calibration.

    Args:
        calibration: Path to a calibration JSON (default: the committed one).
        threshold: Presence probability above which a kind is reported.
        max_pixels: Refuse images with more pixels than this (decompression-bomb guard).

    """

    name = "measure"

    def __init__(
        self,
        calibration: str | Path | Calibration | None = None,
        threshold: float = 0.5,
        max_pixels: int | None = None,
    ):
        self.calibration = calibration if isinstance(calibration, Calibration) else load_calibration(calibration)
        self.threshold = threshold
        self.max_pixels = max_pixels

    def diagnose(self, image: LoadedImage | np.ndarray | str | Path) -> DiagnosisRecord:
        """Diagnose one image: a loaded image, a path, or a ``float32 HxWx3 RGB in [0, 1]`` / uint8 array."""
        if isinstance(image, (str, Path)):
            image = load_image(image, max_pixels=self.max_pixels)
        elif isinstance(image, np.ndarray):
            image = from_array(image)
        t0 = time.perf_counter()
        rgb = image.pixels
        h, w = rgb.shape[:2]
        small = global_view(rgb)
        feats = measure_all(rgb) if min(h, w) >= MIN_SIDE else tone_stats(small)
        scene = scene_stats(small)
        semantics = describe(small, scene, feats["lum_mean"])
        why = _unassessable(w, h, feats)
        if why is None:
            severity, prob = self.calibration.predict(feats)
            degradations = [
                self._entry(kind, severity[kind], prob, feats, rgb)
                for kind in KINDS
                if self._present(kind, severity, prob)
            ]
            reasoning = _reasoning(feats, scene, severity, prob, degradations, self.threshold)
        else:
            degradations, reasoning = [], _unassessed_reasoning(why, feats, scene)
        return DiagnosisRecord(
            image=image.info(),
            reasoning=reasoning,
            degradations=degradations,
            semantics=semantics,
            overall_severity=combined_severity(degradations),
            provenance=Provenance(
                backend=self.name,
                model_id=None,
                model_version=f"calibration {self.calibration.version}",
                rnr_version=rnr_version(),
                elapsed_s=time.perf_counter() - t0,
                created_at=datetime.now(timezone.utc),
                settings={"threshold": self.threshold},
            ),
        )

    def diagnose_many(self, images) -> list[DiagnosisRecord]:
        """Diagnose several images in order."""
        return [self.diagnose(im) for im in images]

    def _present(self, kind: str, severity: dict[str, float], prob: dict[str, float]) -> bool:
        # Both heads must agree: the classifier believes the kind is there and the regressor puts it at least mild.
        return prob[kind] >= self.threshold and severity[kind] >= LEVEL_THRESHOLDS[0]

    def _factors(self, kind: str, sev: float, p: float, f: dict[str, float]) -> dict[str, float]:
        """Factors of ``kind``: the factor head's, pulled towards the severity map's as presence gets doubtful.

        The head is trained only on images that carry the kind, so on a borderline detection (often a false one)
        it still answers with a typical, strong degradation; the severity head's answer is the cautious one. They
        are blended in the head's regression space, all head at p >= 0.9, all severity map at p <= 0.5.
        """
        fallback = _factors_from_severity(kind, sev, f)
        head = self.calibration.predict_factors(f, kind)
        if head is None:
            return fallback
        w = _clip((p - 0.5) / 0.4, 0.0, 1.0)
        out = dict(fallback)
        for name, space in FACTOR_TARGETS[kind]:
            mixed = w * to_target(head[name], space) + (1 - w) * to_target(fallback[name], space)
            out[name] = from_target(mixed, space)
        return out

    def _entry(self, kind: str, sev: float, prob: dict[str, float], f: dict[str, float], rgb: np.ndarray):
        s = _r(sev)
        conf = _r(prob[kind])
        est = self._factors(kind, s, prob[kind], f)
        if kind == "noise":
            model = "poisson_gaussian" if prob.get("noise_poisson", 0.0) >= 0.5 else "gaussian"
            sigma = _clip(est["sigma"], 0.5, 255.0)
            return make_degradation(kind, s, conf, digits=FACTOR_DIGITS, sigma=sigma, model=model)
        if kind == "blur":
            # A disk PSF of the wrong radius puts spectral zeros in the wrong place and wrecks deconvolution, while a
            # Gaussian of the same spread is a safe approximation: say "defocus" only when sure.
            # A disk whose zero rings are seen in the spectrum is measured, radius included (reasoner.psf).
            disk = psf.defocus_radius(_luma(rgb))
            if disk is not None:
                return make_degradation(kind, s, conf, digits=FACTOR_DIGITS, sigma=disk[0] / 2, kernel="defocus")
            shape = "defocus" if prob.get("blur_defocus", 0.0) >= DEFOCUS_SURE else "gaussian"
            sigma = _clip(est["sigma"], 0.3, 50.0)
            return make_degradation(kind, s, conf, digits=FACTOR_DIGITS, sigma=sigma, kernel=shape)
        if kind == "motion_blur":
            # Motion removes spectral energy along its direction; frequency angle == motion angle. (make_degradation
            # wraps the angle into [0, 180) after rounding: 179.96 is stored as 0.0.)
            angle = f["orient_min_angle"] % 180
            seen = psf.motion_length(_luma(rgb), angle)
            length = seen[0] if seen is not None else _clip(est["length"], 2.0, 500.0)
            return make_degradation(kind, s, conf, digits=FACTOR_DIGITS, length=length, angle=angle)
        if kind == "haze":
            t = _clip(est["transmission"], 0.02, 0.99)
            air = [f[f"airlight_{c}"] for c in "rgb"]
            beta = -math.log(t) / ASSUMED_MEAN_DEPTH
            return make_degradation(kind, s, conf, digits=FACTOR_DIGITS, transmission=t, airlight=air, beta=beta)
        if kind == "low_light":
            exposure, gamma = _clip(est["exposure"], 0.01, 1.0), _clip(est["gamma"], 1.0, 5.0)
            return make_degradation(kind, s, conf, digits=FACTOR_DIGITS, exposure=exposure, gamma=gamma)
        if kind == "jpeg":
            if f["jpeg_read_score"] >= JPEG_DIRECT_SCORE and f["jpeg_quality_read"] < 100:
                # Quantisation steps read off the DCT grid give the encoder's quality itself; trust it over the map.
                q = int(f["jpeg_quality_read"])
                return make_degradation(kind, _r(jpeg_severity(q)), conf, quality=q)
            return make_degradation(kind, s, conf, quality=jpeg_quality(s))
        if kind == "rain":
            density = _clip(est["density"], 1e-4, 1.0)
            return make_degradation(kind, s, conf, digits=FACTOR_DIGITS, density=density, angle=f["rain_angle"])
        if kind == "low_resolution":
            scale = _clip(est["scale"], 1.0, 16.0)
            return make_degradation(kind, s, conf, digits=FACTOR_DIGITS, scale=scale)
        raise ValueError(f"unknown degradation kind {kind!r}")


def _factors_from_severity(kind: str, s: float, f: dict[str, float]) -> dict[str, float]:
    """Factors implied by a severity alone (the inverse severity map); low light splits it using the highlights."""
    if kind == "low_light":
        gain = low_light_gain_for(s)
        exposure = min(max(f["lum_p995"] / 0.95, gain), 1.0)
        return {"exposure": exposure, "gamma": min(max(1.0 + math.log2(exposure / gain), 1.0), 5.0)}
    inverse = {
        "noise": ("sigma", noise_sigma),
        "blur": ("sigma", blur_sigma),
        "motion_blur": ("length", motion_length),
        "haze": ("transmission", haze_transmission),
        "rain": ("density", rain_coverage),
        "low_resolution": ("scale", low_resolution_scale),
    }
    if kind not in inverse:
        return {}
    name, fn = inverse[kind]
    return {name: fn(s)}


#: One chain-of-thought step per kind: (kind, cited statistics, observation template over the statistics; keys
#: prefixed ``pct_`` are the same statistic in percent).
_STEPS: tuple[tuple[str, tuple[str, ...], str], ...] = (
    (
        "noise",
        ("noise_sigma_mid", "noise_sigma_haar", "noise_sigma_flat", "noise_slope"),
        "Noise std at mid-grey from flat blocks across brightness is {noise_sigma_mid:.1f} (0-255 scale; finest-scale "
        "wavelet MAD {noise_sigma_haar:.1f}); its variance grows with brightness at relative slope {noise_slope:.2f}.",
    ),
    (
        "blur",
        ("edge_width", "blur_sigma_fit", "spec_11", "grad_scale_ratio"),
        "Strong edges are {edge_width:.1f} px wide; the spectrum's Gaussian fit gives sigma {blur_sigma_fit:.2f} px "
        "and the top band sits {spec_11:.1f} decades below the lowest.",
    ),
    (
        "motion_blur",
        ("orient_aniso", "orient_min_vs_opposite", "orient_min_angle"),
        "High-frequency energy varies by {orient_aniso:.2f} decades with orientation, least at {orient_min_angle:.0f} "
        "deg ({orient_min_vs_opposite:.2f} below the perpendicular).",
    ),
    (
        "low_resolution",
        ("resample_peak", "resample_period", "spec_cutoff", "spec_08"),
        "Second-derivative periodicity peak {resample_peak:.2f} (period {resample_period:.1f} px); spectral content "
        "above the noise floor ends near {spec_cutoff:.2f} cycles/px.",
    ),
    (
        "jpeg",
        ("jpeg_blockiness", "jpeg_quality_read", "jpeg_read_score", "jpeg_hf_zero"),
        "8-px grid blockiness {jpeg_blockiness:.2f}; DCT quantisation steps imply IJG quality {jpeg_quality_read:.0f} "
        "(periodicity score {jpeg_read_score:.2f}); {pct_jpeg_hf_zero:.0f}% of high-frequency DCT terms are zero.",
    ),
    (
        "haze",
        ("dark_mean", "dark_textured", "transmission_dcp", "contrast_rms", "saturation", "airlight_lum"),
        "Dark channel mean {dark_mean:.2f} ({dark_textured:.2f} on textured pixels), dark-channel transmission "
        "{transmission_dcp:.2f}, RMS contrast {contrast_rms:.2f}, saturation {saturation:.2f}, airlight luminance "
        "{airlight_lum:.2f}.",
    ),
    (
        "low_light",
        ("lum_mean", "lum_p50", "lum_p995", "frac_dark"),
        "Luminance median {lum_p50:.2f}, 99.5th percentile {lum_p995:.2f}; {pct_frac_dark:.0f}% of pixels below 0.06.",
    ),
    (
        "rain",
        ("rain_tophat_frac", "rain_cell_agree", "rain_dir_contrast", "rain_flat_aniso", "rain_angle"),
        "Thin bright structures cover {pct_rain_tophat_frac:.1f}% of the frame; {pct_rain_cell_agree:.0f}% of "
        "regions share the dominant line direction ({rain_angle:.0f} deg), directional contrast "
        "{rain_dir_contrast:.2f}, {rain_flat_aniso:.2f} over smooth background.",
    ),
)


def _verdict(kind: str, sev: dict[str, float], prob: dict[str, float], detected: set[str], threshold: float) -> str:
    name, p, s = kind.replace("_", " "), prob[kind], sev[kind]
    if kind in detected:
        return f"{name} present, {level_for(s)} (severity {s:.2f}, p={p:.2f})."
    if p >= threshold:
        return f"traces of {name} below the mild threshold (severity {s:.2f}, p={p:.2f}); not reported."
    return f"no significant {name} (p={p:.2f})."


def _reasoning(f, scene, sev, prob, degradations, thr) -> list[ReasoningStep]:
    found_kinds = {d.kind for d in degradations}
    values = f | {f"pct_{k}": 100 * v for k, v in f.items()}
    steps = [
        ReasoningStep(
            observation=template.format(**values),
            evidence=stored_evidence({k: f[k] for k in keys}, 3),
            inference=_verdict(kind, sev, prob, found_kinds, thr),
            kinds=[kind],
        )
        for kind, keys, template in _STEPS
    ]
    steps.append(_scene_step(scene))
    found = ", ".join(f"{d.kind} ({d.level})" for d in degradations) or "nothing significant"
    order = " -> ".join(d.kind for d in reversed(degradations))
    steps.append(
        ReasoningStep(
            observation=f"Detected: {found}.",
            evidence={"overall_severity": _r(combined_severity(degradations))},
            inference=f"Restore in reverse physical order: {order}." if degradations else "Leave the image as it is.",
            kinds=[d.kind for d in degradations],
        )
    )
    return steps


def _scene_step(scene: dict[str, float]) -> ReasoningStep:
    pct = {k: 100 * v for k, v in scene.items()}
    return ReasoningStep(
        observation=(
            f"Scene cues: {int(scene['n_faces'])} face detection(s), skin {pct['skin_frac']:.0f}%, sky-like top "
            f"{pct['sky_frac']:.0f}%, text-like strokes {pct['text_frac']:.0f}%, fine texture "
            f"{pct['texture_frac']:.0f}%."
        ),
        evidence=stored_evidence(scene, 3),
        inference="Coarse content flags set from these cues; they guide how gently to restore, not what to draw.",
        kinds=[],
    )


def _unassessable(w: int, h: int, f: dict[str, float]) -> str | None:
    """Why an image's degradations cannot be assessed honestly (None when they can)."""
    if min(w, h) < MIN_SIDE:
        return (
            f"The image is {w}x{h} px: the local statistics (noise, blur, motion, resampling, JPEG grid, rain "
            f"streaks) need both sides of at least {MIN_SIDE} px."
        )
    # Every statistic is defined from MIN_SIDE up; a NaN here is a degenerate input no size check foresaw, and the
    # calibration reads all statistics together, so one missing spoils every verdict.
    bad = sorted(k for k, v in f.items() if not math.isfinite(v))
    if bad:
        return f"Statistics {', '.join(bad[:6])} could not be measured on this {w}x{h} px image."
    return None


def _unassessed_reasoning(why: str, f: dict[str, float], scene: dict[str, float]) -> list[ReasoningStep]:
    """The chain of thought of a record that assesses nothing: why, what could be measured, and the scene cues."""
    return [
        ReasoningStep(
            observation=why,
            evidence=stored_evidence({k: f[k] for k in _TONE_EVIDENCE if k in f}, 3),
            inference=(
                "No degradation is assessed: the calibration weighs all statistics together, so the record lists no "
                "entry, which here means not assessed, not clean."
            ),
            kinds=list(KINDS),
        ),
        _scene_step(scene),
        ReasoningStep(
            observation="Detected: nothing assessed.",
            evidence={"overall_severity": 0.0},
            inference="Leave the image as it is.",
            kinds=[],
        ),
    ]
