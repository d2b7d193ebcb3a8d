"""Learning benchmark: GRPO (TRL) raises a small policy's held-out reward on the project's synthetic data, on CPU.

    python bench/grpo_curve.py [--train 200] [--grpo-train 400] [--sft-steps 600] [--grpo-steps 150] [--out bench/out]
    python bench/grpo_curve.py --tune ...     (evaluate on a split of the training photos instead of the held-out)

The policy is the light one of ``rl/grpo.py`` (``policy: text``, ``completion: compact``, ``text_prompt: stats``):
a tiny local Qwen3 causal LM (:mod:`rl.tiny_text`) that reads the ``measure`` statistics of the crop, each rendered
as its decile among the training crops (``text_bins``), and writes ``kind severity`` pairs. A random-weight model
writes no valid pairs, so supervised steps on the ground-truth pairs of the training set warm-start it (a plain
next-token loop); then ``rl.grpo.train_grpo`` runs real GRPO through TRL with the recipe's real rewards (classical
restorer, ``measure`` scorer, fidelity against the clean crop, accuracy against the ground truth) and a small KL
to the warm start. Training crops come from the calibration photos (``rnr synth`` seed 0 for the warm start, seed 3
for GRPO, so that GRPO sees prompts the warm start has not memorised), held-out crops from the evaluation photos
(seed 1). Rewards are measured after the warm start and after GRPO with ``--eval-samples``
sampled completions per crop; the per-step training rewards give the curves. Reference policies are scored on
the same crops: the ground-truth completions, ``always clean`` (never restores), and a degenerate policy that
claims every kind at high severity (the strongest filters everywhere), which the fidelity guard must push below
the trained policy.

Why the warm start is long and the prompt is binned: with raw multi-digit values behind the whole ``diagnose``
prompt (~1200 tokens) the tiny model never learnt to read the statistics (60 to 200 supervised steps left it at
the prior), and GRPO then collapsed onto ``clean``, the best blind answer (a wrong filter scores below no filter,
as it should). One digit per statistic at a fixed place is learnt within a few hundred steps; GRPO then has a
policy whose answers depend on the image, and improves them.

Writes ``<out>/grpo_curve.json`` and ``<out>/grpo_curve.png`` (``grpo_curve_tune.*`` with ``--tune``): one panel
per reward component and the total.
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

from reasoner.schema import KINDS  # noqa: E402
from rl.photos import CALIBRATION_PHOTOS, EVALUATION_PHOTOS  # noqa: E402

WEIGHTS = {"format": 0.2, "severity_reduction": 1.0, "fidelity": 0.5, "diagnosis_accuracy": 0.5}
#: Statistics the policy reads: the ones the ``measure`` backend's chain of thought cites per kind (a shorter prompt
#: than all of :func:`reasoner.features.measure_all`; ``text_stats: null`` in a recipe gives every one).
STATS = [
    "noise_sigma_mid", "noise_sigma_haar", "edge_width", "blur_sigma_fit", "spec_11", "orient_aniso",
    "orient_min_vs_opposite", "resample_peak", "spec_cutoff", "jpeg_blockiness", "jpeg_quality_read",
    "dark_mean", "transmission_dcp", "contrast_rms", "saturation", "lum_mean", "lum_p995", "rain_tophat",
    "rain_coherence",
]  # fmt: skip
DEGENERATE = ", ".join(f"{k} 0.90" for k in KINDS)
#: A policy that asks for what makes artefacts: every deconvolution and tone stretch at full strength (ringing,
#: halos, clipped and crushed tones, amplified noise) — the severity scorer alone cannot see those.
ARTEFACT_MAXIMISING = ", ".join(f"{k} 1.00" for k in ("haze", "motion_blur", "blur", "low_resolution", "low_light"))


def recipe(model: Path, data: Path, out: Path, bins: dict, args) -> dict:
    """The GRPO recipe of the benchmark."""
    return {
        "policy": "text",
        "completion": "compact",
        "text_stats": STATS,
        "text_prompt": "stats",
        "text_bins": bins,
        "model": str(model),
        "dataset": str(data),
        "output_dir": str(out),
        "overwrite": True,
        "rewards": WEIGHTS,
        "reward_workers": 0,
        "max_steps": args.grpo_steps,
        "learning_rate": args.lr,
        "per_device_train_batch_size": args.generations * args.prompts_per_step,
        "num_generations": args.generations,
        "max_completion_length": 32,
        "temperature": args.temperature,
        "beta": args.beta,
        "lora": None,
        "report_to": "none",
        "save_steps": 0,
        "seed": 0,
    }


def warm_start(model_dir: Path, data, out: Path, steps: int, lr: float, batch: int, say) -> Path:
    """A few supervised next-token steps on the ground-truth compact completions (loss on the completion only)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    pairs = []
    for row in data:
        prompt = tok.apply_chat_template(row["prompt"], tokenize=False, add_generation_prompt=True)
        p_ids = tok(prompt)["input_ids"]
        c_ids = tok(row["target"] + "<|im_end|>")["input_ids"]
        pairs.append((p_ids, c_ids))
    rng, size = np.random.default_rng(0), batch
    for step in range(steps):
        batch = [pairs[i] for i in rng.choice(len(pairs), size=min(size, len(pairs)), replace=False)]
        width = max(len(p) + len(c) for p, c in batch)
        ids = torch.full((len(batch), width), tok.pad_token_id)
        labels = torch.full((len(batch), width), -100)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for j, (p, c) in enumerate(batch):
            seq = p + c
            ids[j, : len(seq)] = torch.tensor(seq)
            labels[j, len(p) : len(seq)] = torch.tensor(c)
            mask[j, : len(seq)] = 1
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        if step % 50 == 0 or step == steps - 1:
            say(f"warm start step {step}: loss {loss.item():.3f}")
    model.eval().save_pretrained(out)
    tok.save_pretrained(out)
    return out


