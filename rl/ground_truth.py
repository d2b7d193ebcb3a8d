"""Ground-truth records for synthesised degradations, in the same schema as predictions.

:func:`ground_truth` describes ops from :mod:`rl.degradations` as a validated
:class:`~reasoner.schema.DiagnosisRecord` (each step's observation is the op's model's ``describe``, in
``rl/degradations/<kind>.py``); :func:`synthesize` samples, applies and records in one go.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timezone

import numpy as np

from reasoner import schema
from reasoner.imageio import to_uint8
from reasoner.version import rnr_version
from rl.degradations import Params, apply, as_image, describe, factors, ordered, sample_ops


def _flat_params(p: Params) -> dict[str, float | int | str]:
    out: dict[str, float | int | str] = {}
    for f in fields(p):
        value = getattr(p, f.name)
        out.update(
            {f"{f.name}_{c}": v for c, v in zip("rgb", value, strict=True)}
            if isinstance(value, tuple)
            else {f.name: value}
        )
    return out


def image_info(img: np.ndarray) -> schema.ImageInfo:
    """Identity of a float HxWx3 image: SHA-256 of its :func:`to_uint8` pixels (what a lossless save holds)."""
    x = as_image(img)
    digest = hashlib.sha256(to_uint8(x).tobytes()).hexdigest()
    return schema.ImageInfo(path=None, sha256=digest, width=x.shape[1], height=x.shape[0], source_mode="RGB")


def ground_truth(
    ops: Sequence[Params],
    image: schema.ImageInfo | np.ndarray,
    *,
    faces: bool = False,
    text: bool = False,
    sky: bool = False,
    fine_texture: bool = False,
    seed: int | None = None,
) -> schema.DiagnosisRecord:
    """Build the exact diagnosis of an image degraded by ``ops`` (at most one per kind) as a validated record.

    ``image`` is the degraded image's :class:`~reasoner.schema.ImageInfo` or its float HxWx3 pixels in [0, 1]. Each
    op gets an entry with confidence 1, even at level "none"; factors are stored at full precision by
    :func:`~reasoner.schema.make_degradation` (angles wrapped into [0, 180), values clamped into the schema's
    bounds). The semantics flags are False unless the caller knows better; ``seed`` (what the ops were sampled
    with) and every parameter, seeds included, are kept in ``provenance.settings``, the latter as ``"<kind>.<name>"``.
    """
    if isinstance(image, np.ndarray):
        image = image_info(image)
    if not isinstance(image, schema.ImageInfo):
        raise TypeError(f"image must be an ImageInfo or the degraded pixels, got {type(image).__name__}")
    degradations, steps = [], []
    settings: dict[str, str | int | float | bool] = {} if seed is None else {"seed": int(seed)}
    for op in ordered(ops):
        severity, fac = factors(op, (image.height, image.width))
        entry = schema.make_degradation(op.kind, severity, 1.0, **fac)
        flat = _flat_params(op)
        numbers = {k: v for k, v in {**flat, **fac}.items() if isinstance(v, int | float) and k != "seed"}
        evidence = schema.stored_evidence(numbers)
        steps.append(
            schema.ReasoningStep(
                observation=describe(op, fac),
                evidence=evidence,
                kinds=[op.kind],
                inference=f"ground truth: {op.kind.replace('_', ' ')} at severity {severity:.2f} ({entry.level})",
            )
        )
        degradations.append(entry)
        settings.update({f"{op.kind}.{k}": v.item() if isinstance(v, np.generic) else v for k, v in flat.items()})
    if not steps:
        steps.append(schema.ReasoningStep(observation="nothing was synthesised", inference="the image is clean"))
    kinds = ", ".join(d.kind for d in degradations) or "none"
    return schema.DiagnosisRecord(
        image=image,
        reasoning=steps,
        degradations=degradations,
        semantics=schema.Semantics(
            description=f"Synthetic sample: a clean photo with synthesised degradations ({kinds}).",
            faces=faces,
            text=text,
            sky=sky,
            fine_texture=fine_texture,
            coarse=True,
        ),
        overall_severity=schema.combined_severity(degradations),
        provenance=schema.Provenance(
            backend="synthetic",
            rnr_version=rnr_version(),
            elapsed_s=0.0,
            created_at=datetime.now(timezone.utc),
            settings=settings,
        ),
    )


@dataclass(frozen=True, eq=False)
class Synthesis:
    """A synthesised sample: the degraded float32 HxWx3 image in [0, 1], the ops (physical order), the record."""

    image: np.ndarray
    ops: tuple[Params, ...]
    record: schema.DiagnosisRecord


def synthesize(
    img: np.ndarray,
    rng: np.random.Generator | int,
    kinds: Sequence[str] | None = None,
    n_kinds: int | tuple[int, int] = 1,
    **flags: bool,
) -> Synthesis:
    """Sample ops with :func:`sample_ops`, apply them to the clean float32 HxWx3 ``img``, record the ground truth.

    Args:
        img: the clean image, float HxWx3 RGB in [0, 1]; not modified.
        rng: a generator, or an integer seed (then also stored in the record's settings).
        kinds: as in :func:`sample_ops`.
        n_kinds: as in :func:`sample_ops`.
        **flags: semantics content flags passed to :func:`ground_truth`.

    """
    seed = None
    if isinstance(rng, int | np.integer):
        seed, rng = int(rng), np.random.default_rng(int(rng))
    ops = tuple(sample_ops(rng, kinds, n_kinds))
    out = apply(img, ops)
    return Synthesis(out, ops, ground_truth(ops, out, seed=seed, **flags))
