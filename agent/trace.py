"""The restoration trace: everything needed to see why an image was changed, and to reproduce it.

Exported next to every restored image; its JSON Schema is committed under ``agent/schemas`` and printed by
``rnr schema --trace``.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from reasoner.schema import DiagnosisRecord, ImageInfo, check_version
from restorer.plan import Plan
from retrieval.base import Reference

TRACE_NAME = "rnr.restore_trace"
# 1.1: records may carry `thinking`; 1.2: attempts carry `restorer_run`; 1.3: `review`; 1.4: `quality` (estimated
# quality change, its uncertainty and the artefacts found) on attempts and on the trace, verdict "uncertain";
# 1.5: `output_file` (container, bit depth, what metadata the written file kept); 1.6: `full_size` (a big photo's
# attempts judged on crops, the chosen plan's full-size result judged again); 1.7: quality `spread_log` (the
# ensemble's disagreement in the space it regresses in); 1.8: quality `removed_noise` (what a noise-only plan took
# away, against the diagnosed noise); 1.9: quality `compression_cells` (a JPEG-only plan's change against the file's
# quantisation cells).
TRACE_VERSION = "1.11.0"
TRACE_SCHEMA_PATH = Path(__file__).parent / "schemas" / "restore_trace.schema.json"

Verdict = Literal["better", "worse", "drift", "no_change", "failed", "uncertain"]
Decision = Literal["accepted", "rolled_back", "unchanged"]
#: The retry rule that made an attempt (the retry table of :mod:`agent.policy`).
RetryRule = Literal["stronger", "bolder", "gentler", "revealed", "split"]
#: Decisions that return an attempt's pixels (a manifest status "ok"); "unchanged" returns the input.
RESTORED: frozenset[Decision] = frozenset({"accepted", "rolled_back"})


class QualityTrace(BaseModel):
    """The artefact-aware scorer's estimate of what an attempt did to the image (:mod:`reasoner.quality`)."""

    model_config = ConfigDict(extra="forbid")

    gain_db: float | None = Field(
        description="Estimated change in PSNR against the unknown clean image (dB); None without a fitted model."
    )
    uncertainty_db: float | None = Field(
        None, ge=0, description="One standard deviation of that estimate's error (dB), calibrated on held-out data."
    )
    spread_db: float | None = Field(None, ge=0, description="Disagreement of the estimating ensemble on this image.")
    spread_log: float | None = Field(
        None,
        ge=0,
        description="The same disagreement in the signed-log space the ensemble regresses in (sign(x) log(1 + |x|)); "
        "None where the ensemble extrapolates (the decide policy then uses the dB spread alone) and in traces "
        "before 1.7.0.",
    )
    removed_noise: tuple[float, float] | None = Field(
        None,
        description="For a plan that only denoises: the removed layer's std over the diagnosed noise sigma and its "
        "mean lag-1 correlation (reasoner.quality.features.removed_noise; about 0.6-1 and 0 when it took away white "
        "noise of that strength). None for other plans and in traces before 1.8.0.",
    )
    compression_cells: tuple[float, float] | None = Field(
        None,
        description="For a plan that only undoes JPEG: how far the input's luma DCT coefficients sit from multiples "
        "of the diagnosed quality's steps (reasoner.jpeg_cells.grid_fit, in steps: about 0.05 on that JPEG grid, "
        "0.25 off it) and the RMS of the change that left the file's quantisation cells (reasoner.jpeg_cells."
        "outside, 0-255). None for other plans, where the grid cannot be measured, and in traces before 1.9.0.",
    )
    artefacts: dict[str, float] = Field(
        default_factory=dict, description="Artefacts found (name -> the statistic's value), see reasoner.quality."
    )
    summary: str = Field("", max_length=500, description="The artefacts in plain words ('' when none).")
    unchecked: dict[str, float] = Field(
        default_factory=dict,
        description="Artefacts the plan may have made that the checks could not see on this change (name -> what hid "
        "it): 'over_smoothing' with the tone gain, after a plan that brightened or dehazed by 1.5 times or more and "
        "also denoised, deblocked or derained (reasoner.quality.artefacts.unchecked). Reported only; nothing decides "
        "on it. Empty in traces before 1.11.0.",
    )


