"""Leave-one-model-out (LOMO): the ``measure`` diagnoser on synthesis models its calibration never saw.

    python bench/lomo.py [--n 3000] [--seed 0] [--per-kind 6] [--mixed 12] [--clean 30] [--negatives 30]
                         [--size 256] [--workers 2] [--split evaluation|tuning] [--no-restore]
                         [--out bench/out/lomo.json]

Folds: fold ``f`` holds out, for every kind, its ``f``-th zoo model (``rl.degradations.MODELS``, cycling where a
kind has fewer), so each of the 26 models is held out at least once; the fold's calibration is fitted by
``rl.calibrate.fit`` with ``--n`` samples that never draw a held-out model for its kind. An in-distribution
calibration (every model, same ``--n`` and seed) is evaluated on the same cases beside it.

Cases (8-bit, crops of ``--size`` px): per fold, ``--per-kind`` single-kind cases per kind and ``--mixed`` 2-3-kind
mixtures (every fourth applied in a shuffled order), every kind drawn from its held-out model; clean crops of the
photos and clean negatives (``rl.negatives``, every family but ``photo``), shared by all folds.

``--split evaluation`` (default) degrades ``rl.photos.EVALUATION_PHOTOS`` (scenes no calibration saw) and adds the
real photos bundled with gradio, when installed, to the clean crops (those saved as JPEG below quality
:data:`CLEAN_MIN_QUALITY`, read off their quantisation tables, are left out: they are not clean); calibrations are
fitted on ``CALIBRATION_PHOTOS``. ``--split tuning`` is where settings are chosen: calibrations are fitted on
:data:`TUNING_TRAIN` and cases come from :data:`TUNING_VALIDATION` (both calibration scenes; the evaluation photos
are not touched).

Reported per kind and held-out model: F1 of detection, median relative error of the kind's primary factor on
correct detections, and mean restoration PSNR over the cases carrying it (single and mixed) of identity, the oracle
(the classical restorer driven by the ground truth), and ``agent.run.restore_image`` whose reasoner and scorer use
the LOMO calibration, and the in-distribution one; then micro-F1 on single and mixed cases, and false-alarm rates
on clean photos and clean negatives. ``--n 3000`` per fit keeps the run near half an hour on 2 cores (6 fits of
about 2 minutes; diagnosis and restoration of ~450 cases twice); ``rnr calibrate`` fits 8000.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2  # noqa: E402

cv2.setNumThreads(1)  # forked pool workers must not inherit OpenCV's thread pool (see bench/protocols.py)

import numpy as np  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from reasoner.kinds import KINDS  # noqa: E402
from reasoner.schema import DiagnosisRecord  # noqa: E402
from rl.calibrate import NEGATIVE_FAMILIES, ZOO, eight_bit  # noqa: E402
from rl.degradations import apply, sample_ops  # noqa: E402
from rl.ground_truth import ground_truth  # noqa: E402
from rl.negatives import clean_negatives  # noqa: E402
from rl.photos import CALIBRATION_PHOTOS, EVALUATION_PHOTOS, load_photo, random_crop  # noqa: E402

#: Folds: enough that every model of every kind is held out once.
FOLDS = max(len(names) for names in ZOO.values())
#: The tuning split of the calibration scenes: fitted on the first, validated on the second.
TUNING_VALIDATION: tuple[str, ...] = ("chelsea", "brick", "moon")
TUNING_TRAIN: tuple[str, ...] = tuple(p for p in CALIBRATION_PHOTOS if p not in TUNING_VALIDATION)
#: Targets on held-out photos and held-out models.
TARGETS = {"f1_single": 0.85, "f1_mixed": 0.80, "clean_fp_rate": 0.05, "negative_fp_rate": 0.05}
PSNR_CAP = 60.0
#: Least JPEG quality a photo may have been saved at to give clean crops: gradio's lion and cheetah2 are q80 and q79
#: JPEGs, and a crop of one that reads as JPEG is a right reading, not a false alarm (30 of the 39 clean crops
#: flagged in session 31's run were theirs, all as JPEG).
CLEAN_MIN_QUALITY = 90


def held_out(fold: int) -> dict[str, str]:
    """The model each kind holds out in ``fold``."""
    return {k: names[fold % len(names)] for k, names in ZOO.items()}


def training_models(held: Mapping[str, str]) -> dict[str, tuple[str, ...]]:
    """Every kind's zoo models but the held-out one (what the fold's calibration draws from)."""
    return {k: tuple(n for n in names if n != held.get(k)) for k, names in ZOO.items()}


@dataclass(frozen=True, eq=False)
class ZooCase:
    """One case: ``group`` is "single", "mixed", "clean" (a photo crop) or "negative" (a clean negative)."""

    name: str
    group: str
    clean: np.ndarray
    image: np.ndarray
    record: DiagnosisRecord
    models: dict[str, str] = field(default_factory=dict)
    fold: int | None = None


@cache
def real_photos(split: str) -> dict[str, np.ndarray]:
    """Scenes of ``split``: the tuning validation scenes, or the evaluation photos (plus gradio's, for clean)."""
    if split == "tuning":
        return {p: load_photo(p) for p in TUNING_VALIDATION}
    return {p: load_photo(p) for p in EVALUATION_PHOTOS}


def _crop(photos: Mapping[str, np.ndarray], rng: np.random.Generator, i: int, size: int) -> tuple[str, np.ndarray]:
    name = list(photos)[i % len(photos)]
    return name, eight_bit(random_crop(photos[name], rng, size))


def zoo_cases(split: str, seed: int, fold: int | None, per_kind: int, mixed: int, size: int) -> list[ZooCase]:
    """Degraded cases of one fold (every kind from its held-out model), or of the whole zoo when ``fold`` is None."""
    photos = real_photos(split)
    rng = np.random.default_rng([seed, 17, 1000 if fold is None else fold])
    held = held_out(fold) if fold is not None else {}
    models = {k: (v,) for k, v in held.items()} or dict(ZOO)
    plan = [(k,) for k in KINDS for _ in range(per_kind)] + [None] * mixed
    cases = []
    for i, kinds in enumerate(plan):
        photo, clean = _crop(photos, rng, i, size)
        shuffled = kinds is None and i % 4 == 3
        ops = sample_ops(rng, kinds, n_kinds=(2, 3), models=models, shuffled=shuffled)
        image = eight_bit(apply(clean, ops, keep_order=shuffled))
        used = {op.kind: _model_name(op) for op in ops}
        tag = "-".join(f"{k}:{m}" for k, m in used.items())
        group = "single" if kinds else "mixed"
        name = f"f{fold if fold is not None else 'all'}_{i:03d}_{photo}_{tag}"
        cases.append(ZooCase(name, group, clean, image, ground_truth(ops, image), used, fold))
    return cases


def _model_name(op) -> str:
    from rl.degradations import model_of

    return model_of(op).name


def clean_cases(split: str, seed: int, n_photos: int, n_negatives: int, size: int) -> list[ZooCase]:
    """Clean photo crops (plus gradio's real photos on the evaluation split) and clean negatives.

    Photos saved as JPEG below :data:`CLEAN_MIN_QUALITY` give no clean crops: they carry a compression.
    """
    photos = dict(real_photos(split))
    if split == "evaluation":
        from bench.protocols import held_out_photo_qualities, held_out_photos

        compressed = {n for n, q in held_out_photo_qualities().items() if q is not None and q < CLEAN_MIN_QUALITY}
        photos = {n: p for n, p in (photos | held_out_photos()).items() if n not in compressed}
    rng = np.random.default_rng([seed, 23])
    cases = []
    for i in range(n_photos):
        photo, img = _crop(photos, rng, i, size)
        cases.append(ZooCase(f"clean_{i:03d}_{photo}", "clean", img, img, ground_truth([], img)))
    for neg in clean_negatives(rng, n_negatives, size, NEGATIVE_FAMILIES):
        cases.append(ZooCase(f"negative_{neg.name}", "negative", neg.image, neg.image, neg.record))
    return cases


# ------------------------------------------------------------------------------------------- fitting, diagnosing


def fit_calibration(path: Path, n: int, seed: int, held: Mapping[str, str] | None, photos: Sequence[str],
                    workers: int) -> Path:  # fmt: skip
    """Fit (or reuse, when ``path`` holds the same settings) one calibration and write it to ``path``."""
    from rl.calibrate import fit, write

    models = training_models(held) if held else None
    key = json.dumps({"n": n, "seed": seed, "photos": list(photos), "models": models, "code": _code_hash()})
    stamp = path.with_suffix(".key")
    if path.is_file() and stamp.is_file() and stamp.read_text() == key:
        return path
    write(fit(n=n, seed=seed, workers=workers, models=models, photos=photos, validate=False), path)
    stamp.write_text(key)
    return path


def _code_hash() -> str:
    """A hash of the code a calibration depends on (statistics, fitting, synthesis), so a stale fit is redone."""
    import hashlib

    root = Path(__file__).resolve().parents[1]
    files = sorted([*root.glob("reasoner/measure/*.py"), root / "rl/calibrate.py", root / "rl/negatives.py",
                    *root.glob("rl/degradations/*.py")])  # fmt: skip
    return hashlib.sha256(b"".join(f.read_bytes() for f in files)).hexdigest()[:16]


@cache
def _reasoner(path: str):
    from reasoner.measure import MeasureReasoner

    return MeasureReasoner(calibration=path)


def diagnose(job: tuple[str, ZooCase]) -> dict[str, dict[str, float]]:
    """Detected kinds of one case under the calibration at ``job[0]``: kind -> severity and primary factor."""
    rec = _reasoner(job[0]).diagnose(job[1].image)
    return {d.kind: {"severity": d.severity, "factor": float(getattr(d.factors, KINDS[d.kind].parameter))}
            for d in rec.detected()}  # fmt: skip


@cache
def _context(path: str):
    from agent.backends import Backends, BackendSpec

    spec = BackendSpec("reasoner", "measure", None, {"calibration": path})
    return Backends(reasoner=spec, scorer=spec).load()


def psnr(img: np.ndarray, clean: np.ndarray) -> float:
    """PSNR (dB, RGB, capped) of the 8-bit ``img`` against ``clean``."""
    mse = float(np.mean((eight_bit(img).astype(np.float64) - clean.astype(np.float64)) ** 2))
    return PSNR_CAP if mse == 0 else min(PSNR_CAP, 10.0 * math.log10(1.0 / mse))


def restore(job: tuple[str | None, ZooCase]) -> float:
    """PSNR of the agent's restoration under the calibration at ``job[0]``, or of the oracle when it is None."""
    path, case = job
    if path is None:
        from restorer import load_restorer, plan_from_record

        out = load_restorer("classical").restore(case.image, case.record, [], plan_from_record(case.record)).pixels
    else:
        from agent.run import restore_image

        out, _ = restore_image(case.image, context=_context(path))
    return psnr(out, case.clean)


# ------------------------------------------------------------------------------------------------------- scoring


def _f1(tp: int, fp: int, fn: int) -> float | None:
    return None if tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn)


