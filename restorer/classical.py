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
from restorer.operators import OPERATORS, combine_psfs, deconvolve, transfer_color
from restorer.operators.deconvolution import WIENER_PER_VAR, clamp_overshoot, error_sigma
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
        quality = _jpeg_quality(plan, record)  # the compression error regularises deconvolutions too
        ops = [op for op in plan.operations if op.strength > 0]
        lowpass = [op for op in ops if op.kind in LOWPASS]
        for op in ops:
            operator = OPERATORS[op.kind]
            params = _factors(op, record, operator.factors)
            strength = op.strength
            if op.kind == "jpeg" and lowpass:
                strength *= DEBLOCK_BEFORE_DECONVOLUTION
            if op.kind in LOWPASS and len(lowpass) > 1:
                if op is lowpass[0]:
                    x = _joint_deconvolution(x, lowpass, record, noise_left, quality)
                continue
            extra = {"noise": noise_left, "quality": quality} if operator.error_aware else {}
            x = operator.run(x, *params, strength=strength, **extra)
            if operator.leaves_noise is not None:
                noise_left = operator.leaves_noise(*params, strength=strength)
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


#: Share of the deblocking strength used when a deconvolution follows (tuned): that deconvolution is regularised by
#: the compression error itself, and a full deblocking pass flattens the little detail a blurred image has left.
DEBLOCK_BEFORE_DECONVOLUTION = 0.4
#: Overshoot clamp radius of a joint deconvolution that includes low resolution (as :func:`sharpen_resolution`).
_JOINT_CLAMP = 1


def _joint_deconvolution(x, ops: list[Operation], record: DiagnosisRecord, noise, quality) -> np.ndarray:
    """Several low-pass degradations undone by one deconvolution of their combined PSF.

    Deconvolving them one after the other would amplify, in the second, what the first could not restore (a
    defocus inverted on a down-sampled image rings at the frequencies the down-sampling removed). Each PSF enters
    at its operation's strength (an unsure detection as a partial blur, :func:`combine_psfs`); the prior is the
    strongest of their least balances plus the error term.
    """
    parts, floor = [], 0.0
    for op in ops:
        operator = OPERATORS[op.kind]
        psf, least = operator.psf(*_factors(op, record, operator.factors))
        parts.append((psf, op.strength))
        floor = max(floor, least)
    sigma = error_sigma(noise, quality, x)
    boost = max(max(op.strength for op in ops), 1.0)
    out = deconvolve(x, combine_psfs(parts), balance=(floor + WIENER_PER_VAR * sigma**2) / boost**2)
    if any(op.kind == "low_resolution" for op in ops):
        out = clamp_overshoot(out, x, _JOINT_CLAMP)
    return out


def _jpeg_quality(plan: Plan, record: DiagnosisRecord) -> float | None:
    """The JPEG quality of the plan's compression step (None without one), dosed like the step itself."""
    op = next((op for op in plan.operations if op.kind == "jpeg" and op.strength > 0), None)
    if op is None:
        return None
    (quality,) = _factors(op, record, OPERATORS["jpeg"].factors)
    # A weakly dosed (unsure) detection counts as lighter compression, as the deblocking step treats it.
    return max(1.0, 100.0 - (100.0 - float(quality)) * min(op.strength, 1.0))


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
