"""Learning benchmark: GRPO (TRL) raises a small policy's held-out reward on the project's synthetic data, on CPU.

    python bench/grpo_curve.py [--train 48] [--eval 16] [--sft-steps 60] [--grpo-steps 120] [--out bench/out]

The policy is the light one of ``rl/grpo.py`` (``policy: text``, ``completion: compact``): a tiny local Qwen3
causal LM (:mod:`rl.tiny_text`) that reads the ``measure`` statistics of the crop and writes ``kind severity``
pairs. A random-weight model writes no valid pairs, so a few supervised steps on the ground-truth pairs warm-start
it (a plain next-token loop, on the training set only); then ``rl.grpo.train_grpo`` runs real GRPO through TRL
with the recipe's real rewards (classical restorer, ``measure`` scorer, fidelity against the clean crop, accuracy
against the ground truth). Training crops come from the calibration photos (``rnr synth`` seed 0), held-out crops
from the evaluation photos (seed 1). Held-out rewards are measured after the warm start and after GRPO with
``--eval-samples`` sampled completions per crop; the per-step training rewards give the curves. Also scored on the
held-out set: the ground-truth completions and a degenerate policy that always claims every kind at high severity
(the strongest filters), which the fidelity guard must push below the trained policy.

Writes ``<out>/grpo_curve.json`` and ``<out>/grpo_curve.png`` (one panel per reward component and the total).
"""

from __future__ import annotations

import argparse
import json
import os
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


def recipe(model: Path, data: Path, out: Path, steps: int, args) -> dict:
    """The GRPO recipe of the benchmark."""
    return {
        "policy": "text",
        "completion": "compact",
        "text_stats": STATS,
        "model": str(model),
        "dataset": str(data),
        "output_dir": str(out),
        "overwrite": True,
        "rewards": WEIGHTS,
        "reward_workers": 0,
        "max_steps": steps,
        "learning_rate": args.lr,
        "per_device_train_batch_size": args.generations * args.prompts_per_step,
        "num_generations": args.generations,
        "max_completion_length": 32,
        "temperature": 1.0,
        "beta": 0.0,
        "lora": None,
        "report_to": "none",
        "save_steps": 0,
        "seed": 0,
    }


def warm_start(model_dir: Path, data, out: Path, steps: int, lr: float, say) -> Path:
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
    rng = np.random.default_rng(0)
    for step in range(steps):
        batch = [pairs[i] for i in rng.choice(len(pairs), size=4, replace=False)]
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
        if step % 10 == 0 or step == steps - 1:
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


