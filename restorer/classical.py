"""The default CPU restorer: classical OpenCV / scikit-image operators driven by the plan's physical factors.

Each operation of the plan runs, in the plan's order, the operator of :mod:`restorer.operators` for its kind with
the record's factors (``op.params``) scaled by ``op.strength``; reference-guided colour transfer runs last.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from reasoner.schema import DiagnosisRecord
from restorer import operators as ops
from restorer.base import ReferenceImage
from restorer.plan import Operation, Plan

#: Share of the noise std that the denoiser leaves behind as error (0.5 at sigma 10 to 0.3 at sigma 50 on the held-out
#: photos); what the deconvolution operators are told to expect after a denoise step.
RESIDUAL_NOISE = 0.35

# kind -> (operator, factor names it reads). Operators take (image, *factors, strength=..., [noise=...]).
_OPERATORS: dict[str, tuple[Callable[..., np.ndarray], tuple[str, ...]]] = {
    "noise": (ops.denoise, ("sigma", "model")),
    "jpeg": (ops.deblock, ("quality",)),
    "blur": (ops.deblur, ("sigma", "kernel")),
    "motion_blur": (ops.deblur_motion, ("length", "angle")),
    "haze": (ops.dehaze, ("transmission", "airlight", "beta")),
    "low_light": (ops.brighten, ("exposure", "gamma")),
    "rain": (ops.derain, ("density", "angle")),
    "low_resolution": (ops.sharpen_resolution, ("scale",)),
}
_TOLD_NOISE = frozenset({"blur", "motion_blur", "low_resolution"})


def _as_image(image: np.ndarray) -> np.ndarray:
    x = np.asarray(image)
    if x.ndim != 3 or x.shape[2] != 3 or x.size == 0 or not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"expected a float HxWx3 RGB image in [0, 1], got a {x.dtype} array of shape {x.shape}")
    x = np.array(x, dtype=np.float32, order="C", copy=True)
    if not np.isfinite(x).all():
        raise ValueError("image contains NaN or infinite values")
    return np.clip(x, 0.0, 1.0, out=x)


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
    ) -> np.ndarray:
        """Restore ``image`` (float32 HxWx3 RGB in [0, 1], not modified); returns a new image of the same shape.

        Operations with strength 0 are skipped; an empty plan (and no colour transfer) returns an exact copy.
        Factors missing from ``op.params`` are taken from the record's entry for that kind.
        """
        x = _as_image(image)
        noise_left: float | None = None  # std (0-255) of the noise a denoise step left, for the deconvolutions
        for op in plan.operations:
            if op.strength <= 0:
                continue
            operator, names = _OPERATORS[op.kind]
            params = _factors(op, record, names)
            extra = {"noise": noise_left} if op.kind in _TOLD_NOISE else {}
            x = operator(x, *params, strength=op.strength, **extra)
            if op.kind == "noise":
                noise_left = float(params[0]) * max(RESIDUAL_NOISE, 1.0 - (1.0 - RESIDUAL_NOISE) * op.strength)
        weight = self.color_transfer_weight(references) if plan.use_references else 0.0
        if weight > 0:
            x = ops.transfer_color(x, max(references, key=lambda r: r.score).pixels, weight)
        return x

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
