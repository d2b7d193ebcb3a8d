"""The ``measure`` backend's chain of thought: per kind, the statistics it cites and what it concludes from them.

:data:`EVIDENCE` is keyed by :data:`reasoner.kinds.KINDS` (checked at import); its order is the order the steps are
written in. Synthetic training targets (``rl/synth.py``) cite the same statistics with the same templates.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

from reasoner.kinds import KINDS, check_table
from reasoner.measure.entries import rounded
from reasoner.schema import Degradation, ReasoningStep, combined_severity, stored_evidence
from reasoner.severity import level_for

#: Global tone statistics, measurable at any size, cited when an image cannot be assessed.
TONE_EVIDENCE = ("lum_mean", "lum_p50", "lum_p995", "frac_dark", "dark_mean", "saturation")


class Evidence(NamedTuple):
    """The statistics one kind's step cites and its observation template (``pct_<name>``: the statistic in %)."""

    statistics: tuple[str, ...]
    template: str


#: One chain-of-thought step per kind, in the order the steps are written.
EVIDENCE: dict[str, Evidence] = check_table(
    {
        "noise": Evidence(
            ("noise_sigma_mid", "noise_sigma_haar", "noise_sigma_flat", "noise_slope"),
            "Noise std at mid-grey from flat blocks across brightness is {noise_sigma_mid:.1f} (0-255 scale; "
            "finest-scale wavelet MAD {noise_sigma_haar:.1f}); its variance grows with brightness at relative slope "
            "{noise_slope:.2f}.",
        ),
        "blur": Evidence(
            ("edge_width", "blur_sigma_fit", "spec_11", "grad_scale_ratio"),
            "Strong edges are {edge_width:.1f} px wide; the spectrum's Gaussian fit gives sigma {blur_sigma_fit:.2f} "
            "px and the top band sits {spec_11:.1f} decades below the lowest.",
        ),
        "motion_blur": Evidence(
            ("orient_aniso", "orient_min_vs_opposite", "orient_min_angle"),
            "High-frequency energy varies by {orient_aniso:.2f} decades with orientation, least at "
            "{orient_min_angle:.0f} deg ({orient_min_vs_opposite:.2f} below the perpendicular).",
        ),
        "low_resolution": Evidence(
            ("resample_peak", "resample_period", "spec_cutoff", "spec_08"),
            "Second-derivative periodicity peak {resample_peak:.2f} (period {resample_period:.1f} px); spectral "
            "content above the noise floor ends near {spec_cutoff:.2f} cycles/px.",
        ),
        "jpeg": Evidence(
            ("jpeg_blockiness", "jpeg_quality_read", "jpeg_read_score", "jpeg_hf_zero"),
            "8-px grid blockiness {jpeg_blockiness:.2f}; DCT quantisation steps imply IJG quality "
            "{jpeg_quality_read:.0f} (periodicity score {jpeg_read_score:.2f}); {pct_jpeg_hf_zero:.0f}% of "
            "high-frequency DCT terms are zero.",
        ),
        "haze": Evidence(
            (
                "dark_mean",
                "dark_textured",
                "transmission_dcp",
                "contrast_rms",
                "saturation",
                "airlight_lum",
                "airlight_floor",
            ),
            "Dark channel mean {dark_mean:.2f} ({dark_textured:.2f} on textured pixels), dark-channel transmission "
            "{transmission_dcp:.2f}, RMS contrast {contrast_rms:.2f}, saturation {saturation:.2f}, airlight "
            "luminance {airlight_lum:.2f} (at least {airlight_floor:.2f}, or some pixel would dehaze past white).",
        ),
        "low_light": Evidence(
            ("lum_mean", "lum_p50", "lum_p995", "frac_dark"),
            "Luminance median {lum_p50:.2f}, 99.5th percentile {lum_p995:.2f}; {pct_frac_dark:.0f}% of pixels below "
            "0.06.",
        ),
        "rain": Evidence(
            ("rain_tophat_frac", "rain_cell_agree", "rain_dir_contrast", "rain_flat_aniso", "rain_angle"),
            "Thin bright structures cover {pct_rain_tophat_frac:.1f}% of the frame; {pct_rain_cell_agree:.0f}% of "
            "regions share the dominant line direction ({rain_angle:.0f} deg), directional contrast "
            "{rain_dir_contrast:.2f}, {rain_flat_aniso:.2f} over smooth background.",
        ),
    },
    "reasoner.measure EVIDENCE",
)