def score(cases: Sequence[ZooCase], preds: Sequence[Mapping[str, Mapping[str, float]]]) -> dict:
    """Per kind and held-out model: counts, F1, factor errors; micro-F1 per group; false-alarm rates."""
    per: dict[tuple[str, str], dict] = {}
    group = {g: {"tp": 0, "fp": 0, "fn": 0} for g in ("single", "mixed")}
    fp_kind = {k: 0 for k in KINDS}
    alarms: dict[str, list[bool]] = {"clean": [], "negative": []}
    flagged = []
    for case, pred in zip(cases, preds, strict=True):
        truth = {d.kind: d for d in case.record.detected()}
        if case.group in alarms:
            alarms[case.group].append(bool(pred))
            if pred:
                flagged.append(f"{case.name}: {sorted(pred)}")
        for k in KINDS:
            t, p = k in truth, k in pred
            if p and not t:
                fp_kind[k] += 1
            if case.group in group and (t or p):
                group[case.group]["tp" if t and p else "fp" if p else "fn"] += 1
            if not t:
                continue
            row = per.setdefault((k, case.models.get(k, "?")), {"tp": 0, "fn": 0, "err": []})
            row["tp" if p else "fn"] += 1
            if p:
                tv = float(getattr(truth[k].factors, KINDS[k].parameter))
                row["err"].append(abs(pred[k]["factor"] - tv) / max(abs(tv), 1e-6))
    rows = {}
    for (k, m), r in sorted(per.items(), key=lambda kv: (KINDS[kv[0][0]].order, kv[0][1])):
        rows[f"{k}.{m}"] = {"kind": k, "model": m, "tp": r["tp"], "fn": r["fn"],
                            "recall": r["tp"] / max(r["tp"] + r["fn"], 1),
                            "factor_error": float(np.median(r["err"])) if r["err"] else None}  # fmt: skip
    kinds = {}
    for k in KINDS:
        tp = sum(r["tp"] for (kk, _), r in per.items() if kk == k)
        fn = sum(r["fn"] for (kk, _), r in per.items() if kk == k)
        errs = [e for (kk, _), r in per.items() if kk == k for e in r["err"]]
        kinds[k] = {"tp": tp, "fn": fn, "fp": fp_kind[k], "f1": _f1(tp, fp_kind[k], fn),
                    "factor_error": float(np.median(errs)) if errs else None}  # fmt: skip
    return {
        "models": rows,
        "kinds": kinds,
        "f1_single": _f1(**group["single"]),
        "f1_mixed": _f1(**group["mixed"]),
        "clean_fp_rate": float(np.mean(alarms["clean"])) if alarms["clean"] else None,
        "negative_fp_rate": float(np.mean(alarms["negative"])) if alarms["negative"] else None,
        "flagged": flagged,
    }


