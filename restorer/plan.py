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


#: How much stronger than read a diagnosed factor is acted on, where erring one way costs more than the other
#: (tuned): haze's opacity ``1 - transmission``. Dehazing too little leaves the veil over everything, a little too
#: much darkens the densest parts; over haze from every zoo model (MiO's, the depth proxy's, our own; alone and with
#: noise, JPEG, motion blur, x4 low resolution) on 256 px crops of the calibration scenes, the first plan's PSNR
#: gained +0.41 dB a case at 1.1, +0.34 at 1.15, -0.08 at 1.3 (131 hazes found; the head's transmission is unbiased
#: there: the gain is the asymmetry, not a bias), and +0.79 / +0.23 dB at 1.1 on the held-out photos and gradio's
#: (60 / 52). The ground truth's plan (:func:`plan_from_record`) is not dosed: with the true transmission 1.1 lost
#: 0.8 dB on the calibration scenes. Through the agent (``bench/protocols.py --harm-seeds 1-7``, 1,414 crops): summed
#: PSNR change MiO +1677.0 -> +1695.3 dB, own cases +976.1 -> +1002.2, held-out models +1462.8 -> +1482.3 (1.05:
#: +1685.0, +999.8, +1474.1); 127 crops up, 60 down; harmed 10 -> 14 (1.05: 12): the cameraman's pale sky under haze
#: or haze and rain three times, dehazed darker, and a hazy noisy china crop (-0.6 dB), each estimated better. No
#: gate was found that keeps those (grey or bright frames, sky share, an airlight raised to its floor all gain too).
HAZE_OPACITY_GAIN = 1.1
#: Most haze opacity any plan dehazes (:func:`restorer.operators.dehaze.dehaze` holds itself to it too): a
#: transmission of at least 0.05 is left, so dividing by it cannot blow the image up.
MAX_OPACITY = 0.95


def haze_opacity(transmission: float, factor: float = 1.0) -> float:
    """The haze opacity ``1 - transmission`` taken ``factor`` times, at most :data:`MAX_OPACITY`.

    What a plan is dosed by (:func:`dosed_transmission`) and what the dehazer removes (``factor``: its strength
    above 1).

    >>> haze_opacity(0.6), haze_opacity(0.6, 2.0), haze_opacity(0.0)
    (0.4, 0.8, 0.95)
    """
    return min((1.0 - float(transmission)) * float(factor), MAX_OPACITY)


def dosed_transmission(transmission: float) -> float:
    """The transmission a plan dehazes to for a diagnosed one: the opacity :data:`HAZE_OPACITY_GAIN` times stronger.

    >>> dosed_transmission(0.6), dosed_transmission(0.02), dosed_transmission(1.0)
    (0.56, 0.05, 1.0)
    """
    return round(1.0 - haze_opacity(transmission, HAZE_OPACITY_GAIN), 4)


def plan_from_diagnosis(record: DiagnosisRecord, strength: float = 1.0, skip: set[str] | None = None) -> Plan:
    """:func:`plan_from_record` of a diagnosis (an estimate, not a ground truth), its haze dosed stronger.

    The plan's haze parameters carry the dosed transmission (:func:`dosed_transmission`), so the trace shows what ran
    beside what was read.
    """
    plan = plan_from_record(record, strength, skip)
    for op in plan.operations:
        if op.kind == "haze":
            op.params["transmission"] = dosed_transmission(op.params["transmission"])
    return plan