def draw(history: list[dict], start: dict, end: dict, path: Path) -> None:
    """One panel per reward component (and the total): per-step training means, held-out start and end marks."""
    from PIL import Image, ImageDraw

    names = [*WEIGHTS, "total"]
    pw, ph, pad = 360, 220, 40
    img = Image.new("RGB", (pw * 3, ph * 2), "white")
    d = ImageDraw.Draw(img)
    for i, name in enumerate(names):
        x0, y0 = (i % 3) * pw, (i // 3) * ph
        key = "reward" if name == "total" else f"rewards/{name}/mean"
        ys = [(h["step"], h[key]) for h in history if h.get(key) is not None and np.isfinite(h[key])]
        marks = [v for v in (start[name]["mean"], end[name]["mean"]) if v is not None]
        vals = [v for _, v in ys] + marks
        lo, hi = (min(vals), max(vals)) if vals else (0.0, 1.0)
        lo, hi = (lo - 0.05, hi + 0.05) if hi - lo < 1e-6 else (lo, hi)
        n = max((s for s, _ in ys), default=1)

        def pt(step, v, x0=x0, y0=y0, lo=lo, hi=hi, n=n):
            x = x0 + pad + (pw - 2 * pad) * step / max(n, 1)
            return x, y0 + ph - pad - (ph - 2 * pad) * (v - lo) / (hi - lo)

        d.rectangle([x0 + pad, y0 + pad, x0 + pw - pad, y0 + ph - pad], outline="grey")
        d.text((x0 + pad, y0 + 10), f"{name} (train per step; held-out red start, green end)", fill="black")
        d.text((x0 + 4, y0 + pad - 6), f"{hi:.2f}", fill="grey")
        d.text((x0 + 4, y0 + ph - pad - 6), f"{lo:.2f}", fill="grey")
        d.text((x0 + pw - pad - 20, y0 + ph - pad + 4), f"{n}", fill="grey")
        if len(ys) > 1:
            d.line([pt(s, v) for s, v in ys], fill=(60, 110, 200), width=1)
            smooth = [(s, float(np.mean([v for _, v in ys[max(0, j - 4) : j + 1]]))) for j, (s, _v) in enumerate(ys)]
            d.line([pt(s, v) for s, v in smooth], fill=(20, 40, 120), width=3)
        for step, m, colour in ((0, start[name]["mean"], "red"), (n, end[name]["mean"], "green")):
            if m is not None:
                x, y = pt(step, m)
                d.ellipse([x - 5, y - 5, x + 5, y + 5], outline=colour, width=3)
    img.save(path)


def main() -> None:
    """Run the benchmark and write JSON and PNG."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--train", type=int, default=48)
    ap.add_argument("--eval", type=int, default=16)
    ap.add_argument("--size", default="96x128", help="crop HxW")
    ap.add_argument("--sft-steps", type=int, default=60)
    ap.add_argument("--sft-lr", type=float, default=3e-3)
    ap.add_argument("--grpo-steps", type=int, default=120)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--generations", type=int, default=8, help="completions per prompt (GRPO group size)")
    ap.add_argument("--prompts-per-step", type=int, default=1)
    ap.add_argument("--eval-samples", type=int, default=4)
    ap.add_argument("--out", type=Path, default=Path("bench/out"))
    args = ap.parse_args()

    import torch

    from rl.grpo import load_config, policy_rewards, train_grpo
    from rl.rewards import shutdown
    from rl.sft import read_manifest
    from rl.synth import write_dataset
    from rl.text_policy import text_prompt_dataset
    from rl.tiny_text import build_tiny_text_policy

    torch.set_num_threads(1)
    t0 = time.time()

    def say(msg: str) -> None:
        print(f"[{time.time() - t0:6.1f}s] {msg}", file=sys.stderr, flush=True)

    h, w = (int(v) for v in args.size.split("x"))
    work = Path(tempfile.mkdtemp(prefix="grpo_curve."))
    train_dir = write_dataset(work / "train", args.train, seed=0, size=(h, w), photos=CALIBRATION_PHOTOS)
    eval_dir = write_dataset(work / "eval", args.eval, seed=1, size=(h, w), photos=EVALUATION_PHOTOS)
    train = text_prompt_dataset(train_dir, None, STATS, "compact")
    held = text_prompt_dataset(eval_dir, None, STATS, "compact")
    say(f"data: {len(train)} train crops, {len(held)} held-out crops of {h}x{w}")
    base = build_tiny_text_policy(work / "base", seed=0, hidden=128, layers=2)
    warm = warm_start(base, train, work / "warm", args.sft_steps, args.sft_lr, say)
    t_warm = time.time() - t0

    cfg = load_config(recipe(warm, train_dir, work / "grpo", args.grpo_steps, args))
    fns, _ = policy_rewards(cfg)
    truth = score(fns, held, [[row["target"]] for row in held])
    degenerate = score(fns, held, [[DEGENERATE] for _ in held])
    start = score(fns, held, sample(warm, held, args.eval_samples, seed=1))
    say(f"held-out start: { {k: v['mean'] for k, v in start.items()} }")
    t1 = time.time()
    out = train_grpo(cfg, log=say)
    grpo_s = time.time() - t1
    end = score(fns, held, sample(out, held, args.eval_samples, seed=1))
    say(f"held-out end: { {k: v['mean'] for k, v in end.items()} }")
    shutdown()
    manifest = read_manifest(out)
    history = [h for h in manifest["log_history"] if "reward" in h]

    args.out.mkdir(parents=True, exist_ok=True)
    png = args.out / "grpo_curve.png"
    draw(history, start, end, png)
    report = {
        "setup": {
            "policy": "tiny Qwen3 causal LM (hidden 128, 2 layers), measured statistics in, compact pairs out",
            "train": f"{len(train)} crops, calibration photos, synth seed 0",
            "held_out": f"{len(held)} crops, evaluation photos, synth seed 1",
            "size": [h, w],
            "sft_steps": args.sft_steps,
            "grpo_steps": args.grpo_steps,
            "eval_samples_per_crop": args.eval_samples,
            "weights": WEIGHTS,
            "recipe": {k: v for k, v in cfg.items() if k not in ("model", "dataset", "output_dir")},
        },
        "held_out": {"start": start, "end": end, "ground_truth": truth, "degenerate": degenerate},
        "degenerate_completion": DEGENERATE,
        "train_curve": [
            {"step": h["step"], "reward": h["reward"], **{k: h.get(f"rewards/{k}/mean") for k in WEIGHTS}}
            for h in history
        ],
        "wall_s": {"data_and_warm_start": t_warm, "grpo": grpo_s, "total": time.time() - t0},
        "grpo_step_s": manifest["step_time_s"],
    }
    (args.out / "grpo_curve.json").write_text(json.dumps(report, indent=2, default=float) + "\n")
    rows = [("start", start), ("end", end), ("ground truth", truth), ("degenerate", degenerate)]
    print(f"{'held-out':14}" + "".join(f"{k:>20}" for k in [*WEIGHTS, "total"]))
    for label, table in rows:
        cells = [
            "-" if table[k]["mean"] is None else f"{table[k]['mean']:.3f} ({table[k]['none']} None)"
            for k in [*WEIGHTS, "total"]
        ]
        print(f"{label:14}" + "".join(f"{c:>20}" for c in cells))
    print(f"wall {time.time() - t0:.0f}s (GRPO {grpo_s:.0f}s, {manifest['step_time_s']:.2f}s/step); wrote {png}")


if __name__ == "__main__":
    main()
