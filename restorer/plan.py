"""The restoration plan: ordered operations with parameters from the diagnosis record, plus an edit instruction.

Operations run in restoration order (:func:`reasoner.kinds.restoration_order`: the reverse of the physical order,
compression and noise first, scene-level haze last), each with the physical factors the record gave for its kind
and a ``strength`` multiplier the agent adjusts between attempts.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from reasoner.kinds import KINDS, restoration_order
from reasoner.schema import DegradationKind, DiagnosisRecord
from reasoner.severity import level_for

#: Every kind in restoration order (:func:`reasoner.kinds.restoration_order`).
RESTORE_ORDER: tuple[str, ...] = tuple(restoration_order(KINDS))


class Operation(BaseModel):
    """One restoration step for one degradation kind."""

    model_config = ConfigDict(extra="forbid")

    kind: DegradationKind
    severity: float = Field(ge=0, le=1, description="Diagnosed severity of this kind.")
    strength: float = Field(1.0, ge=0, le=3, description="Multiplier on the operator's strength (1 = as diagnosed).")
    params: dict[str, float | int | str | list[float]] = Field(
        default_factory=dict, description="The record's physical factors for this kind, by the schema's names."
    )


class Plan(BaseModel):
    """Ordered operations and a natural-language instruction for editing models."""

    model_config = ConfigDict(extra="forbid")

    operations: list[Operation] = Field(default_factory=list)
    instruction: str = Field("", max_length=2000)
    use_references: bool = Field(True, description="Whether reference-guided colour/tone transfer may run.")

    @property
    def kinds(self) -> list[str]:
        """Kinds in the order they run."""
        return [op.kind for op in self.operations]

    @property
    def strengths(self) -> dict[str, float]:
        """Each kind's strength (1 = as diagnosed)."""
        return {op.kind: op.strength for op in self.operations}


#: Confidence from which a detection is treated at full strength, and the weight of the least confident one.
FULL_CONFIDENCE, MIN_WEIGHT = 0.8, 0.25


def confidence_weight(confidence: float) -> float:
    """Strength multiplier for a detection of ``confidence``: 1 from :data:`FULL_CONFIDENCE`, down to MIN_WEIGHT.

    A borderline detection is often a false one, and undoing a degradation that is not there (dehazing a clear
    photo, deblurring a sharp one) does more harm than a cautious pass does to a real one. Expected benefit, not
    the classifier's yes/no, sets the dose.

    >>> confidence_weight(0.95), confidence_weight(0.5)
    (1.0, 0.25)
    """
    return min(max((confidence - 0.5) / (FULL_CONFIDENCE - 0.5), MIN_WEIGHT), 1.0)


#: Kinds whose operator holds its own dose to natural-image statistics, so that an unsure detection is not weakened
#: again by its confidence: brightening moves the brightest percent of pixels only into the range well-exposed photos
#: have (:func:`restorer.operators.low_light.tone_curve`). On dark and dark+noisy crops of the tuning scenes (three
#: under-exposure models) full strength gained 0.6 dB on the noisy ones and touched no dark-by-nature photo.
SELF_DOSED = frozenset({"low_light"})


def plan_from_record(record: DiagnosisRecord, strength: float = 1.0, skip: set[str] | None = None) -> Plan:
    """Operations for every detected kind of ``record`` in :data:`RESTORE_ORDER`, params from its factors.

    ``strength`` scales every operation, times :func:`confidence_weight` of each detection (kinds of
    :data:`SELF_DOSED` excepted); kinds in ``skip`` are left out (used when a retry drops an operator that made things
    worse).
    """
    skip = skip or set()
    ops = [
        Operation(
            kind=d.kind,
            severity=d.severity,
            strength=round(min(strength * (1.0 if d.kind in SELF_DOSED else confidence_weight(d.confidence)), 3.0), 4),
            params=d.factors.model_dump(),
        )
        for d in sorted(record.detected(), key=lambda d: RESTORE_ORDER.index(d.kind))
        if d.kind not in skip
    ]
    names = ", ".join(f"{op.kind.replace('_', ' ')} ({level_for(op.severity)})" for op in ops)
    instruction = f"Remove {names}; keep content, geometry and colours unchanged." if ops else "Leave the image as is."
    return Plan(operations=ops, instruction=instruction)