def score(fns, data, completions_per_row: list[list[str]]) -> dict:
    """Per-component means (over scored completions), None counts, and TRL's weighted total (NaN-skipping sum)."""
    values: dict[str, list] = {f.__name__: [] for f in fns}
    for row, comps in zip(data, completions_per_row, strict=True):
        n = len(comps)
        cols = {k: [row[k]] * n for k in ("pixels", "record", "clean", "stats")}
        for f in fns:
            values[f.__name__].extend(f(prompts=[row["prompt"]] * n, completions=comps, **cols))
    out = {}
    for name, vals in values.items():
        got = [v for v in vals if v is not None]
        out[name] = {"mean": float(np.mean(got)) if got else None, "none": len(vals) - len(got)}
    totals = [
        sum(WEIGHTS[k] * v[i] for k, v in values.items() if v[i] is not None) for i in range(len(values["format"]))
    ]
    out["total"] = {"mean": float(np.mean(totals)), "none": 0}
    return out


def sample(model_dir: Path, data, g: int, seed: int) -> list[list[str]]:
    """``g`` sampled completions (temperature 1, as GRPO samples them) per held-out row."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    torch.manual_seed(seed)
    out = []
    for row in data:
        text = tok.apply_chat_template(row["prompt"], tokenize=False, add_generation_prompt=True)
        inputs = tok([text], return_tensors="pt")
        with torch.no_grad():
            ids = model.generate(**inputs, do_sample=True, temperature=1.0, max_new_tokens=32, num_return_sequences=g)
        out.append(tok.batch_decode(ids[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True))
    return out


def draw(history: list[dict], rows: dict[str, dict], path: Path) -> None:
    """One panel per reward component (and the total): per-step training means, evaluated start and end marks,
    and the reference policies (ground truth, always clean, degenerate) as horizontal lines."""
    from PIL import Image, ImageDraw

    names = [*WEIGHTS, "total"]
    refs = (("ground_truth", (0, 150, 0)), ("always_clean", (150, 150, 150)), ("degenerate", (200, 120, 0)))
    pw, ph, pad = 360, 240, 40
    img = Image.new("RGB", (pw * 3, ph * 2), "white")
    d = ImageDraw.Draw(img)
    for i, name in enumerate(names):
        x0, y0 = (i % 3) * pw, (i // 3) * ph
        key = "reward" if name == "total" else f"rewards/{name}/mean"
        ys = [(h["step"], h[key]) for h in history if h.get(key) is not None and np.isfinite(h[key])]
        marks = [r[name]["mean"] for r in rows.values() if r[name]["mean"] is not None]
        vals = [v for _, v in ys] + marks
        lo, hi = (min(vals), max(vals)) if vals else (0.0, 1.0)
        lo, hi = (lo - 0.05, hi + 0.05) if hi - lo < 1e-6 else (lo, hi)
        n = max((s for s, _ in ys), default=1)

        def pt(step, v, x0=x0, y0=y0, lo=lo, hi=hi, n=n):
            x = x0 + pad + (pw - 2 * pad) * step / max(n, 1)
            return x, y0 + ph - pad - (ph - 2 * pad) * (v - lo) / (hi - lo)

        d.rectangle([x0 + pad, y0 + pad, x0 + pw - pad, y0 + ph - pad], outline="grey")
        d.text((x0 + pad, y0 + 6), f"{name}: train per step (blue), eval start red, end green", fill="black")
        d.text((x0 + pad, y0 + 18), "lines: truth green, always-clean grey, degenerate orange", fill="grey")
        d.text((x0 + 4, y0 + pad - 6), f"{hi:.2f}", fill="grey")
        d.text((x0 + 4, y0 + ph - pad - 6), f"{lo:.2f}", fill="grey")
        d.text((x0 + pw - pad - 20, y0 + ph - pad + 4), f"{n}", fill="grey")
        for ref, colour in refs:
            m = rows[ref][name]["mean"]
            if m is not None:
                d.line([pt(0, m), pt(n, m)], fill=colour, width=1)
        if len(ys) > 1:
            d.line([pt(s, v) for s, v in ys], fill=(150, 180, 230), width=1)
            smooth = [(s, float(np.mean([v for _, v in ys[max(0, j - 9) : j + 1]]))) for j, (s, _v) in enumerate(ys)]
            d.line([pt(s, v) for s, v in smooth], fill=(20, 40, 160), width=3)
        for step, m, colour in ((0, rows["start"][name]["mean"], "red"), (n, rows["end"][name]["mean"], "green")):
            if m is not None:
                x, y = pt(step, m)
                d.ellipse([x - 5, y - 5, x + 5, y + 5], outline=colour, width=3)
    tmp = path.with_name(f".{path.name}")
    img.save(tmp, format="PNG")
    tmp.replace(path)


def references_only(held, args, say) -> None:
    """Reference policies under both severity_reduction estimates: can a degenerate policy fool the reward?"""
    from rl.reward_engine import RewardEngine
    from rl.rewards import SeverityReduction
    from rl.text_policy import expand_compact

    policies = {"ground_truth": None, "always_clean": "clean", "strongest_everywhere": DEGENERATE,
                "artefact_maximising": ARTEFACT_MAXIMISING}  # fmt: skip
    table = {}
    with RewardEngine(workers=2) as engine:
        for estimate in ("quality", "severity"):
            fn = SeverityReduction(engine, estimate=estimate)
            for name, completion in policies.items():
                vals = []
                for row in held:
                    said = row["target"] if completion is None else completion
                    comp = expand_compact(said, json.loads(row["stats"]))
                    vals += fn(prompts=[row["prompt"]], completions=[comp], image=[row["pixels"]])
                got = [v for v in vals if v is not None]
                table.setdefault(name, {})[estimate] = float(np.mean(got)) if got else None
            say(f"scored with estimate={estimate}")
    print(f"{'policy':24}{'severity_reduction (artefact-aware)':>40}{'(severity scorer only)':>26}")
    for name, r in table.items():
        print(f"{name:24}{r['quality']:>40.3f}{r['severity']:>26.3f}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "grpo_references.json").write_text(json.dumps(table, indent=2) + "\n")


def main() -> None:
    """Run the benchmark and write JSON and PNG."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--train", type=int, default=200, help="crops for the supervised warm start")
    ap.add_argument("--grpo-train", type=int, default=400, help="other crops of the same photos, for GRPO")
    ap.add_argument("--eval", type=int, default=32)
    ap.add_argument("--size", default="96x128", help="crop HxW")
    ap.add_argument("--sft-steps", type=int, default=600)
    ap.add_argument("--sft-lr", type=float, default=1e-3)
    ap.add_argument("--sft-batch", type=int, default=16)
    ap.add_argument("--grpo-steps", type=int, default=150)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--beta", type=float, default=0.02, help="KL coefficient against the warm-started policy")
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--generations", type=int, default=8, help="completions per prompt (GRPO group size)")
    ap.add_argument("--prompts-per-step", type=int, default=4)
    ap.add_argument("--eval-samples", type=int, default=8)
    ap.add_argument(
        "--tune",
        action="store_true",
        help="evaluate on a split of the training photos (seed 2), not "
        "on the held-out photos: for choosing settings without looking at the held-out set",
    )
    ap.add_argument("--warm", type=Path, help="reuse this warm-start folder (same --train/--sft-* settings)")
    ap.add_argument("--keep", action="store_true", help="keep the work folder (data, warm start, GRPO output)")
    ap.add_argument("--out", type=Path, default=Path("bench/out"))
    ap.add_argument(
        "--references-only",
        action="store_true",
        help="score the reference policies (truth, always clean, strongest everywhere, artefact-maximising) with "
        "the severity_reduction reward from the artefact-aware scorer and from the severity scorer, no training",
    )
    args = ap.parse_args()

    import torch

    from rl.grpo import policy_rewards, reward_engine, train_grpo
    from rl.recipe import GRPORecipe
    from rl.synth import write_dataset
    from rl.text_policy import stat_bins, text_prompt_dataset
    from rl.tiny_text import build_tiny_text_policy
    from rl.training import read_manifest

    torch.set_num_threads(1)
    t0 = time.time()

    def say(msg: str) -> None:
        print(f"[{time.time() - t0:6.1f}s] {msg}", file=sys.stderr, flush=True)

    h, w = (int(v) for v in args.size.split("x"))
    work = Path(tempfile.mkdtemp(prefix="grpo_curve."))
    say(f"work folder {work}")
    train_dir = write_dataset(work / "train", args.train, seed=0, size=(h, w), photos=CALIBRATION_PHOTOS)
    # GRPO prompts the warm start has not memorised: on its own crops it already scores near the ground truth,
    # which leaves GRPO nothing to learn from (a flat training curve) while held-out crops still have headroom.
    grpo_dir = write_dataset(work / "grpo_train", args.grpo_train, seed=3, size=(h, w), photos=CALIBRATION_PHOTOS)
    if args.tune:
        eval_dir = write_dataset(work / "eval", args.eval, seed=2, size=(h, w), photos=CALIBRATION_PHOTOS)
    else:
        eval_dir = write_dataset(work / "eval", args.eval, seed=1, size=(h, w), photos=EVALUATION_PHOTOS)
    # Bin edges come from the training crops only and are reused as they are for the held-out crops.
    raw = text_prompt_dataset(train_dir, None, STATS, "compact", "stats")
    bins = stat_bins([json.loads(s) for s in raw["stats"]], STATS)
    train = text_prompt_dataset(train_dir, None, STATS, "compact", "stats", bins)
    held = text_prompt_dataset(eval_dir, None, STATS, "compact", "stats", bins)
    split = "tuning" if args.tune else "held-out"
    say(f"data: {len(train)} warm-start and {args.grpo_train} GRPO crops, {len(held)} {split} crops of {h}x{w}")
    if args.references_only:
        return references_only(held, args, say)
    if args.warm is not None:
        warm = args.warm
    else:
        base = build_tiny_text_policy(work / "base", seed=0, hidden=128, layers=2)
        warm = warm_start(base, train, work / "warm", args.sft_steps, args.sft_lr, args.sft_batch, say)
    t_warm = time.time() - t0

    cfg = GRPORecipe.load(recipe(warm, grpo_dir, work / "grpo", bins, args))
    with reward_engine(cfg) as engine:
        fns, _ = policy_rewards(cfg, engine)
        truth = score(fns, held, [[row["target"]] for row in held])
        degenerate = score(fns, held, [[DEGENERATE] for _ in held])
        clean = score(fns, held, [["clean"] for _ in held])
        start = score(fns, held, sample(warm, held, args.eval_samples, seed=1))
        say(f"start: { {k: round(v['mean'], 3) for k, v in start.items() if v['mean'] is not None} }")
        t1 = time.time()
        out = train_grpo(cfg, log=say)
        grpo_s = time.time() - t1
        end = score(fns, held, sample(out, held, args.eval_samples, seed=1))
        say(f"end: { {k: round(v['mean'], 3) for k, v in end.items() if v['mean'] is not None} }")
    manifest = read_manifest(out)
    history = [h for h in manifest["log_history"] if "reward" in h]

    rows = {"start": start, "end": end, "ground_truth": truth, "degenerate": degenerate, "always_clean": clean}
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "grpo_curve_tune" if args.tune else "grpo_curve"
    png = args.out / f"{stem}.png"
    draw(history, rows, png)
    report = {
        "setup": {
            "policy": "tiny Qwen3 causal LM (hidden 128, 2 layers), binned measured statistics in, compact pairs out",
            "warm_start_crops": f"{len(train)} crops, calibration photos, synth seed 0",
            "grpo_crops": f"{args.grpo_train} crops, calibration photos, synth seed 3",
            "evaluated": f"{len(held)} crops, "
            + ("calibration photos, synth seed 2 (tuning split)" if args.tune else "evaluation photos, synth seed 1"),
            "size": [h, w],
            "warm_start": {
                "steps": args.sft_steps,
                "lr": args.sft_lr,
                "batch": args.sft_batch,
                "reused": bool(args.warm),
            },
            "grpo_steps": args.grpo_steps,
            "eval_samples_per_crop": args.eval_samples,
            "weights": WEIGHTS,
            "recipe": cfg.model_dump(mode="json", exclude={"model", "dataset", "output_dir", "text_bins"}),
            "text_bins": bins,
        },
        "held_out": rows,
        "degenerate_completion": DEGENERATE,
        "train_curve": [
            {"step": h["step"], "reward": h["reward"], **{k: h.get(f"rewards/{k}/mean") for k in WEIGHTS}}
            for h in history
        ],
        "wall_s": {"data_and_warm_start": t_warm, "grpo": grpo_s, "total": time.time() - t0},
        "grpo_step_s": manifest["step_time_s"],
    }
    tmp = args.out / f".{stem}.json.tmp"
    tmp.write_text(json.dumps(report, indent=2, default=float) + "\n")
    tmp.replace(args.out / f"{stem}.json")
    print(f"{'evaluated':14}" + "".join(f"{k:>24}" for k in [*WEIGHTS, "total"]))
    for label, table in rows.items():
        cells = [
            "-" if table[k]["mean"] is None else f"{table[k]['mean']:.3f} ({table[k]['none']} None)"
            for k in [*WEIGHTS, "total"]
        ]
        print(f"{label:14}" + "".join(f"{c:>24}" for c in cells))
    print(f"wall {time.time() - t0:.0f}s (GRPO {grpo_s:.0f}s, {manifest['step_time_s']:.2f}s/step); wrote {png}")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
