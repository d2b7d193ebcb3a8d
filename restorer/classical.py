"""The default CPU restorer: classical OpenCV / scikit-image operators driven by the plan's physical factors.

Each operation of the plan runs, in the plan's order, its kind's operator from :data:`restorer.operators.OPERATORS`
with the record's factors (``op.params``) scaled by ``op.strength``; reference-guided colour transfer runs last.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from reasoner.kinds import LOWPASS
from reasoner.schema import DiagnosisRecord
from restorer.base import ReferenceImage, RestoreOutput
from restorer.operators import OPERATORS, transfer_color
from restorer.operators.filters import as_image
from restorer.plan import Operation, Plan


class ClassicalRestorer:
    """Runs the plan with classical operators; reference colour transfer when a reference is relevant enough.

    Args:
        color_transfer_min_score: least relevance score of the top reference for colour transfer to run.
        color_transfer_max_weight: blend weight of the transfer at score 1; it rises linearly from 0 at
            ``color_transfer_min_score``.

    """

    name = "classical"

    def __init__(self, *, color_transfer_min_score: float = 0.6, color_transfer_max_weight: float = 0.5) -> None:
        if not 0.0 <= color_transfer_min_score <= 1.0:
            raise ValueError(f"color_transfer_min_score must be in [0, 1], got {color_transfer_min_score!r}")
        if not 0.0 <= color_transfer_max_weight <= 1.0:
            raise ValueError(f"color_transfer_max_weight must be in [0, 1], got {color_transfer_max_weight!r}")
        self.color_transfer_min_score = float(color_transfer_min_score)
        self.color_transfer_max_weight = float(color_transfer_max_weight)

    def restore(
        self, image: np.ndarray, record: DiagnosisRecord, references: Sequence[ReferenceImage], plan: Plan
    ) -> RestoreOutput:
        """Restore ``image`` (float32 HxWx3 RGB in [0, 1], not modified); the pixels are a new image of its shape.

        Operations with strength 0 are skipped; an empty plan (and no colour transfer) returns an exact copy.
        Factors missing from ``op.params`` are taken from the record's entry for that kind. ``run`` is None.
        """
        x = as_image(image)
        noise_left: float | None = None  # std (0-255) of the noise a denoise step left, for the deconvolutions
        for op in plan.operations:
            if op.strength <= 0:
                continue
            operator = OPERATORS[op.kind]
            params = _factors(op, record, operator.factors)
            extra = {"noise": noise_left} if op.kind in LOWPASS else {}
            x = operator.run(x, *params, strength=op.strength, **extra)
            if operator.leaves_noise is not None:
                noise_left = operator.leaves_noise(*params, strength=op.strength)
        weight = self.color_transfer_weight(references) if plan.use_references else 0.0
        if weight > 0:
            x = transfer_color(x, max(references, key=lambda r: r.score).pixels, weight)
        return RestoreOutput(x)

    def color_transfer_weight(self, references: Sequence[ReferenceImage]) -> float:
        """Blend weight of the colour transfer for these references: 0 below the threshold score, then linear."""
        if not references:
            return 0.0
        score = max(float(r.score) for r in references)
        lo = self.color_transfer_min_score
        if score < lo:
            return 0.0
        frac = 1.0 if lo >= 1.0 else (score - lo) / (1.0 - lo)
        return self.color_transfer_max_weight * min(frac, 1.0)


def _factors(op: Operation, record: DiagnosisRecord, names: tuple[str, ...]) -> list:
    entry = next((d for d in getattr(record, "degradations", ()) if d.kind == op.kind), None)
    fallback = entry.factors.model_dump() if entry is not None else {}
    merged = {**fallback, **op.params}
    missing = [n for n in names if n not in merged]
    if missing:
        raise ValueError(
            f"{op.kind} operation lacks factors {missing}: give them in op.params or in the record's {op.kind} entry"
        )
    return [merged[n] for n in names]
