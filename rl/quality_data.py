"""Training data for the quality-change model: restorations, right and wrong, of cases whose clean image is known.

Each case is a crop of a calibration photo, degraded by zero to three kinds drawn from the degradation zoo (any of
a kind's models), quantised to 8 bits as users' photos are. Several attempts are made on it, the way the agent and
its failure modes would: the plan the ground truth implies, the plan ``measure`` diagnoses, those plans with wrong
strengths, wrong factors (a kernel too long or too short: ringing) or a kind that is not there (dehazing a clear
photo), and simulated failures of generative restorers (invented texture, colour drift, over-smoothing, banding,
over-sharpening, a shifted tone curve, a small misalignment). Every attempt is labelled with the true change in
PSNR and SSIM against the clean crop, and carries the change statistics of :mod:`reasoner.quality.features`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor

import cv2
import numpy as np

from reasoner.kinds import KINDS
from reasoner.quality.features import measured, quality_statistics, texture_change
from restorer.metrics import psnr, ssim
from restorer.plan import Operation, Plan, plan_from_record
from rl.degradations import MODELS, apply, sample_ops
from rl.ground_truth import ground_truth
from rl.photos import CALIBRATION_PHOTOS, load_photo, random_crop

#: How each attempt was made (recorded with the row, for per-source error analysis).
SOURCES = ("oracle", "diagnosed", "strength", "factors", "false_kind", "blind", "generative", "input_failure")


def _q8(x: np.ndarray) -> np.ndarray:
    return (np.round(np.clip(x, 0.0, 1.0) * 255.0) / 255.0).astype(np.float32)


def _jitter(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    img = np.rot90(img, int(rng.integers(4)))
    mean = img.mean()
    img = np.clip((img - mean) * rng.uniform(0.85, 1.15) + mean, 0, 1) ** rng.uniform(0.85, 1.2)
    img = img * rng.uniform(0.93, 1.07, size=3)
    return np.ascontiguousarray(np.clip(img, 0, 1), dtype=np.float32)


# ----- simulated failures of generative restorers (and of over-eager classical ones)


def _hallucinate(x, rng):
    h, w = x.shape[:2]
    tex = cv2.GaussianBlur(rng.normal(0, 1, (h, w)).astype(np.float32), (0, 0), rng.uniform(0.6, 2.0))
    tex *= rng.uniform(0.015, 0.06) / (tex.std() + 1e-6)
    return x + tex[..., None] * rng.uniform(0.6, 1.0, 3)[None, None].astype(np.float32)


def _colour_drift(x, rng):
    h, w = x.shape[:2]
    field = cv2.resize(rng.normal(0, 1, (3, 3, 3)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    return x + field * rng.uniform(0.01, 0.06) + rng.normal(0, 0.02, 3).astype(np.float32)


def _smooth(x, rng):
    d = int(rng.integers(5, 12))
    return cv2.bilateralFilter(x, d, float(rng.uniform(0.08, 0.3)), float(rng.uniform(3, 9)))


def _posterise(x, rng):
    levels = int(rng.integers(12, 40))
    return np.round(x * levels) / levels


def _oversharpen(x, rng):
    s = rng.uniform(0.8, 2.5)
    return x + rng.uniform(0.8, 3.0) * (x - cv2.GaussianBlur(x, (0, 0), s))


def _tone(x, rng):
    g = rng.uniform(0.6, 1.6)
    return np.clip(x, 0, 1) ** g * rng.uniform(0.85, 1.15)


def _shift(x, rng):
    h, w = x.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), rng.uniform(-1.5, 1.5), 1.0)
    m[:, 2] += rng.uniform(-1.5, 1.5, 2)
    return cv2.warpAffine(x, m, (w, h), borderMode=cv2.BORDER_REFLECT)


FAILURES: dict[str, Callable[[np.ndarray, np.random.Generator], np.ndarray]] = {
    "hallucinated_texture": _hallucinate,
    "colour_drift": _colour_drift,
    "over_smoothing": _smooth,
    "banding": _posterise,
    "over_sharpening": _oversharpen,
    "tone_curve": _tone,
    "misalignment": _shift,
}


# ----- plans with wrong parameters


def _perturb_factors(op: Operation, rng: np.random.Generator) -> Operation:
    p = dict(op.params)
    for key in ("sigma", "length", "scale", "density", "transmission", "exposure"):
        if key in p and isinstance(p[key], int | float):
            p[key] = float(p[key]) * float(np.exp(rng.normal(0, 0.45)))
    if "angle" in p:
        p["angle"] = float((p["angle"] + rng.normal(0, 25)) % 180)
    if "quality" in p:
        p["quality"] = int(np.clip(p["quality"] + rng.integers(-25, 26), 5, 95))
    if "gamma" in p:
        p["gamma"] = float(np.clip(p["gamma"] * np.exp(rng.normal(0, 0.3)), 0.5, 4.0))
    if "transmission" in p:
        p["transmission"] = float(np.clip(p["transmission"], 0.05, 0.98))
    if "exposure" in p:
        p["exposure"] = float(np.clip(p["exposure"], 0.02, 1.0))
    return op.model_copy(update={"params": p})


def _false_kind_plan(present: set[str], rng: np.random.Generator) -> Plan | None:
    from reasoner.schema import make_degradation

    absent = [k for k in KINDS if k not in present]
    if not absent:
        return None
    kind = absent[int(rng.integers(len(absent)))]
    sev = float(rng.uniform(0.2, 0.8))
    fac = KINDS[kind].factors_for(sev, _FACTOR_DEFAULTS[kind])
    deg = make_degradation(kind, sev, float(rng.uniform(0.55, 0.95)), **fac)
    return Plan(operations=[Operation(kind=kind, severity=sev, strength=1.0, params=deg.factors.model_dump())])


_FACTOR_DEFAULTS: dict[str, dict] = {
    "noise": {"model": "gaussian"},
    "blur": {"kernel": "gaussian"},
    "motion_blur": {"angle": 0.0},
    "haze": {"airlight": [0.85, 0.85, 0.85], "beta": 1.0},
    "low_light": {},
    "jpeg": {},
    "rain": {"angle": 80.0},
    "low_resolution": {},
}


# ----- one case


def quality_case(
    seed: int,
    index: int,
    model_pool: Mapping[str, Sequence[str]] | None = None,
    size: tuple[int, int] = (192, 448),
    photos: Sequence[str] = CALIBRATION_PHOTOS,
    keep_images: bool = False,
) -> list[dict]:
    """The attempts made on one synthesised case, deterministic in (seed, index).

    ``model_pool`` restricts each kind to some of its zoo models (leave-one-model-out fits); default: all.
    Each row holds the change statistics, ``dpsnr`` / ``dssim`` (attempt minus input, against the clean crop),
    ``tex_true`` (fine texture against the clean crop's: :func:`reasoner.quality.features.texture_change`),
    ``source`` (see :data:`SOURCES`), ``failure`` (a :data:`FAILURES` name or ""), ``kinds`` (the plan's kinds) and
    ``degradations`` (the kinds applied); with ``keep_images`` also ``images``: (input, attempt, clean) arrays.
    """
    from reasoner.measure import MeasureReasoner
    from restorer.classical import ClassicalRestorer

    rng = np.random.default_rng([seed, index])
    photo = load_photo(photos[int(rng.integers(len(photos)))])
    clean = _q8(_jitter(random_crop(photo, rng, int(rng.integers(*size))), rng))
    u = rng.random()
    n = 0 if u < 0.15 else 1 if u < 0.55 else int(rng.integers(2, 4))
    pool = model_pool or {k: sorted(MODELS[k]) for k in KINDS}
    models = {k: pool[k][int(rng.integers(len(pool[k])))] for k in KINDS if pool.get(k)}
    kinds = list(rng.permutation([k for k in KINDS if k in models]))[:n] if n else []
    ops = sample_ops(rng, kinds=kinds, n_kinds=len(kinds), models=models) if kinds else []
    src = _q8(apply(clean, ops)) if ops else clean
    truth = ground_truth(ops, src)
    restorer = ClassicalRestorer()

    def run(plan: Plan) -> np.ndarray:
        return restorer.restore(src, truth, [], plan).pixels

    attempts: list[tuple[str, str, list[str], np.ndarray]] = []
    oracle = plan_from_record(truth)
    if oracle.operations:
        attempts.append(("oracle", "", oracle.kinds, run(oracle)))
        ops2 = [
            o.model_copy(
                update={"strength": round(float(np.clip(o.strength * np.exp(rng.normal(0, 0.6)), 0.1, 3.0)), 4)}
            )
            for o in oracle.operations
        ]
        attempts.append(("strength", "", oracle.kinds, run(Plan(operations=ops2))))
        attempts.append(("factors", "", oracle.kinds,
                         run(Plan(operations=[_perturb_factors(o, rng) for o in oracle.operations]))))  # fmt: skip
    diagnosed = plan_from_record(MeasureReasoner().diagnose(src))
    if diagnosed.operations:
        attempts.append(("diagnosed", "", diagnosed.kinds, run(diagnosed)))
    false = _false_kind_plan(set(kinds), rng)
    if false is not None:
        attempts.append(("false_kind", "", false.kinds, run(false)))
    if rng.random() < 0.5:  # a blind tool a user might reach for: non-local means at a guessed strength
        h = float(rng.uniform(3, 20))
        den = cv2.fastNlMeansDenoisingColored(_u8(src), None, h, h, 7, 21).astype(np.float32) / 255.0
        attempts.append(("blind", "nlm", ["noise"], den))
    name = list(FAILURES)[int(rng.integers(len(FAILURES)))]
    base = attempts[0][3] if attempts and rng.random() < 0.6 else src
    attempts.append(("generative" if base is not src else "input_failure", name, oracle.kinds if base is not src
                     else [], FAILURES[name](base.copy(), rng)))  # fmt: skip
    rows = []
    p0, s0 = psnr(_u8(clean), _u8(src)), ssim(_u8(clean), _u8(src))
    m_src = measured(src)
    for source, failure, plan_kinds, out in attempts:
        out = _q8(out)
        row = quality_statistics(src, out, m_src)
        row.update(dpsnr=psnr(_u8(clean), _u8(out)) - p0, dssim=ssim(_u8(clean), _u8(out)) - s0,
                   tex_true=texture_change(clean, out), source=source,
                   failure=failure, kinds=",".join(plan_kinds), degradations=",".join(kinds), index=index)  # fmt: skip
        if keep_images:
            row["images"] = (src, out, clean)
        rows.append(row)
    return rows


def _u8(x: np.ndarray) -> np.ndarray:
    return np.round(np.clip(x, 0, 1) * 255).astype(np.uint8)


def _case(args):
    return quality_case(*args[:3], photos=args[3], keep_images=args[4])


def build(
    n: int,
    seed: int = 0,
    workers: int | None = None,
    model_pool: Mapping[str, Sequence[str]] | None = None,
    photos: Sequence[str] = CALIBRATION_PHOTOS,
    keep_images: bool = False,
) -> list[dict]:
    """Rows of :func:`quality_case` for cases ``0 .. n-1`` (in order, whatever the worker count)."""
    workers = workers or max(1, min(os.cpu_count() or 1, 8))
    jobs = [(seed, i, model_pool, tuple(photos), keep_images) for i in range(n)]
    if workers == 1:
        parts = [_case(j) for j in jobs]
    else:
        with ProcessPoolExecutor(workers) as pool:
            parts = list(pool.map(_case, jobs, chunksize=8))
    return [row for part in parts for row in part]
