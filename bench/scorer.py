"""How honest is the artefact-aware scorer on photos and degradation models it was not fitted on?

    python bench/scorer.py [--train 1200] [--eval 300] [--seed 0] [--out bench/out/scorer.json]

1. Fit a quality model (``rl.calibrate_quality``) on attempts made on the calibration photos with every zoo model
   EXCEPT one held-out model per kind (:data:`HOLDOUT`: MiO's, the protocol AgenticIR evaluates on, and double JPEG),
   so the shipped model's training set (the whole zoo) is not what is measured.
2. Make attempts, right and wrong (``rl.quality_data``: oracle, diagnosed, wrong strengths and factors, a kind that
   is not there, simulated generative failures), on the HELD-OUT photos (``rl.photos.EVALUATION_PHOTOS``), degraded
   (a) by the held-out models and (b) by the training models, and compare the scorer's estimate with the true PSNR
   change against the clean crop.
3. Print, per split: Spearman correlation of estimated vs true change over all attempts, mean absolute error, the
   share of truly-worse attempts (> 0.5 dB below the input) the policy rejects, the share of truly-better ones
   (> 0.5 dB above) it keeps, and the share of clean inputs' attempts it keeps (should be none that harm). The
   decisions are ``agent.policy.judge_quality`` with default Settings, as the agent makes them.
4. Write JSON and a contact sheet (``bench/out/scorer_misjudged.png``) of the 10 attempts the scorer misjudged most
   (largest error on the wrong side of the decision first): input | attempt | clean, 100% crops, labelled.

The end-to-end harm rate of ``rnr`` itself comes from ``bench/protocols.py`` (its "rnr harm" column); run it with
``RNR_QUALITY_MODEL=bench/out/scorer_model.json`` to measure the agent with this held-out-fitted scorer.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2  # noqa: E402

cv2.setNumThreads(1)  # forked pool workers deadlock on an inherited OpenCV thread pool

import numpy as np  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from bench.protocols import HELD_OUT_MODELS as HOLDOUT  # noqa: E402  (one per kind: what the scorer never saw)

HARM_DB = 0.5


def _pools():
    from rl.degradations import MODELS

    train = {k: [m for m in sorted(MODELS[k]) if m != HOLDOUT[k]] for k in MODELS}
    held = {k: [HOLDOUT[k]] for k in MODELS}
    return train, held


def _spearman(a, b) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def evaluate(rows: list[dict], model) -> dict:
    """Estimates and decisions for attempt rows; the metrics of the module docstring."""
    from agent.policy import judge_quality
    from agent.state import Settings
    from agent.trace import QualityTrace
    from reasoner.quality import implausible
    from reasoner.quality.artefacts import find_artefacts

    settings = Settings()
    est, true, keep = [], [], []
    for r in rows:
        gain, spread, spread_log = model.ensemble(r)
        _, total = model.predict(r)
        kinds = r["kinds"].split(",") if r["kinds"] else []
        arts = find_artefacts(r, kinds, model.meta.get("artefact_thresholds"))
        q = QualityTrace(gain_db=gain, uncertainty_db=total, spread_db=spread, spread_log=spread_log, artefacts=arts)
        verdict, _ = judge_quality(r["structure"], q, settings, implausible(r, kinds), kinds)
        r["estimate"], r["spread"], r["verdict"] = gain, spread, verdict
        est.append(gain)
        true.append(r["dpsnr"])
        keep.append(verdict == "better")
    est, true, keep = np.array(est), np.array(true), np.array(keep)
    worse, better = true < -HARM_DB, true > HARM_DB
    clean = np.array([not r["degradations"] for r in rows])
    return {
        "attempts": len(rows),
        "spearman": round(_spearman(est, true), 4),
        "mae_db": round(float(np.mean(np.abs(est - np.clip(true, -15, 15)))), 3),
        "truly_worse": int(worse.sum()),
        "worse_rejected": round(float(np.mean(~keep[worse])), 4) if worse.any() else None,
        "truly_better": int(better.sum()),
        "better_kept": round(float(np.mean(keep[better])), 4) if better.any() else None,
        "kept_and_harmful": int((keep & worse).sum()),
        "clean_attempts_kept": int((keep & clean).sum()),
        "clean_attempts_kept_harmful": int((keep & clean & worse).sum()),
    }


def contact_sheet(rows: list[dict], path: Path, n: int = 10, tile: int = 200) -> None:
    """The ``n`` attempts misjudged most: the wrong-side decisions first, by how far the estimate was off."""

    def badness(r):
        wrong = (r["verdict"] == "better" and r["dpsnr"] < -HARM_DB) or (r["verdict"] != "better" and r["dpsnr"] > 3)
        return (wrong, abs(r["estimate"] - np.clip(r["dpsnr"], -15, 15)))

    worst = sorted((r for r in rows if "images" in r), key=badness, reverse=True)[:n]
    lines = []
    for r in worst:
        crops = []
        for img in r["images"]:
            h, w = img.shape[:2]
            y0, x0 = max(0, (h - tile) // 2), max(0, (w - tile) // 2)
            c = np.zeros((tile, tile, 3), np.float32)
            part = img[y0 : y0 + tile, x0 : x0 + tile]
            c[: part.shape[0], : part.shape[1]] = part
            crops.append(c)
        row = (np.concatenate(crops, axis=1) * 255).round().astype(np.uint8)
        bar = np.full((28, row.shape[1], 3), 255, np.uint8)
        what = r["failure"] or r["kinds"] or "-"
        text = f"{r['source']} {what} | true {r['dpsnr']:+.1f} dB, est {r['estimate']:+.1f} -> {r['verdict']}"
        cv2.putText(bar, text[:110], (4, 19), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 0, 0), 1, cv2.LINE_AA)
        lines.append(np.concatenate([bar, row[..., ::-1]], axis=0))
    if lines:
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), np.concatenate(lines, axis=0))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--train", type=int, default=1200, help="Training cases (calibration photos, non-held-out models)."
    )
    ap.add_argument("--eval", type=int, default=300, help="Evaluation cases per split (held-out photos).")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--model", help="Evaluate this quality model instead of fitting one without the held-out models.")
    ap.add_argument("--out", default="bench/out/scorer.json")
    args = ap.parse_args(argv)

    from reasoner.quality.model import load_model
    from rl.calibrate_quality import fit_rows, write
    from rl.photos import EVALUATION_PHOTOS
    from rl.quality_data import build

    con = Console()
    t0 = time.perf_counter()
    train_pool, held_pool = _pools()
    out = Path(args.out)
    if args.model:
        model = load_model(args.model)
    else:
        rows = build(args.train, seed=args.seed + 100, workers=args.workers, model_pool=train_pool)
        model = fit_rows(rows, seed=args.seed)
        write(model, out.with_name("scorer_model.json"))
    held = ", ".join(f"{k}:{v}" for k, v in HOLDOUT.items())
    con.print(f"model: {'given' if args.model else 'fitted without ' + held} ({time.perf_counter() - t0:.0f} s)")
    results, held_rows = {}, []
    for split, pool in (("held-out models", held_pool), ("training models", train_pool)):
        rows = build(args.eval, seed=args.seed + 200, workers=args.workers, model_pool=pool,
                     photos=EVALUATION_PHOTOS, keep_images=split == "held-out models")  # fmt: skip
        results[split] = evaluate(rows, model)
        if split == "held-out models":
            held_rows = rows
    table = Table(title="Artefact-aware scorer on held-out photos (estimated vs true PSNR change per attempt)")
    for col in ("split", "attempts", "Spearman", "MAE dB", "truly worse", "rejected", "truly better", "kept",
                "kept & harmful", "clean kept"):  # fmt: skip
        table.add_column(col, justify="right")
    for split, r in results.items():
        table.add_row(split, str(r["attempts"]), f"{r['spearman']:.3f}", f"{r['mae_db']:.2f}", str(r["truly_worse"]),
                      f"{r['worse_rejected']:.1%}", str(r["truly_better"]), f"{r['better_kept']:.1%}",
                      str(r["kept_and_harmful"]), str(r["clean_attempts_kept"]))  # fmt: skip
    con.print(table)
    contact_sheet(held_rows, out.with_name("scorer_misjudged.png"))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"holdout": HOLDOUT, "train_cases": args.train, "eval_cases": args.eval,
                               "seed": args.seed, "results": results,
                               "seconds": round(time.perf_counter() - t0, 1)}, indent=2) + "\n")  # fmt: skip
    con.print(f"wrote {out} and {out.with_name('scorer_misjudged.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