def observation(kind: str, stats: Mapping[str, float]) -> str:
    """The observation of ``kind``'s step: its template filled with the image's statistics."""
    values = {**stats, **{f"pct_{k}": 100 * v for k, v in stats.items()}}
    return EVIDENCE[kind].template.format(**values)


def _verdict(
    kind: str, sev: Mapping[str, float], prob: Mapping[str, float], detected: set[str], presence: float, usual: float
):
    name, p, s = kind.replace("_", " "), prob[kind], sev[kind]
    if kind in detected and p < usual:  # reported only from a restoration's residue presence
        return (
            f"{name} left after restoration, {level_for(s)} (severity {s:.2f}, p={p:.2f}): reported from "
            f"p={presence:.2f} on an output whose input had it (from {usual:.2f} otherwise)."
        )
    if kind in detected:
        return f"{name} present, {level_for(s)} (severity {s:.2f}, p={p:.2f})."
    if p >= presence:
        return f"traces of {name} below the mild threshold (severity {s:.2f}, p={p:.2f}); not reported."
    return f"no significant {name} (p={p:.2f})."


def reasoning(
    stats: Mapping[str, float],
    scene: Mapping[str, float],
    severity: Mapping[str, float],
    prob: Mapping[str, float],
    degradations: list[Degradation],
    presence: Mapping[str, float],
    explained: Mapping[str, str] | None = None,
    usual: Mapping[str, float] | None = None,
) -> list[ReasoningStep]:
    """The chain of thought of an assessed image: one step per kind, the scene cues, then the verdict and plan.

    ``presence``: per kind, the presence probability from which it is reported; ``usual``: the one an input is
    read from (default ``presence``), where a restoration's output is read for what was left of its kinds from
    lower ones (:data:`reasoner.measure.backend.RESIDUE_SHARE`): those reported only so say so.

    ``explained``: kinds whose verdict a rule beyond the presence gives, with its sentence: one the classifier
    found that another finding accounts for (not among ``degradations``), one added from the tone range.
    """
    usual = usual or presence
    found_kinds = {d.kind for d in degradations}
    steps = [
        ReasoningStep(
            observation=observation(kind, stats),
            evidence=stored_evidence({k: stats[k] for k in ev.statistics}, 3),
            inference=(explained or {}).get(kind)
            or _verdict(kind, severity, prob, found_kinds, presence[kind], usual[kind]),
            kinds=[kind],
        )
        for kind, ev in EVIDENCE.items()
    ]
    steps.append(scene_step(scene))
    found = ", ".join(f"{d.kind} ({d.level})" for d in degradations) or "nothing significant"
    order = " -> ".join(d.kind for d in reversed(degradations))
    steps.append(
        ReasoningStep(
            observation=f"Detected: {found}.",
            evidence={"overall_severity": rounded(combined_severity(degradations))},
            inference=f"Restore in reverse physical order: {order}." if degradations else "Leave the image as it is.",
            kinds=[d.kind for d in degradations],
        )
    )
    return steps


def scene_step(scene: Mapping[str, float]) -> ReasoningStep:
    """The step citing the coarse scene cues (:func:`reasoner.measure.semantics.scene_stats`)."""
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


def unassessed_reasoning(why: str, stats: Mapping[str, float], scene: Mapping[str, float]) -> list[ReasoningStep]:
    """The chain of thought of a record that assesses nothing: why, what could be measured, and the scene cues."""
    return [
        ReasoningStep(
            observation=why,
            evidence=stored_evidence({k: stats[k] for k in TONE_EVIDENCE if k in stats}, 3),
            inference=(
                "No degradation is assessed: the calibration weighs all statistics together, so the record lists no "
                "entry, which here means not assessed, not clean."
            ),
            kinds=list(KINDS),
        ),
        scene_step(scene),
        ReasoningStep(
            observation="Detected: nothing assessed.",
            evidence={"overall_severity": 0.0},
            inference="Leave the image as it is.",
            kinds=[],
        ),
    ]