class AttemptTrace(BaseModel):
    """One restoration attempt and how the scorer judged it."""

    model_config = ConfigDict(extra="forbid")

    index: int = Field(ge=0, description="0 for the first attempt.")
    source: int | None = Field(
        description="Attempt whose output this one refined; None when it started from the input."
    )
    plan: Plan
    record_after: DiagnosisRecord | None = Field(description="The scorer's diagnosis of the attempt's output.")
    severity_after: dict[str, float] = Field(description="Per-kind severity of the output (0 when absent).")
    overall_after: float = Field(ge=0, le=1)
    structure: float = Field(description="Correlation of low-passed luma with the input's (1 = same structure).")
    verdict: Verdict
    reason: str = Field(max_length=1000)
    elapsed_s: float = Field(ge=0, description="Restore plus re-score time of this attempt.")
    restorer_run: dict[str, Any] | None = Field(
        None,
        description="What a model-based restorer reports of its run (prompt, seed, steps, references used, "
        "resolution), so the attempt can be reproduced; None for the classical restorer.",
    )
    quality: QualityTrace | None = Field(
        None, description="The artefact-aware scorer's estimate for this attempt (against the input); 1.4+."
    )
    rule: RetryRule | None = Field(
        None,
        description="The retry rule that made this attempt (agent.policy's retry table): 'revealed' restores what "
        "an attempt's output showed and the input's diagnosis missed (tone, or noise a brightening lifted, on top of "
        "that attempt; a blur a deblocking showed, from the input with it), 'split' a mixed plan without its "
        "deconvolution. None for the first attempt and in traces before 1.10.0.",
    )


class OutputFileTrace(BaseModel):
    """How the restored image was written: its container and depth, and what of the input's file it kept."""

    model_config = ConfigDict(extra="forbid")

    container: Literal["png", "jpeg", "webp", "tiff"] = Field(description="The output's container.")
    input_container: str | None = Field(
        description="The input's container (png, jpeg, webp, tiff; None for others, written as PNG by default)."
    )
    bit_depth: Literal[8, 16] = Field(description="Bits per channel written.")
    input_bit_depth: Literal[8, 16] = Field(description="Bits per channel of the input.")
    quality: int | None = Field(None, ge=1, le=100, description="JPEG/WebP quality; None when lossless or copied.")
    subsampling: str | None = Field(None, description="JPEG chroma subsampling ('4:4:4').")
    lossless: bool = Field(description="Whether the encoding is lossless.")
    copied: bool = Field(
        description="The input's own bytes were written (the image is returned unchanged in its own container)."
    )
    exif_kept: bool = Field(description="The input's EXIF was carried over (its orientation set to 1 if re-encoded).")
    icc_kept: bool = Field(description="The input's ICC profile was carried over.")
    xmp_kept: bool = Field(description="The input's XMP was carried over.")
    orientation_normalised: bool = Field(
        description="The input had an EXIF rotation; the pixels were written upright and the EXIF says 1."
    )
    color_space: str = Field(
        "the input's: pixels restored as encoded, no profile applied",
        max_length=200,
        description="The colour space the restorer worked in.",
    )
    notes: list[str] = Field(default_factory=list, max_length=16, description="What could not be kept, and why.")


class ReviewTrace(BaseModel):
    """A person's review of the diagnosis before restoring (``rnr ui``): what they changed, and what they saw."""

    model_config = ConfigDict(extra="forbid")

    edited: bool = Field(description="True when the person changed the diagnosis; False when they accepted it.")
    changes: list[str] = Field(
        default_factory=list, max_length=64, description="One line per change, e.g. 'noise: severity 0.42 -> 0.7'."
    )
    record_proposed: DiagnosisRecord | None = Field(
        None, description="The reasoner's diagnosis as proposed, when edited (record_before is the edited one)."
    )