def model_f1(cases: Sequence[ZooCase], preds, kind: str, model: str) -> float | None:
    """F1 of ``kind`` on the cases of the folds holding ``model`` out (false alarms counted on those folds only)."""
    folds = {c.fold for c in cases if c.models.get(kind) == model}
    tp = fp = fn = 0
    for c, p in zip(cases, preds, strict=True):
        if c.fold not in folds and c.fold is not None:
            continue
        t = kind in {d.kind for d in c.record.detected()}
        tp, fp, fn = tp + (t and kind in p), fp + (not t and kind in p), fn + (t and kind not in p)
    return _f1(tp, fp, fn)


# ----------------------------------------------------------------------------------------------------------- main


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=3000, help="samples per calibration fit")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--per-kind", type=int, default=6, help="single-kind cases per kind and fold")
    ap.add_argument("--mixed", type=int, default=12, help="mixtures per fold")
    ap.add_argument("--clean", type=int, default=30, help="clean photo crops")
    ap.add_argument("--negatives", type=int, default=30, help="clean negatives")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--folds", type=int, default=FOLDS, help=f"folds to run (all {FOLDS} by default)")
    ap.add_argument("--split", choices=("evaluation", "tuning"), default="evaluation")
    ap.add_argument("--no-restore", action="store_true", help="diagnosis only")
    ap.add_argument("--out", type=Path, default=Path("bench/out/lomo.json"))
    args = ap.parse_args(argv)
    con = Console(width=None if sys.stdout.isatty() else 170)
    t0 = time.perf_counter()
    photos = TUNING_TRAIN if args.split == "tuning" else CALIBRATION_PHOTOS
    cal_dir = args.out.with_suffix("")
    cal_dir.mkdir(parents=True, exist_ok=True)
    cals = {"in": fit_calibration(cal_dir / "all.json", args.n, args.seed, None, photos, args.workers)}
    for f in range(args.folds):
        cals[f] = fit_calibration(cal_dir / f"fold{f}.json", args.n, args.seed, held_out(f), photos, args.workers)
    fitted = time.perf_counter() - t0
    con.print(f"{len(cals)} calibrations ready in {fitted:.0f} s ({cal_dir})")

    degraded = [c for f in range(args.folds) for c in zoo_cases(args.split, args.seed, f, args.per_kind,
                                                                    args.mixed, args.size)]  # fmt: skip
    clean = clean_cases(args.split, args.seed, args.clean, args.negatives, args.size)
    # Each degraded case under its fold's calibration; clean cases under every fold's (false alarms are averaged).
    lomo_jobs = [(str(cals[c.fold]), c) for c in degraded] + [(str(cals[f]), c) for f in range(args.folds)
                                                                for c in clean]  # fmt: skip
    in_jobs = [(str(cals["in"]), c) for c in degraded + clean]
    with ProcessPoolExecutor(args.workers) as pool:
        lomo_pred = list(pool.map(diagnose, lomo_jobs, chunksize=4))
        in_pred = list(pool.map(diagnose, in_jobs, chunksize=4))
        psnrs: dict[str, list[float]] = {}
        if not args.no_restore:
            psnrs["identity"] = [psnr(c.image, c.clean) for c in degraded]
            psnrs["oracle"] = list(pool.map(restore, [(None, c) for c in degraded], chunksize=2))
            psnrs["lomo"] = list(pool.map(restore, [(str(cals[c.fold]), c) for c in degraded], chunksize=2))
            psnrs["in"] = list(pool.map(restore, [(str(cals["in"]), c) for c in degraded], chunksize=2))
    lomo_cases = [c for _, c in lomo_jobs]
    res = {"lomo": score(lomo_cases, lomo_pred), "in": score(degraded + clean, in_pred)}
    for key, cases, preds in (("lomo", lomo_cases, lomo_pred), ("in", degraded + clean, in_pred)):
        for name, row in res[key]["models"].items():
            row["f1"] = model_f1(cases, preds, row["kind"], row["model"])
    for name, row in res["lomo"]["models"].items():
        idx = [i for i, c in enumerate(degraded) if c.models.get(row["kind"]) == row["model"]]
        row["n_cases"] = len(idx)
        for method, values in psnrs.items():
            row[f"psnr_{method}"] = float(np.mean([values[i] for i in idx])) if idx else None
    if psnrs:
        res["psnr"] = {m: {g: float(np.mean([v for v, c in zip(values, degraded, strict=True) if c.group == g]))
                           for g in ("single", "mixed")} for m, values in psnrs.items()}  # fmt: skip
        res["harm_rate"] = {m: float(np.mean([v < i - 0.5 for v, i in zip(values, psnrs["identity"], strict=True)]))
                            for m, values in psnrs.items() if m != "identity"}  # fmt: skip
    res["settings"] = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    res["folds"] = {f: held_out(f) for f in range(args.folds)}
    res["n_cases"] = {g: sum(c.group == g for c in degraded + clean) for g in ("single", "mixed", "clean", "negative")}
    res["seconds"] = {"fits": round(fitted), "total": round(time.perf_counter() - t0)}
    report(con, res)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1))
    con.print(f"written {args.out} in {res['seconds']['total']} s")
    return 0


