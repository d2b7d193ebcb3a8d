"""Graph state (checkpointed), run settings, and the run context (backends, never checkpointed).

Pixels do not live in the state: each image is a ``.npy`` file in the run's work directory and the state holds
its path, so checkpoints stay small and a resumed run finds every intermediate result.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Protocol, runtime_checkable

import numpy as np
from pydantic import AfterValidator, BaseModel, Field

from agent.trace import AttemptTrace, Decision, FullSizeTrace, RetryRule, ReviewTrace, Trace
from reasoner.registry import Reasoner
from reasoner.schema import DegradationKind, DiagnosisRecord, ImageInfo
from reasoner.severity import LEVEL_THRESHOLDS
from restorer.base import Restorer
from restorer.plan import Plan
from retrieval.base import Reference

UserStrength = Annotated[float, Field(ge=0, le=2)]


def _added_severity(v: float) -> float:
    if 0 < v < LEVEL_THRESHOLDS[0]:
        raise ValueError(f"{v:g} is below mild ({LEVEL_THRESHOLDS[0]:g}), which is not restored; give 0 for the "
                         f"reading's own or a severity from {LEVEL_THRESHOLDS[0]:g} to 1")  # fmt: skip
    return v


#: Severity of a kind added by ``Settings.add``: 0 for the reading's own (or the defaults' moderate), else mild to 1.
AddedSeverity = Annotated[float, Field(ge=0, le=1), AfterValidator(_added_severity)]


class Settings(BaseModel):
    """Knobs of the decide loop (:mod:`agent.policy`); recorded in the trace and hashed into thread ids."""

    max_attempts: int = Field(3, ge=1, le=10, description="Restore attempts per image, retries included.")
    strength: float = Field(
        1.0, ge=0, le=2, description="How strongly to restore: 0 returns the input untouched, 1 as diagnosed, up to 2."
    )
    kind_strength: dict[DegradationKind, UserStrength] = Field(
        default_factory=dict, description="Per-kind strength (0-2), overriding `strength` for those kinds."
    )
    only: list[DegradationKind] = Field(default_factory=list, description="Restore only these kinds (empty: all).")
    skip: list[DegradationKind] = Field(default_factory=list, description="Never restore these kinds.")
    add: dict[DegradationKind, AddedSeverity] = Field(
        default_factory=dict,
        description="Kinds to restore although the diagnosis did not report them, each with the severity to give it "
        "(0: the reasoner's own reading as present, or moderate defaults where it has none; agent.graph."
        "with_additions); a kind the diagnosis reported keeps its own entry.",
    )
    min_structure: float = Field(
        0.9, ge=0, le=1, description="Below this structure score an attempt has drifted (restorations keep >= 0.95)."
    )
    min_structure_derain: float = Field(
        0.75,
        ge=0,
        le=1,
        description="min_structure for a plan that removes rain: streaks are structure, and taking them away lowers "
        "the score on purpose (derainings at 0.79-0.90 were all at least as good as the input on held-out photos).",
    )
    min_gain: float = Field(0.02, ge=0, le=1, description="Overall-severity drop that counts as an improvement.")
    done_below: float = Field(0.1, ge=0, le=1, description="Stop retrying once overall severity is below this.")
    top_k: int = Field(3, ge=0, le=20, description="References to retrieve.")
    residual_factor: float = Field(
        1.3,
        ge=1,
        le=3,
        description="After an improvement that left some of the input's kinds behind: strength factor on those "
        "kinds for the next try (low-pass kinds excepted: a wider deconvolution kernel rings).",
    )
    no_change_factor: float = Field(
        1.5, ge=1, le=3, description="After an attempt that changed nothing: strength factor on every kind."
    )
    failure_factor: float = Field(
        0.5,
        gt=0,
        le=1,
        description="After an attempt that made things worse, drifted or failed: strength factor on every kind.",
    )
    artefact_scorer: bool = Field(
        True,
        description="Judge attempts with the artefact-aware quality scorer (estimated PSNR change against the input, "
        "its uncertainty, artefacts found) when its model is installed; otherwise by the scorer's severities.",
    )
    quality_z: float = Field(
        1.0,
        ge=0,
        le=5,
        description="An attempt counts as better only when its estimated gain stays positive this many ensemble "
        "spreads below the estimate (the artefact-aware scorer's own uncertainty on the image).",
    )
    quality_z_log: float = Field(
        1.5,
        ge=0,
        le=5,
        description="An attempt on which no artefact was found also counts as better when its estimated gain stays "
        "above the margin this many ensemble spreads down in the signed-log space the ensemble regresses in: "
        "members that agree on a big gain but not on its size (2.8 to 36 dB) assure more than the dB spread says.",
    )
    quality_z_extrapolating: float = Field(
        2.0,
        ge=0,
        le=5,
        description="quality_z for an attempt whose statistics lie outside what the scorer was fitted on (its "
        "ensemble extrapolates; the trace's quality.spread_log is None): the members' spread there understates the "
        "error (dehazing a hazy sky streaked with rain: +7.6 dB +-3.8 estimated, truly -19.9).",
    )
    quality_margin_db: float = Field(
        0.25,
        ge=0,
        le=5,
        description="Estimated PSNR gain (dB), after the uncertainty discount, that an attempt must show to be kept.",
    )
    quality_likely_k: float = Field(
        0.5,
        ge=0,
        le=5,
        description="When no attempt is assured better, the best 'uncertain' one is still returned when its estimate "
        "is above the margin and above this many of its errors (uncertainty_db), its ensemble members do not "
        "extrapolate and no artefact signals harm after its operators (5: never; see agent.policy.likely_gain).",
    )
    quality_artefact_margin_db: float = Field(
        2.0,
        ge=0,
        le=10,
        description="Taken off the estimated gain of an attempt showing an artefact that signals harm after its "
        "plan's operators (an artefact's harm_after in reasoner.quality.artefacts: clipping or ghost edges after a "
        "motion deblurring), when it is judged and when the best attempt is chosen: such a gain must be clear.",
    )
    worsened_margin: float = Field(
        0.05,
        ge=0,
        le=1,
        description="A kind whose severity rose by more than this over its source's counts as made worse; after a "
        "second harmful attempt in a row such kinds are left out of the next try.",
    )
    crops_above: int = Field(
        2048 * 2048,
        ge=0,
        description="Photos with more pixels than this are restored and judged on four crops, and only the chosen "
        "plan runs at full size, judged again there before it is returned (0: judge every attempt on the whole photo; "
        "model restorers always are).",
    )
    crop_side: int = Field(768, ge=64, le=4096, description="Side (px) of each crop a big photo is judged on.")
    policy: str = Field(
        "",
        max_length=4096,
        description="A trained restoration-plan policy folder (rl.plan_policy) that writes the first plan from the "
        "diagnosis instead of the hand planner (empty: the hand planner); its plan is re-scored and rolled back like "
        "any other, and the hand plan is used when its reply does not parse.",
    )


class RestoreState(BaseModel):
    """What the graph carries from node to node for one image."""

    input_path: str
    work_dir: str
    input_info: ImageInfo | None = None
    input_npy: str | None = None
    record: DiagnosisRecord | None = None
    references: list[Reference] = Field(default_factory=list)
    plan: Plan | None = None
    plan_source: int | None = None
    plan_rule: RetryRule | None = None  # the retry rule that made ``plan`` (None: the first plan)
    pending: str | None = None  # npy of the attempt awaiting re-scoring
    pending_s: float = 0.0  # its restore time
    pending_error: str | None = None  # why the restorer failed, if it did
    input_stats: dict[str, float] | None = None  # the input's measure statistics, for the quality scorer
    pending_run: dict | None = None  # what a model restorer reports of its run (prompt, seed, ...), for the trace
    attempts: list[AttemptTrace] = Field(default_factory=list)
    decision: Decision | None = None
    chosen: int | None = None
    decision_reason: str = ""
    timings: dict[str, float] = Field(default_factory=dict)
    trace: Trace | None = None  # set by the export node
    review: ReviewTrace | None = None  # set by the review node when a person reviewed the diagnosis
    # Big photos (agent.crops): corners of the crops attempts are judged on, their stack of the input, the whole
    # input's measure statistics, and the chosen plan's full-size result once judged there.
    crops: list[tuple[int, int]] | None = None
    crops_npy: str | None = None
    full_stats: dict[str, float] | None = None
    final_npy: str | None = None
    full_size: FullSizeTrace | None = None


@runtime_checkable
class Library(Protocol):
    """A reference library as the graph uses it (:class:`retrieval.library.ReferenceLibrary` is one)."""

    def search(self, image_or_vector, k: int = 5) -> list[Reference]:
        """Up to ``k`` references most similar to the image, best first, none below the library's threshold."""
        ...

    def load_pixels(self, ref: Reference) -> np.ndarray:
        """A reference's pixels: ``float32 HxWx3 RGB in [0, 1]``."""
        ...

    def close(self) -> None:
        """Release the library's files."""
        ...


@dataclass
class Context:
    """Backends and settings for a run, handed to nodes through LangGraph's runtime context.

    Built by :meth:`agent.backends.Backends.load` (or :func:`agent.backends.make_context`); tests may put any
    object with the Protocol's methods in a field.
    """

    reasoner: Reasoner
    scorer: Reasoner
    restorer: Restorer
    library: Library | None = None
    settings: Settings = field(default_factory=Settings)
    backends: dict[str, str] = field(default_factory=dict)  # names recorded in traces (see Backends.tags)
    # Stop after retrieval for a person to review the diagnosis (``rnr ui``). A run-time choice, not a setting:
    # Settings are hashed into thread ids and recorded in traces, and an unattended run must not change.
    review: bool = False
    # Largest image (pixels) the run takes: a run-time guard (memory), not a setting, like ``review``.
    max_pixels: int | None = None
