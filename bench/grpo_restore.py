"""Does GRPO make restoration better? A plan policy against the hand planner, on held-out photos and models, on CPU.

    python bench/grpo_restore.py                  (warm start, GRPO, held-out evaluation; ~25 min on 2 cores)
    python bench/grpo_restore.py --tune ...       (evaluate on the tuning split instead: for choosing settings)

The policy (:mod:`rl.plan_policy`) is a tiny local Qwen3 causal LM (:mod:`rl.tiny_text`) that reads the ``measure``
diagnosis of a crop (each detected kind with its severity and confidence as one digit, and the statistics the
diagnosis cites, each as its decile among the warm-start crops) and writes the plan as one factor per diagnosed kind
on the hand planner's strength (``1.25 0.00``: the first a quarter stronger, the second skipped), which expands into
the plan schema's JSON and runs on the classical restorer. The hand planner runs every detected kind in restoration
order at the strength its confidence gives. The warm start is supervised on the hand planner's plans
(``--warm-from hand``: every factor 1, so the warm start is the hand planner up to malformed replies), on the
oracle's (``--warm-from oracle``: the diagnosed kinds that are really there at strength 1, the others skipped) or
on each warm-start crop's ceiling plan (``--warm-from ceiling``: the best one-factor change against the clean crop,
see ``ceiling`` below; :func:`rl.plan_grpo.ceiling_target`);
GRPO (TRL's ``GRPOTrainer`` through :func:`rl.plan_grpo.train_plan_grpo`) then trains it with the recipe's rewards
(``rl/recipes/grpo_restore.yaml``: full-reference PSNR gain, the artefact-aware scorer's estimated gain, the
fidelity guard, format).

Splits. Photos: training crops come from the calibration photos less the tuning scenes (chelsea, brick, moon),
tuning crops from those three, held-out crops from :data:`rl.photos.EVALUATION_PHOTOS`. Degradation models:
training and tuning crops draw every kind from the zoo's models less :data:`HELD_OUT_MODELS` (the MiO/AgenticIR
family where the zoo has it: haze, rain, low resolution and low light ``mio``, motion ``trail``, defocus
``soft_disk``, Poisson noise; double JPEG for jpeg), held-out crops draw every kind from those. Mixed crops hold 2-3
kinds, single crops one. Every crop is quantised to 8 bits before it is diagnosed.

Evaluation: each crop is restored once with each plan (no retries: the agent's re-scoring and roll-back would
apply to every planner alike) and scored by PSNR against the clean crop; harm is the share of crops whose output
is below the degraded input. Policies plan greedily; a reply that does not parse falls back to the hand plan, as in
the agent, and is counted. ``oracle`` is the classical plan of the ground truth (what a perfect diagnosis gives);
``ceiling`` is, per crop, the best of the hand plan and the plans that change one diagnosed kind's factor to 0, 0.5
or 1.5 (chosen against the clean crop: an upper bound on what a policy that corrects one factor can gain).

Writes ``<out>/grpo_restore.json`` and ``<out>/grpo_restore.png`` (per-component training reward per step;
``grpo_restore_tune.*`` with ``--tune``). The last line printed is
``held-out mixed PSNR: hand X start Y grpo Z (harm hand A% grpo B%)`` (the tuning split's with ``--tune``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from rl.degradations import MODELS  # noqa: E402
from rl.photos import CALIBRATION_PHOTOS, EVALUATION_PHOTOS  # noqa: E402

#: The held-out degradation model of each kind: the MiO / AgenticIR protocol's where the zoo has one.
HELD_OUT_MODELS: dict[str, str] = {
    "haze": "mio", "rain": "mio", "motion_blur": "trail", "blur": "soft_disk", "low_resolution": "mio",
    "low_light": "mio", "noise": "poisson", "jpeg": "double",
}  # fmt: skip
#: Every other model of each kind: what training and tuning crops draw from.
TRAIN_MODELS: dict[str, tuple[str, ...]] = {
    k: tuple(n for n in names if n != HELD_OUT_MODELS[k]) for k, names in MODELS.items()
}
TUNING_PHOTOS: tuple[str, ...] = ("chelsea", "brick", "moon")
TRAIN_PHOTOS: tuple[str, ...] = tuple(p for p in CALIBRATION_PHOTOS if p not in TUNING_PHOTOS)
REWARD_NAMES = ("format", "psnr_gain", "quality_gain", "fidelity")
POLICIES = ("input", "hand", "start", "grpo", "ceiling", "oracle")


def make_cases(photos, models, n: int, seed: int, size: int, n_kinds) -> list[tuple]:
    """``n`` crops ``(degraded uint8, clean uint8, truth record)`` of ``photos``, kinds drawn from ``models``."""
    from reasoner.imageio import to_uint8
    from rl.degradations import apply, sample_ops
    from rl.ground_truth import ground_truth
    from rl.photos import load_photo, random_crop

    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        clean = to_uint8(random_crop(load_photo(photos[i % len(photos)]), rng, size))
        ops = sample_ops(rng, n_kinds=n_kinds, models=models)
        degraded = to_uint8(apply(clean.astype(np.float32) / 255.0, ops))
        out.append((degraded, clean, ground_truth(ops, degraded.astype(np.float32) / 255.0)))
    return out


def add_split_arguments(ap: argparse.ArgumentParser, train: int, train_help: str) -> None:
    """The crop counts and size of the splits (:func:`training_cases`, :func:`evaluation_cases`), shared with
    ``bench/plan_bound.py`` so both benchmarks draw the same crops."""
    ap.add_argument("--train", type=int, default=train, help=train_help)
    ap.add_argument("--eval-mixed", type=int, default=80, help="evaluated mixed crops (2-3 kinds) per split")
    ap.add_argument("--eval-single", type=int, default=32, help="evaluated single-kind crops")
    ap.add_argument("--size", type=int, default=128, help="crop side (px)")


def training_cases(n: int, size: int, seed: int = 0) -> list[tuple]:
    """``n`` crops of the training photos with 1-3 kinds from the training models."""
    return make_cases(TRAIN_PHOTOS, TRAIN_MODELS, n, seed, size, (1, 3))


def evaluation_split(tune: bool) -> tuple[tuple[str, ...], dict]:
    """The photos and models evaluated on: the tuning photos under the training models (``tune``), or the held-out
    photos under the held-out models."""
    return (TUNING_PHOTOS, TRAIN_MODELS) if tune else (EVALUATION_PHOTOS, HELD_OUT_MODELS)


def evaluation_cases(tune: bool, n_mixed: int, n_single: int, size: int) -> dict[str, list[tuple]]:
    """``{"mixed": 2-3 kinds, "single": one kind}`` crops of :func:`evaluation_split`."""
    photos, models = evaluation_split(tune)
    return {"mixed": make_cases(photos, models, n_mixed, 11, size, (2, 3)),
            "single": make_cases(photos, models, n_single, 12, size, 1)}  # fmt: skip


def evaluate(cases, rows, policies: dict[str, object], say) -> dict[str, dict]:
    """PSNR per crop of every planner on ``rows`` (plan_dataset with keep_empty), with unparsable counts."""
    from reasoner.schema import DiagnosisRecord
    from restorer import load_restorer, plan_from_record
    from restorer.metrics import psnr
    from restorer.plan import Plan
    from rl.plan_grpo import best_one_factor_change, plan_psnr
    from rl.plan_policy import parse_completion, record_stats, to_plan

    restorer = load_restorer("classical")
    hands = [Plan.model_validate_json(h) for h in rows["hand"]]
    records = [DiagnosisRecord.model_validate_json(r) for r in rows["record"]]
    plans: dict[str, list] = {"hand": hands}
    bad: dict[str, int] = {}
    for name, policy in policies.items():
        todo = [i for i, h in enumerate(hands) if h.operations]
        stats = [record_stats(records[i]) for i in todo]
        replies = policy.replies([hands[i] for i in todo], stats) if todo else []
        chosen, bad[name] = list(hands), 0
        for i, reply in zip(todo, replies, strict=True):
            parsed = parse_completion(reply[0], hands[i])
            if parsed is None:
                bad[name] += 1
            else:
                chosen[i] = to_plan(parsed, hands[i])
        plans[name] = chosen
    out: dict[str, dict] = {}
    for j, (degraded, clean, truth) in enumerate(cases):
        src = degraded.astype(np.float32) / 255.0
        scores = {"input": psnr(clean, degraded)}
        for name, chosen in plans.items():
            scores[name] = plan_psnr(src, clean, records[j], chosen[j], restorer)
        scores["ceiling"] = best_one_factor_change(degraded, clean, records[j], hands[j], restorer, scores["hand"])[1]
        scores["oracle"] = plan_psnr(src, clean, truth, plan_from_record(truth), restorer)
        kinds = [d.kind for d in truth.detected()]
        out[str(j)] = {"kinds": kinds, "psnr": scores, "plans": {k: _short(v[j]) for k, v in plans.items()}}
    say(f"evaluated {len(cases)} crops; unparsable replies: {bad}")
    return {"cases": out, "unparsable": bad}


def _short(plan) -> str:
    from rl.plan_policy import compact_of

    return compact_of(plan)


def summary(result: dict) -> dict[str, dict]:
    """Mean PSNR, mean gain over the input, and harm rate per planner."""
    cases = list(result["cases"].values())
    table = {}
    for name in POLICIES:
        if name not in cases[0]["psnr"]:
            continue
        vals = np.array([c["psnr"][name] for c in cases])
        inp = np.array([c["psnr"]["input"] for c in cases])
        table[name] = {
            "psnr": float(np.mean(vals)),
            "gain": float(np.mean(vals - inp)),
            "harm": float(np.mean(vals < inp - 1e-9)),
            "n": len(cases),
        }
    return table


def draw(history: list[dict], path: Path) -> None:
    """One panel per reward component and the total: per-step training means (thin) and a 10-step mean (thick)."""
    from PIL import Image, ImageDraw

    names = [*REWARD_NAMES, "total"]
    pw, ph, pad = 360, 240, 40
    img = Image.new("RGB", (pw * 3, ph * 2), "white")
    d = ImageDraw.Draw(img)
    for i, name in enumerate(names):
        x0, y0 = (i % 3) * pw, (i // 3) * ph
        key = "reward" if name == "total" else f"rewards/{name}/mean"
        ys = [(h["step"], h[key]) for h in history if h.get(key) is not None and np.isfinite(h[key])]
        vals = [v for _, v in ys]
        lo, hi = (min(vals), max(vals)) if vals else (0.0, 1.0)
        lo, hi = (lo - 0.05, hi + 0.05) if hi - lo < 1e-6 else (lo, hi)
        n = max((s for s, _ in ys), default=1)

        def pt(step, v, x0=x0, y0=y0, lo=lo, hi=hi, n=n):
            x = x0 + pad + (pw - 2 * pad) * step / max(n, 1)
            return x, y0 + ph - pad - (ph - 2 * pad) * (v - lo) / (hi - lo)

        d.rectangle([x0 + pad, y0 + pad, x0 + pw - pad, y0 + ph - pad], outline="grey")
        d.text((x0 + pad, y0 + 10), f"{name} (training, per GRPO step)", fill="black")
        d.text((x0 + 4, y0 + pad - 6), f"{hi:.2f}", fill="grey")
        d.text((x0 + 4, y0 + ph - pad - 6), f"{lo:.2f}", fill="grey")
        d.text((x0 + pw - pad - 20, y0 + ph - pad + 4), f"{n}", fill="grey")
        if len(ys) > 1:
            d.line([pt(s, v) for s, v in ys], fill=(150, 180, 230), width=1)
            smooth = [(s, float(np.mean([v for _, v in ys[max(0, j - 9) : j + 1]]))) for j, (s, _v) in enumerate(ys)]
            d.line([pt(s, v) for s, v in smooth], fill=(20, 40, 160), width=3)
    tmp = path.with_name(f".{path.name}")
    img.save(tmp, format="PNG")
    tmp.replace(path)


def main() -> None:
    """Run the benchmark; write JSON and PNG; print the table and the final line."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_split_arguments(ap, 300, "crops for the supervised warm start")
    ap.add_argument("--grpo-train", type=int, default=500, help="other crops of the training photos, for GRPO")
    ap.add_argument("--warm-from", choices=("hand", "oracle", "ceiling"), default="hand")
    ap.add_argument("--sft-steps", type=int, default=200)
    ap.add_argument("--sft-lr", type=float, default=1e-3)
    ap.add_argument("--sft-batch", type=int, default=16)
    ap.add_argument("--warm-noise", type=float, default=0.0, help="share of warm-start target factors resampled")
    ap.add_argument("--grpo-steps", type=int, default=200)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--beta", type=float, default=0.0, help="KL coefficient against the warm start")
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--generations", type=int, default=8, help="completions per prompt (GRPO group size)")
    ap.add_argument("--prompts-per-step", type=int, default=4)
    ap.add_argument("--hidden", type=int, default=128, help="policy hidden size (2 layers)")
    ap.add_argument("--no-stats", dest="stats", action="store_false", help="prompt with the diagnosis only")
    ap.add_argument("--tune", action="store_true", help="evaluate on the tuning split, not the held-out one")
    ap.add_argument("--keep", action="store_true", help="keep the work folder (warm start and GRPO policies)")
    ap.add_argument("--out", type=Path, default=Path("bench/out"))
    args = ap.parse_args()

    import torch
    from transformers.utils import logging as hf_logging

    from reasoner import load_reasoner
    from rl.plan_grpo import (
        WarmStart,
        diagnose_items,
        load_recipe_yaml,
        plan_dataset,
        train_plan_grpo,
        training_bins,
        warm_start,
    )
    from rl.plan_policy import PlanPolicy
    from rl.tiny_text import build_tiny_text_policy
    from rl.training import read_manifest

    torch.set_num_threads(1)
    hf_logging.disable_progress_bar()
    t0 = time.time()

    def say(msg: str) -> None:
        print(f"[{time.time() - t0:6.1f}s] {msg}", file=sys.stderr, flush=True)

    work = Path(tempfile.mkdtemp(prefix="grpo_restore."))
    say(f"work folder {work}")
    measure = load_reasoner("measure")
    size = args.size
    train_diag = diagnose_items(training_cases(args.train, size), measure)
    grpo_diag = diagnose_items(training_cases(args.grpo_train, size, seed=3), measure)
    # Statistic deciles from the warm-start crops only, reused as they are for every other crop.
    bins = training_bins(train_diag) if args.stats else None
    ceiling = args.warm_from == "ceiling"  # the warm-start crops restored with every one-factor change
    train_rows, grpo_rows = plan_dataset(train_diag, bins=bins, ceiling=ceiling), plan_dataset(grpo_diag, bins=bins)
    split = "tuning" if args.tune else "held-out"
    photos = evaluation_split(args.tune)[0]
    groups = evaluation_cases(args.tune, args.eval_mixed, args.eval_single, size)
    eval_rows = {g: plan_dataset(diagnose_items(c, measure), bins=bins, keep_empty=True) for g, c in groups.items()}
    say(f"data: {len(train_rows)} warm-start and {len(grpo_rows)} GRPO prompts (crops with something diagnosed), "
        f"{split}: {len(groups['mixed'])} mixed and {len(groups['single'])} single crops of {size}px")  # fmt: skip

    base = build_tiny_text_policy(work / "base", seed=0, hidden=args.hidden, layers=2)
    ws = WarmStart(target=args.warm_from, steps=args.sft_steps, learning_rate=args.sft_lr, batch=args.sft_batch,
                   noise=args.warm_noise)  # fmt: skip
    warm = warm_start(base, train_rows, work / "warm", ws, bins=bins, say=say)
    t_warm = time.time() - t0
    recipe = load_recipe_yaml(
        "grpo_restore.yaml",
        {
            "model": str(warm), "dataset": "(in memory)", "output_dir": str(work / "grpo"), "overwrite": True,
            "max_steps": args.grpo_steps, "learning_rate": args.lr, "beta": args.beta,
            "temperature": args.temperature, "num_generations": args.generations, "stats": args.stats,
            "per_device_train_batch_size": args.generations * args.prompts_per_step, "warm_start": ws.model_dump(),
        },
    )  # fmt: skip
    t1 = time.time()
    out = train_plan_grpo(recipe, log=say, train=grpo_rows, bins=bins)
    grpo_s = time.time() - t1
    policies = {"start": PlanPolicy(warm), "grpo": PlanPolicy(out)}
    results = {g: evaluate(groups[g], eval_rows[g], policies, say) for g in groups}
    tables = {g: summary(r) for g, r in results.items()}
    history = [h for h in read_manifest(out)["log_history"] if "reward" in h]

    args.out.mkdir(parents=True, exist_ok=True)
    stem = "grpo_restore_tune" if args.tune else "grpo_restore"
    png = args.out / f"{stem}.png"
    draw(history, png)
    report = {
        "setup": {
            "policy": f"tiny Qwen3 causal LM (hidden {args.hidden}, 2 layers): diagnosis in, compact plan out",
            "train_photos": TRAIN_PHOTOS,
            "evaluated_photos": photos,
            "held_out_models": HELD_OUT_MODELS,
            "train_models": TRAIN_MODELS,
            "split": split,
            "crop": size,
            "warm_start": ws.model_dump(),
            "warm_start_prompts": len(train_rows),
            "grpo_prompts": len(grpo_rows),
            "recipe": recipe.model_dump(mode="json", exclude={"model", "dataset", "output_dir"}),
        },
        "tables": tables,
        "unparsable": {g: r["unparsable"] for g, r in results.items()},
        "cases": {g: r["cases"] for g, r in results.items()},
        "train_curve": [
            {"step": h["step"], "reward": h["reward"], **{k: h.get(f"rewards/{k}/mean") for k in REWARD_NAMES}}
            for h in history
        ],
        "wall_s": {"data_and_warm_start": t_warm, "grpo": grpo_s, "total": time.time() - t0},
        "grpo_step_s": read_manifest(out)["step_time_s"],
    }
    tmp = args.out / f".{stem}.json.tmp"
    tmp.write_text(json.dumps(report, indent=1, default=float) + "\n")
    tmp.replace(args.out / f"{stem}.json")

    held = ", ".join(f"{k} {v}" for k, v in HELD_OUT_MODELS.items())
    print(f"{split} crops: photos {', '.join(photos)}; models {'training' if args.tune else 'held out: ' + held}")
    print(f"{'group':8}{'planner':8}{'PSNR':>8}{'gain':>8}{'harm':>8}{'vs hand':>9}{'unparsable':>12}")
    for g, table in tables.items():
        for name, row in table.items():
            vs = "" if name in ("input", "hand") else f"{row['psnr'] - table['hand']['psnr']:+.2f}"
            bad = results[g]["unparsable"].get(name, "")
            print(f"{g:8}{name:8}{row['psnr']:8.2f}{row['gain']:+8.2f}{row['harm']:8.0%}{vs:>9}{bad!s:>12}")
    print(f"wall {time.time() - t0:.0f}s (warm start {t_warm:.0f}s, GRPO {grpo_s:.0f}s, "
          f"{report['grpo_step_s']:.2f}s/step); wrote {png}")  # fmt: skip
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    else:
        say(f"kept {work}")
    m = tables["mixed"]
    psnrs = " ".join(f"{k} {m[k]['psnr']:.2f}" for k in ("hand", "start", "grpo"))
    print(f"{split} mixed PSNR: {psnrs} (harm hand {m['hand']['harm']:.0%} grpo {m['grpo']['harm']:.0%})")


if __name__ == "__main__":
    main()
