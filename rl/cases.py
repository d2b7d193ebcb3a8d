"""The evaluation cases shared by benchmarks: held-out bundled photos, clean or synthetically degraded."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from reasoner.schema import KINDS, DiagnosisRecord
from rl.ground_truth import Synthesis, synthesize
from rl.photos import EVALUATION_PHOTOS, load_photo, random_crop


@dataclass(frozen=True, eq=False)
class Case:
    """One benchmark case: ``group`` is "clean", "single" or "mixed"."""

    name: str
    group: str
    clean: np.ndarray
    image: np.ndarray
    record: DiagnosisRecord


def evaluation_cases(
    seed: int = 0, per_kind: int = 12, mixed: int = 40, clean: int = 15, size: int = 512
) -> list[Case]:
    """Cases on :data:`~rl.photos.EVALUATION_PHOTOS` (scenes the calibration never saw), deterministic in ``seed``.

    ``per_kind`` single-kind cases for every kind, ``mixed`` 2-3-kind mixtures and ``clean`` untouched crops, each a
    random crop of at most ``size`` px cycling through the photos.
    """
    rng = np.random.default_rng(seed)
    cases: list[Case] = []
    plan = (
        [("clean", ())] * clean
        + [("single", (k,)) for k in KINDS for _ in range(per_kind)]
        + [("mixed", None)] * mixed
    )
    for i, (group, kinds) in enumerate(plan):
        photo = EVALUATION_PHOTOS[i % len(EVALUATION_PHOTOS)]
        img = random_crop(load_photo(photo), rng, size)
        if group == "mixed":
            syn: Synthesis = synthesize(img, rng, n_kinds=(2, 3))
        else:
            syn = synthesize(img, rng, kinds=list(kinds))
        tag = "-".join(op.kind for op in syn.ops) or "clean"
        cases.append(Case(f"{i:03d}_{photo}_{tag}", group, img, syn.image, syn.record))
    return cases