class FullSizeTrace(BaseModel):
    """A big photo judged on crops (:mod:`agent.crops`): where they were, and the chosen plan's full-size check."""

    model_config = ConfigDict(extra="forbid")

    crops: list[tuple[int, int]] = Field(
        max_length=16, description="Top-left (y, x) of each crop, its context margin included."
    )
    side: int = Field(ge=1, description="Side (px) of each crop's judged core.")
    margin: int = Field(ge=0, description="Context (px) cut around each core.")
    attempt: int | None = Field(
        None, description="The attempt whose plan ran at full size; None when no attempt was chosen on the crops."
    )
    verdict: Verdict | None = Field(None, description="The full-size result's verdict against the whole input.")
    reason: str = Field("", max_length=1000)
    structure: float | None = None
    severity_after: dict[str, float] = Field(default_factory=dict, description="The full-size result's severities.")
    overall_after: float | None = Field(None, ge=0, le=1)
    quality: QualityTrace | None = None
    elapsed_s: float = Field(0.0, ge=0, description="Restoring and judging the full-size result.")


class Trace(BaseModel):
    """The full account of one image's pass through diagnose -> retrieve -> plan -> restore -> rescore -> decide."""

    model_config = ConfigDict(extra="forbid")

    schema_name: Literal["rnr.restore_trace"] = TRACE_NAME
    version: str = Field(TRACE_VERSION, pattern=r"^\d+\.\d+\.\d+$")
    input: ImageInfo
    output_path: str | None = Field(None, description="Where the restored image was written, if it was.")
    output_file: OutputFileTrace | None = Field(
        None, description="How the restored image was written (container, depth, metadata kept); 1.5+."
    )
    record_before: DiagnosisRecord
    references: list[Reference] = Field(default_factory=list, description="Retrieved references above threshold.")
    attempts: list[AttemptTrace] = Field(default_factory=list)
    decision: Decision
    chosen_attempt: int | None = Field(description="Index of the attempt returned; None when the input is returned.")
    decision_reason: str = Field(max_length=1000)
    severity_before: dict[str, float]
    severity_after: dict[str, float] = Field(description="Per-kind severity of what is returned.")
    overall_before: float = Field(ge=0, le=1)
    overall_after: float = Field(ge=0, le=1)
    timings: dict[str, float] = Field(description="Seconds per graph node, plus 'io' and 'total'.")
    backends: dict[str, str] = Field(description="reasoner, scorer, restorer and embedder used.")
    settings: dict[str, float | int | str | bool | list[str] | dict[str, float]] = Field(default_factory=dict)
    versions: dict[str, str] = Field(description="Package versions that produced the trace.")
    created_at: datetime
    review: ReviewTrace | None = Field(
        None, description="Set when a person reviewed the diagnosis before restoring; None for unattended runs."
    )
    quality: QualityTrace | None = Field(
        None,
        description="What is returned, as the artefact-aware scorer sees it against the input (gain 0 and no "
        "artefacts when the input is returned unchanged); 1.4+.",
    )
    full_size: FullSizeTrace | None = Field(
        None, description="Set when the photo was big enough to judge its attempts on crops (agent.crops); 1.6+."
    )

    @model_validator(mode="before")
    @classmethod
    def _check_version(cls, data):
        if isinstance(data, dict) and "version" in data:
            check_version(str(data["version"]), TRACE_VERSION, TRACE_NAME)
        return data


def trace_schema_text() -> str:
    """The committed JSON Schema of :class:`Trace`."""
    schema = Trace.model_json_schema()
    schema["$id"] = f"https://reason-restore.dev/schemas/{TRACE_NAME}/{TRACE_VERSION}.json"
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"
