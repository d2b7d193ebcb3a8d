"""Diagnosis accuracy benchmark on held-out real photos with synthesised ground truth.

    python bench/diagnose.py [--reasoner measure] [--model PATH] [--seed 0] [--out bench/out/diagnose.json]

Prints per-kind precision/recall/F1, severity MAE on correctly detected kinds, clean false-positive rate, micro-F1
on single-kind and mixed cases, the median relative error of each physical factor on correctly detected kinds, and
the median diagnosis time of a 512x512 image on one core. Cases are quantised to 8 bits first, as users' photos are.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from reasoner import KINDS, load_reasoner  # noqa: E402
from reasoner.imageio import to_uint8  # noqa: E402
from rl.cases import evaluation_cases  # noqa: E402

#: Continuous factors whose estimates are scored (relative error against the ground truth), as kind.factor.
FACTORS = (
    "noise.sigma",
    "blur.sigma",
    "motion_blur.length",
    "haze.transmission",
    "low_light.exposure",
    "low_light.gamma",
    "jpeg.quality",
    "rain.density",
    "low_resolution.scale",
)
TARGETS = {"f1_single": 0.85, "f1_mixed": 0.75, "severity_mae": 0.15, "clean_fp_rate": 0.10, "median_ms_512": 150.0}


def _f1(tp: int, fp: int, fn: int) -> float:
    return 2 * tp / max(2 * tp + fp + fn, 1)


def evaluate(reasoner, cases) -> dict:
    counts = {k: {"tp": 0, "fp": 0, "fn": 0} for k in KINDS}
    group_counts = {g: {"tp": 0, "fp": 0, "fn": 0} for g in ("single", "mixed")}
    sev_err = {k: [] for k in KINDS}
    fac_err: dict[str, list[float]] = {f: [] for f in FACTORS}
    kernel_ok: list[bool] = []
    clean_fp, n_clean, rows = 0, 0, []
    for case in cases:
        pred = reasoner.diagnose(to_uint8(case.image))
        true_entries = {d.kind: d for d in case.record.detected()}
        for d in pred.detected():
            t = true_entries.get(d.kind)
            if t is None:
                continue
            for f in FACTORS:
                kind, name = f.split(".")
                if kind == d.kind:
                    tv = float(getattr(t.factors, name))
                    fac_err[f].append(abs(float(getattr(d.factors, name)) - tv) / max(abs(tv), 1e-6))
            if d.kind == "blur":
                kernel_ok.append(d.factors.kernel == t.factors.kernel)
        truth = {d.kind: d.severity for d in case.record.detected()}
        found = {d.kind: d.severity for d in pred.detected()}
        for k in KINDS:
            t, p = k in truth, k in found
            key = "tp" if t and p else "fp" if p else "fn" if t else None
            if key:
                counts[k][key] += 1
                if case.group in group_counts:
                    group_counts[case.group][key] += 1
            if t and p:
                sev_err[k].append(abs(found[k] - truth[k]))
        if case.group == "clean":
            n_clean += 1
            clean_fp += bool(found)
        rows.append({"case": case.name, "group": case.group, "truth": truth, "predicted": found})
    per_kind = {}
    for k, c in counts.items():
        prec = c["tp"] / max(c["tp"] + c["fp"], 1)
        rec = c["tp"] / max(c["tp"] + c["fn"], 1)
        per_kind[k] = {
            **c,
            "precision": prec,
            "recall": rec,
            "f1": _f1(**c),
            "severity_mae": float(np.mean(sev_err[k])) if sev_err[k] else None,
        }
    all_err = [e for v in sev_err.values() for e in v]
    return {
        "per_kind": per_kind,
        "f1_single": _f1(**group_counts["single"]),
        "f1_mixed": _f1(**group_counts["mixed"]),
        "severity_mae": float(np.mean(all_err)) if all_err else None,
        "clean_fp_rate": clean_fp / max(n_clean, 1),
        "factor_median_rel_error": {f: float(np.median(v)) if v else None for f, v in fac_err.items()},
        "factor_n": {f: len(v) for f, v in fac_err.items()},
        "blur_kernel_accuracy": float(np.mean(kernel_ok)) if kernel_ok else None,
        "cases": rows,
    }


def time_512(reasoner, cases, n: int = 30) -> float:
    """Median ms to diagnose a 512x512 image (cases resized to 512x512; content does not change the cost much)."""
    times = []
    for case in cases[:n]:
        img = to_uint8(cv2.resize(case.image, (512, 512), interpolation=cv2.INTER_AREA))
        t = time.perf_counter()
        reasoner.diagnose(img)
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reasoner", default="measure")
    ap.add_argument("--model", default=None, help="Model id or path passed to model-backed reasoners.")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--per-kind", type=int, default=12)
    ap.add_argument("--mixed", type=int, default=40)
    ap.add_argument("--clean", type=int, default=15)
    ap.add_argument("--out", type=Path, default=Path("bench/out/diagnose.json"))
    args = ap.parse_args(argv)

    kwargs = {"model": args.model} if args.model else {}
    reasoner = load_reasoner(args.reasoner, **kwargs)
    cases = evaluation_cases(args.seed, args.per_kind, args.mixed, args.clean)
    res = evaluate(reasoner, cases)
    res["median_ms_512"] = time_512(reasoner, cases)
    res["n_cases"] = {g: sum(c.group == g for c in cases) for g in ("clean", "single", "mixed")}
    res["reasoner"] = args.reasoner

    con = Console()
    t = Table(title=f"diagnosis accuracy, reasoner={args.reasoner}, cases={res['n_cases']}")
    for col in ("kind", "TP", "FP", "FN", "precision", "recall", "F1", "severity MAE"):
        t.add_column(col, justify="right" if col != "kind" else "left")
    for k, v in res["per_kind"].items():
        mae = "—" if v["severity_mae"] is None else f"{v['severity_mae']:.3f}"
        t.add_row(
            k,
            str(v["tp"]),
            str(v["fp"]),
            str(v["fn"]),
            f"{v['precision']:.2f}",
            f"{v['recall']:.2f}",
            f"{v['f1']:.2f}",
            mae,
        )
    con.print(t)
    f = Table(title="physical factors on correctly detected kinds (median relative error)")
    for col in ("factor", "n", "median rel. error"):
        f.add_column(col, justify="left" if col == "factor" else "right")
    for name, err in res["factor_median_rel_error"].items():
        f.add_row(name, str(res["factor_n"][name]), "—" if err is None else f"{err:.1%}")
    con.print(f)
    if res["blur_kernel_accuracy"] is not None:
        con.print(f"blur kernel shape (gaussian/defocus) right: {res['blur_kernel_accuracy']:.0%}")
    s = Table(title="targets")
    for col in ("metric", "measured", "target", "met"):
        s.add_column(col)
    for key, target in TARGETS.items():
        val = res[key]
        ok = val is not None and (val >= target if key.startswith("f1") else val <= target)
        s.add_row(
            key,
            f"{val:.3f}" if val is not None else "—",
            f"{'≥' if key.startswith('f1') else '≤'} {target}",
            "yes" if ok else "NO",
        )
    con.print(s)
    flagged = [
        f"{r['case']}: {sorted(r['predicted'])}" for r in res["cases"] if r["group"] == "clean" and r["predicted"]
    ]
    con.print(f"clean cases flagged: {len(flagged)} " + ("; ".join(flagged) if flagged else ""))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1))
    con.print(f"written {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
