"""Graph state (checkpointed) and run context (backends, never checkpointed).

Pixels do not live in the state: each image is a ``.npy`` file in the run's work directory and the state holds
its path, so checkpoints stay small and a resumed run finds every intermediate result.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, Field

from agent.trace import AttemptTrace, Decision, ReviewTrace, Trace
from reasoner.schema import DiagnosisRecord, ImageInfo
from restorer.plan import Plan
from retrieval.base import Reference


class Settings(BaseModel):
    """Knobs of the decide loop; recorded in the trace."""

    max_attempts: int = Field(3, ge=1, le=10, description="Restore attempts per image, retries included.")
    min_structure: float = Field(
        0.9, ge=0, le=1, description="Below this structure score an attempt has drifted (restorations keep >= 0.95)."
    )
    min_gain: float = Field(0.02, ge=0, le=1, description="Overall-severity drop that counts as an improvement.")
    done_below: float = Field(0.1, ge=0, le=1, description="Stop retrying once overall severity is below this.")
    top_k: int = Field(3, ge=0, le=20, description="References to retrieve.")


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
    pending: str | None = None  # npy of the attempt awaiting re-scoring
    pending_s: float = 0.0  # its restore time
    pending_error: str | None = None  # why the restorer failed, if it did
    pending_run: dict | None = None  # what a model restorer reports of its run (prompt, seed, ...), for the trace
    attempts: list[AttemptTrace] = Field(default_factory=list)
    decision: Decision | None = None
    chosen: int | None = None
    decision_reason: str = ""
    timings: dict[str, float] = Field(default_factory=dict)
    trace: Trace | None = None  # set by the export node
    review: ReviewTrace | None = None  # set by the review node when a person reviewed the diagnosis


@dataclass
class Context:
    """Backends and settings for a run, handed to nodes through LangGraph's runtime context."""

    reasoner: Any
    scorer: Any
    restorer: Any
    library: Any | None = None
    settings: Settings = field(default_factory=Settings)
    backends: dict[str, str] = field(default_factory=dict)
    # Stop after retrieval for a person to review the diagnosis (``rnr ui``). A run-time choice, not a setting:
    # Settings are hashed into thread ids and recorded in traces, and an unattended run must not change.
    review: bool = False
    # Largest image (pixels) the run takes: a run-time guard (memory), not a setting, like ``review``.
    max_pixels: int | None = None
