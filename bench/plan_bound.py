"""What could any plan policy that reads the diagnosis gain over the hand planner? A supervised bound, on CPU.

    python bench/plan_bound.py                 (2400 training crops; about 4 minutes on 2 cores)
    python bench/plan_bound.py --train 600     (quicker, a weaker bound)

``bench/grpo_restore.py``'s GRPO policy reads the diagnosis (each detected kind's severity and confidence, the
statistics it cites) and changes the hand plan's factors; its ``ceiling`` row picks, per crop, the best one-factor
change against the clean crop. This bench asks the question between the two: can that choice be *learned* from what
the prompt shows? For every crop of the same splits (training photos under the training models; tuning photos under
the training models; held-out photos under the held-out models, mixed and single) it restores the hand plan and
every one-factor change (each diagnosed kind's factor 0, 0.5 or 1.5) and records each change's PSNR gain over the
hand plan. A gradient-boosted regressor (scikit-learn) fitted on the training crops reads the diagnosis and the
change and predicts that gain; the policy takes the best predicted change when the prediction clears ``--min``,
else the hand plan. It is given per-change supervision that GRPO only samples, so what it cannot gain on a split,
a GRPO policy with the same prompt and actions is not expected to either.

Prints per split the policy's mean gain over the hand plan (all crops, those with nothing planned count 0), the
ceiling's, and how many crops the policy made worse; the last line is
``held-out mixed: policy X dB over the hand plan (ceiling Y), tuning Z``. Writes ``<out>/plan_bound.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from bench.grpo_restore import add_split_arguments, evaluation_cases, training_cases  # noqa: E402
from reasoner.kinds import KINDS  # noqa: E402

KIND_LIST = list(KINDS)


def change_table(case) -> dict | None:
    """The hand plan's PSNR and each one-factor change's gain over it, with the diagnosis the policy reads."""
    from reasoner import load_reasoner
    from restorer import load_restorer, plan_from_record
    from restorer.metrics import psnr
    from rl.plan_grpo import one_factor_scores, plan_psnr
    from rl.plan_policy import record_stats

    u8, clean, _truth = case
    record = load_reasoner("measure").diagnose(u8.astype(np.float32) / 255.0)
    hand = plan_from_record(record)
    if not hand.operations:
        return None
    restorer = load_restorer("classical")
    base = plan_psnr(u8.astype(np.float32) / 255.0, clean, record, hand, restorer)
    changes = {}
    for factors, score in one_factor_scores(u8, clean, record, hand, restorer):
        i = next(k for k, f in enumerate(factors) if f != 1.0)
        changes[f"{hand.operations[i].kind}|{factors[i]}"] = score - base
    feats = {f"severity_{d.kind}": d.severity for d in record.detected()}
    feats |= {f"confidence_{d.kind}": d.confidence for d in record.detected()}
    feats |= {f"stat_{k}": v for k, v in record_stats(record).items()}
    return {"hand": base, "input": psnr(clean, u8), "changes": changes, "features": feats}


def tables(cases, pool) -> list[dict | None]:
    """:func:`change_table` of every crop (None where nothing is planned)."""
    return list(pool.map(change_table, cases, chunksize=4))


def row(features: dict, names: list[str], change: str) -> list[float]:
    """The regressor's input: the diagnosis (NaN for what it does not have) and the change (kind, factor)."""
    kind, factor = change.split("|")
    onehot = [1.0 if kind == k else 0.0 for k in KIND_LIST]
    return [features.get(n, np.nan) for n in names] + [float(KIND_LIST.index(kind)), float(factor), *onehot]


def main() -> None:
    """Build the tables, fit, evaluate; print the table and the last line."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_split_arguments(ap, 2400, "training crops (1-3 kinds)")
    ap.add_argument("--min", type=float, default=0.25, help="least predicted gain (dB) to leave the hand plan")
    ap.add_argument("--out", type=Path, default=Path("bench/out"))
    args = ap.parse_args()
    from sklearn.ensemble import HistGradientBoostingRegressor

    t0 = time.time()
    size = args.size
    tuning = evaluation_cases(True, args.eval_mixed, 0, size)
    held_out = evaluation_cases(False, args.eval_mixed, args.eval_single, size)
    splits = {"tuning mixed": tuning["mixed"], "held-out mixed": held_out["mixed"],
              "held-out single": held_out["single"]}  # fmt: skip
    with ProcessPoolExecutor(2) as pool:
        train = [t for t in tables(training_cases(args.train, size), pool) if t]
        evaluated = {name: tables(cases, pool) for name, cases in splits.items()}
    names = sorted({n for t in train for n in t["features"]})
    x = np.array([row(t["features"], names, c) for t in train for c in t["changes"]], np.float64)
    y = np.array([g for t in train for g in t["changes"].values()], np.float64)
    model = HistGradientBoostingRegressor(
        loss="absolute_error", max_iter=300, learning_rate=0.05, max_leaf_nodes=15, min_samples_leaf=20, random_state=0
    ).fit(x, y)
    print(f"{len(train)} training crops with a plan, {len(y)} one-factor changes; fitted in {time.time() - t0:.0f} s")
    print(f"{'split':16}{'crops':>6}{'policy vs hand':>16}{'ceiling':>9}{'changed':>9}{'made worse':>12}")
    report: dict = {"train_crops": len(train), "changes": len(y), "min_db": args.min, "splits": {}}
    for name, rows in evaluated.items():
        gains, ceiling, changed = [], [], 0
        for t in rows:
            if t is None:
                gains.append(0.0)
                ceiling.append(0.0)
                continue
            options = list(t["changes"])
            predicted = model.predict(np.array([row(t["features"], names, c) for c in options], np.float64))
            best = int(np.argmax(predicted))
            take = predicted[best] > args.min
            changed += int(take)
            gains.append(t["changes"][options[best]] if take else 0.0)
            ceiling.append(max(0.0, *t["changes"].values()))
        g = np.array(gains)
        entry = {"crops": len(rows), "policy_db": float(g.mean()), "ceiling_db": float(np.mean(ceiling)),
                 "changed": changed, "made_worse": int((g < -0.05).sum())}  # fmt: skip
        report["splits"][name] = entry
        print(f"{name:16}{len(rows):6d}{entry['policy_db']:+16.2f}{entry['ceiling_db']:+9.2f}{changed:9d}"
              f"{entry['made_worse']:12d}")  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    tmp = args.out / ".plan_bound.json.tmp"
    tmp.write_text(json.dumps(report, indent=1) + "\n")
    tmp.replace(args.out / "plan_bound.json")
    held, tuning = report["splits"]["held-out mixed"], report["splits"]["tuning mixed"]
    print(f"wall {time.time() - t0:.0f} s")
    print(f"held-out mixed: policy {held['policy_db']:+.2f} dB over the hand plan "
          f"(ceiling {held['ceiling_db']:+.2f}), tuning {tuning['policy_db']:+.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