def _fmt(v: float | None, spec: str = ".2f") -> str:
    return "—" if v is None else format(v, spec)


def report(con: Console, res: dict) -> None:
    """The LOMO table (per kind and held-out model, in-distribution beside) and the summary lines."""
    restored = "psnr" in res
    t = Table(title="held-out models (LOMO) vs in-distribution: F1 | factor median rel. error | PSNR dB")
    cols = ["kind.model", "cases", "F1 lomo", "F1 in", "factor err lomo", "factor err in"]
    cols += ["identity", "oracle", "rnr lomo", "rnr in"] if restored else []
    for col in cols:
        t.add_column(col, justify="left" if col == "kind.model" else "right")
    for name, row in res["lomo"]["models"].items():
        ind = res["in"]["models"].get(name, {})
        cells = [name, str(row["tp"] + row["fn"]), _fmt(row["f1"]), _fmt(ind.get("f1")),
                 _fmt(row["factor_error"], ".1%"), _fmt(ind.get("factor_error"), ".1%")]  # fmt: skip
        if restored:
            cells += [_fmt(row.get(f"psnr_{m}")) for m in ("identity", "oracle", "lomo", "in")]
        t.add_row(*cells)
    con.print(t)
    k = Table(title="per kind (all its held-out models)")
    for col in ("kind", "F1 lomo", "F1 in", "factor err lomo", "factor err in", "FP lomo", "FP in"):
        k.add_column(col, justify="left" if col == "kind" else "right")
    for kind in KINDS:
        a, b = res["lomo"]["kinds"][kind], res["in"]["kinds"][kind]
        k.add_row(kind, _fmt(a["f1"]), _fmt(b["f1"]), _fmt(a["factor_error"], ".1%"), _fmt(b["factor_error"], ".1%"),
                  str(a["fp"]), str(b["fp"]))  # fmt: skip
    con.print(k)
    s = Table(title=f"summary (cases {res['n_cases']})")
    for col in ("metric", "lomo", "in-distribution", "target"):
        s.add_column(col, justify="left" if col == "metric" else "right")
    for key, target in TARGETS.items():
        op = "≤" if "fp" in key else "≥"
        s.add_row(key, _fmt(res["lomo"][key], ".3f"), _fmt(res["in"][key], ".3f"), f"{op} {target}")
    if restored:
        for g in ("single", "mixed"):
            s.add_row(f"PSNR {g} (identity {res['psnr']['identity'][g]:.2f}, oracle {res['psnr']['oracle'][g]:.2f})",
                      f"{res['psnr']['lomo'][g]:.2f}", f"{res['psnr']['in'][g]:.2f}", "")  # fmt: skip
        harm = res["harm_rate"]
        s.add_row("harm rate (> 0.5 dB below input)", f"{harm['lomo']:.1%}", f"{harm['in']:.1%}", "")
    con.print(s)
    con.print(f"clean cases flagged (lomo, every fold): {len(res['lomo']['flagged'])}; in-distribution: "
              f"{'; '.join(res['in']['flagged']) or 'none'}")  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main())
