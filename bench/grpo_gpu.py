"""The GPU recipe on a GPU: a warm-started tiny Qwen3-VL plan policy trained by GRPO, timed, reward per step.

    python bench/grpo_gpu.py --device cuda --dtype bfloat16 --seconds 110 --warm-seconds 80   (a GPU: a few minutes)
    python bench/grpo_gpu.py --device cpu --dtype float32 --steps 2                          (the same path locally)

The policy is the tiny random-weight Qwen3-VL of :mod:`reasoner.tiny_vlm` (built locally, seeded). A random policy
writes no valid plan: every reply falls back to the hand plan, all completions of a group score the same and GRPO
gets no gradient. So it is first warm-started (:func:`warm_start_vlm`, ``--warm-steps`` / ``--warm-seconds``; 0
steps to skip): supervised next-token steps on the rows' hand (or oracle) JSON plans, the prompt rendered as
``GRPOTrainer`` renders it, all text weights trained, the vision tower frozen. Stopped well before it is
deterministic, it writes plans that mostly parse and still differ within a group. The share of sampled replies
that parse is measured after it.

Then :func:`rl.plan_grpo.train_plan_grpo` trains it with ``rl/recipes/grpo_restore_qwen3vl.yaml``: the crop in the
prompt, JSON replies, LoRA on top of the warm-started weights, the recipe's rewards (format, full-reference PSNR
gain, the scorer's estimated gain, fidelity) and optimiser settings. Crops are mixed degradations (2-3 kinds from the
training models of ``bench/grpo_restore.py``) of the calibration photos, with their clean crops, diagnosed by
``measure``.

What differs from the recipe, and why: no vLLM (generation through transformers: vLLM is not installed on the
benchmark's GPU machine, which reaches no registry, and its wheel is far larger than what can be carried there); the
run's own sizes (``--generations``, ``--batch``, ``--completion-length``, ``--workers``, ``--steps``); no
checkpoints, no tensorboard and no completion tables (they would be timed with the steps). Training stops cleanly
after the step that passes ``--seconds`` (a trainer callback), or at ``--steps``.

Prints the warm start (steps, seconds, loss, share of parseable replies after it), a table (per GRPO step: seconds,
total reward, each component (``format`` is the share of replies that parse), completion length, share of groups
with no reward spread, loss, grad norm) and a summary (steps, wall seconds, steps/s, steps with a non-zero loss and
gradient, peak CUDA memory, versions, GPU); writes ``<out>/grpo_gpu.txt`` (the same text), ``<out>/grpo_gpu.json``
and ``<out>/grpo_gpu.png`` (per-component reward per step).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # reward workers: one thread each (they are spawned)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from grpo_restore import REWARD_NAMES, TRAIN_MODELS, TRAIN_PHOTOS, draw, make_cases  # noqa: E402

RECIPE = "grpo_restore_qwen3vl.yaml"


def stop_after(seconds: float):
    """A trainer callback that stops training cleanly after the optimiser step that passes ``seconds``."""
    from transformers import TrainerCallback

    class StopAfter(TrainerCallback):
        stopped = False

        def on_train_begin(self, args, state, control, **kwargs):
            self.begin = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            if time.perf_counter() - self.begin > seconds:
                self.stopped = control.should_training_stop = True

    return StopAfter()


def _encode(processor, row: dict, target: str):
    """(prompt ids, reply ids, image fields) of a row, its prompt rendered as ``GRPOTrainer`` renders it.

    The image fields hold the processor's ``pixel_values`` and ``image_grid_thw``, and ``mm_token_type_ids`` of the
    prompt (1 on image tokens), which Qwen3-VL's multimodal rotary positions need.
    """
    from trl.data_utils import prepare_multimodal_messages

    messages = prepare_multimodal_messages(row["prompt"], images=[row["image"]])
    enc = processor.apply_chat_template(
        conversation=[messages], add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
    )
    reply = processor.tokenizer(target + processor.tokenizer.eos_token, add_special_tokens=False)["input_ids"]
    image = {k: v for k, v in enc.items() if k in ("pixel_values", "image_grid_thw", "mm_token_type_ids")}
    return enc["input_ids"][0].tolist(), reply, image


def warm_start_vlm(base: Path, rows, out: Path, *, steps: int, seconds: float, lr: float, batch: int, target: str,
                   device: str, dtype: str, say) -> dict:  # fmt: skip
    """Supervised next-token steps of the Qwen3-VL policy on ``rows``' ``target_<target>`` replies; writes ``out``.

    A plain loop, as :func:`rl.plan_grpo.warm_start` runs for a text policy: the loss on the reply and its
    end-of-turn token only, batches of ``batch`` rows drawn with seed 0, AdamW at ``lr``, the vision tower frozen
    (the recipe's ``freeze_vision``), float32 weights (bf16 autocast where ``dtype`` says so on CUDA). Stops after
    ``steps`` or after the step that passes ``seconds``. ``out`` is ``base`` (processor, tokenizer) with the new
    weights. Returns the steps run, wall seconds, per-step seconds and losses.
    """
    import numpy as np
    import torch
    from transformers import AutoModelForImageTextToText

    from reasoner.hf_processor import load_processor
    from rl.plan_grpo import reply_batch
    from rl.training import freeze_vision

    processor = load_processor(str(base))
    model = AutoModelForImageTextToText.from_pretrained(base, dtype=torch.float32).to(device).train()
    freeze_vision(model)
    examples = [_encode(processor, rows[i], rows[i][f"target_{target}"]) for i in range(len(rows))]
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device == "cuda" and dtype == "bfloat16")
    pad = processor.tokenizer.pad_token_id
    rng = np.random.default_rng(0)
    losses, step_s = [], []
    t0 = time.perf_counter()
    for step in range(steps):
        t = time.perf_counter()
        picked = [examples[i] for i in rng.choice(len(examples), size=min(batch, len(examples)), replace=False)]
        ids, mask, labels = reply_batch([(p, c) for p, c, _ in picked], pad)
        width = ids.shape[1]
        images = {k: torch.cat([im[k] for _, _, im in picked]).to(device) for k in ("pixel_values", "image_grid_thw")}
        if "mm_token_type_ids" in picked[0][2]:  # per token: the prompt's, then 0 on the reply and the padding
            types = torch.zeros((len(picked), width), dtype=picked[0][2]["mm_token_type_ids"].dtype)
            for j, (p, _, im) in enumerate(picked):
                types[j, : len(p)] = im["mm_token_type_ids"][0]
            images["mm_token_type_ids"] = types.to(device)
        with autocast:
            loss = model(input_ids=ids.to(device), attention_mask=mask.to(device), labels=labels.to(device),
                         **images).loss  # fmt: skip
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())  # a sync per step: the step times are real
        step_s.append(time.perf_counter() - t)
        if step % 50 == 0:
            say(f"warm start step {step}: loss {losses[-1]:.3f}")
        if time.perf_counter() - t0 > seconds:
            break
    wall = time.perf_counter() - t0
    say(f"warm start: {len(losses)} steps in {wall:.1f}s, loss {losses[0]:.3f} -> {losses[-1]:.3f}")
    shutil.copytree(base, out, dirs_exist_ok=True)
    model.eval().save_pretrained(out)
    del model, opt
    if device == "cuda":
        torch.cuda.empty_cache()
    return {"steps": len(losses), "seconds": wall, "lr": lr, "batch": batch, "target": target, "losses": losses,
            "step_s": step_s}  # fmt: skip


def sampled_replies(folder: Path, rows, *, prompts: int, samples: int, max_new_tokens: int, temperature: float,
                    device: str, dtype: str) -> dict:  # fmt: skip
    """Share of sampled replies that parse into a plan of diagnosed kinds (the ``format`` reward), and their spread.

    ``samples`` replies to each of the first ``prompts`` rows, sampled as GRPO samples them (``temperature``, top-p 1),
    in one batch. Returns ``parseable`` (share), ``distinct`` (mean number of different replies per prompt),
    ``mean_tokens`` and two example replies.
    """
    import torch
    from transformers import AutoModelForImageTextToText
    from trl.data_utils import prepare_multimodal_messages

    from reasoner.hf_processor import load_processor
    from restorer.plan import Plan
    from rl.plan_policy import parse_completion

    processor = load_processor(str(folder))
    model = AutoModelForImageTextToText.from_pretrained(folder, dtype=getattr(torch, dtype)).to(device).eval()
    picked = [rows[i] for i in range(min(prompts, len(rows)))]
    conversations = [prepare_multimodal_messages(r["prompt"], images=[r["image"]]) for r in picked]
    common = dict(conversation=conversations, add_generation_prompt=True, tokenize=True, return_dict=True,
                  return_tensors="pt")  # fmt: skip
    try:
        enc = processor.apply_chat_template(**common, processor_kwargs={"padding": True})
    except (TypeError, ValueError):  # transformers releases before processor_kwargs: padding among the kwargs
        enc = processor.apply_chat_template(**common, padding=True)
    enc = enc.to(device)
    torch.manual_seed(0)
    with torch.no_grad():
        ids = model.generate(**enc, do_sample=True, temperature=temperature, top_p=1.0, max_new_tokens=max_new_tokens,
                             num_return_sequences=samples)  # fmt: skip
    new = ids[:, enc["input_ids"].shape[1] :]
    texts = processor.batch_decode(new, skip_special_tokens=True)
    ok, distinct = [], []
    for i, row in enumerate(picked):
        hand = Plan.model_validate_json(row["hand"])
        group = texts[i * samples : (i + 1) * samples]
        ok += [parse_completion(t, hand) is not None for t in group]
        distinct.append(len(set(group)))
    ends = (new == processor.tokenizer.eos_token_id) | (new == processor.tokenizer.pad_token_id)
    lengths = [int(e.nonzero()[0]) + 1 if e.any() else new.shape[1] for e in ends]
    del model
    return {"parseable": sum(ok) / len(ok), "distinct": sum(distinct) / len(distinct),
            "mean_tokens": sum(lengths) / len(lengths), "replies": len(ok), "examples": texts[:2]}  # fmt: skip


def table(history: list[dict], step_s: list[float]) -> list[str]:
    """One line per logged optimiser step: seconds, total reward, components, length, zero-spread groups, loss, grad.

    The ``format`` column is the share of replies that parse into a plan of diagnosed kinds (the reward is 1 or 0).
    """
    head = f"{'step':>5}{'s':>7}{'reward':>9}" + "".join(f"{n:>14}" for n in REWARD_NAMES)
    lines = [head + f"{'len':>7}{'zero_std':>10}{'loss':>11}{'grad_norm':>11}"]
    for h in history:
        s = step_s[h["step"] - 1] if 0 < h["step"] <= len(step_s) else float("nan")
        parts = [f"{h['step']:>5}{s:>7.2f}{_num(h.get('reward')):>9}"]
        parts += [f"{_num(h.get(f'rewards/{n}/mean')):>14}" for n in REWARD_NAMES]
        parts.append(f"{_num(h.get('completions/mean_length'), 1):>7}{_num(h.get('frac_reward_zero_std'), 2):>10}")
        parts.append(f"{_sig(h.get('loss')):>11}{_sig(h.get('grad_norm')):>11}")
        lines.append("".join(parts))
    return lines


def _sig(v) -> str:
    return "-" if v is None else f"{v:.3g}"


def _num(v, digits: int = 3) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def main() -> None:
    """Build the policy and the crops, train with the GPU recipe under a wall-clock budget, report and write."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    ap.add_argument("--dtype", choices=("bfloat16", "float32"), default="bfloat16")
    ap.add_argument("--seconds", type=float, default=110, help="stop GRPO after the step passing this")
    ap.add_argument("--steps", type=int, default=1000, help="at most this many optimiser steps")
    ap.add_argument("--crops", type=int, default=96, help="synthetic mixed-degradation crops")
    ap.add_argument("--size", type=int, default=160, help="crop side (px)")
    ap.add_argument("--generations", type=int, default=8, help="completions per prompt (GRPO group size)")
    ap.add_argument("--batch", type=int, default=8, help="per_device_train_batch_size")
    ap.add_argument("--completion-length", type=int, default=128, help="max_completion_length (tokens)")
    ap.add_argument("--workers", type=int, default=None, help="reward workers (default: CPU cores less 4, 0 on 2)")
    ap.add_argument("--warm-steps", type=int, default=300, help="supervised warm-start steps before GRPO (0: none)")
    ap.add_argument("--warm-seconds", type=float, default=90, help="stop the warm start after the step passing this")
    ap.add_argument("--warm-lr", type=float, default=2e-3, help="warm-start learning rate (AdamW)")
    ap.add_argument("--warm-batch", type=int, default=16, help="warm-start rows per step")
    ap.add_argument("--warm-target", choices=("hand", "oracle"), default="hand", help="warm-start replies")
    ap.add_argument("--out", type=Path, default=Path("bench/out/grpo_gpu"))
    args = ap.parse_args()

    import numpy as np
    import torch
    import transformers
    from transformers.utils import logging as hf_logging

    from reasoner import load_reasoner
    from reasoner.tiny_vlm import build_tiny_reasoner
    from rl.plan_grpo import diagnose_items, load_recipe_yaml, plan_dataset, train_plan_grpo, training_bins
    from rl.training import read_manifest

    hf_logging.disable_progress_bar()
    t0 = time.time()

    def say(msg: str) -> None:
        print(f"[{time.time() - t0:6.1f}s] {msg}", file=sys.stderr, flush=True)

    cuda = args.device == "cuda"
    if cuda and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is visible; use --device cpu --dtype float32")
    workers = args.workers if args.workers is not None else max(0, (os.cpu_count() or 1) - 4)
    work = Path(tempfile.mkdtemp(prefix="grpo_gpu."))

    cases = make_cases(TRAIN_PHOTOS, TRAIN_MODELS, args.crops, 5, args.size, (2, 3))
    diagnosed = diagnose_items(cases, load_reasoner("measure"))
    bins = training_bins(diagnosed)
    rows = plan_dataset(diagnosed, "json", bins, vlm=True)
    t_data = time.time() - t0
    say(f"{len(rows)} of {len(cases)} crops of {args.size}px have something to plan ({t_data:.0f}s)")

    model = build_tiny_reasoner(work / "tiny", seed=0)
    warm = sampled = None
    if args.warm_steps > 0:
        say(f"warm start on {args.device}: at most {args.warm_steps} steps or {args.warm_seconds:.0f}s")
        warm = warm_start_vlm(model, rows, work / "sft", steps=args.warm_steps, seconds=args.warm_seconds,
                              lr=args.warm_lr, batch=args.warm_batch, target=args.warm_target,
                              device=args.device, dtype=args.dtype, say=say)  # fmt: skip
        model = work / "sft"
        t = time.perf_counter()
        try:
            sampled = sampled_replies(model, rows, prompts=16, samples=4, max_new_tokens=args.completion_length,
                                      temperature=1.0, device=args.device, dtype=args.dtype)  # fmt: skip
        except Exception as e:  # noqa: BLE001  (a measurement: GRPO, what is timed here, still runs)
            say(f"sampling after the warm start failed: {type(e).__name__}: {e}")
        else:
            sampled["seconds"] = time.perf_counter() - t
            say(f"after the warm start: {sampled['parseable']:.0%} of {sampled['replies']} sampled replies parse, "
                f"{sampled['distinct']:.1f} distinct of 4 per prompt, {sampled['mean_tokens']:.0f} tokens; e.g. "
                f"{sampled['examples'][0]!r}")  # fmt: skip
    recipe = load_recipe_yaml(
        RECIPE,
        {
            "model": str(model), "dataset": "(in memory)", "output_dir": str(work / "grpo"), "overwrite": True,
            "device": args.device, "dtype": args.dtype, "use_vllm": False, "vllm": {},
            "max_steps": args.steps, "num_generations": args.generations,
            "per_device_train_batch_size": args.batch, "max_completion_length": args.completion_length,
            "reward_workers": workers, "report_to": "none", "save_steps": 0, "log_completions": False,
        },
    )  # fmt: skip
    stop = stop_after(args.seconds)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    say(f"training on {args.device} in {args.dtype} for at most {args.seconds:.0f}s or {args.steps} steps, "
        f"{workers} reward workers")  # fmt: skip
    out = train_plan_grpo(recipe, log=say, train=rows, bins=bins, callbacks=[stop])
    manifest = read_manifest(out)
    history = [h for h in manifest["log_history"] if "reward" in h]
    steps = int(manifest["global_step"])
    train_s, step_s = manifest["train_runtime_s"], manifest["step_s"]
    steady = step_s[1:] or step_s
    n_params = sum(p.numel() for p in transformers.AutoModelForImageTextToText.from_pretrained(out).parameters())

    per_generation = recipe.steps_per_generation or recipe.gradient_accumulation_steps
    completions = recipe.per_device_train_batch_size * per_generation
    warm_summary = None
    if warm is not None:
        warm_summary = {k: v for k, v in warm.items() if k not in ("losses", "step_s")}
        warm_summary.update(first_loss=warm["losses"][0], final_loss=warm["losses"][-1],
                            steady_step_s=float(np.mean(warm["step_s"][1:] or warm["step_s"])))  # fmt: skip
    summary = {
        "steps": steps,
        "stopped_by": "seconds" if stop.stopped else "steps",
        "train_s": train_s,
        "steps_per_s": steps / train_s if train_s > 0 else None,
        "steady_steps_per_s": len(steady) / sum(steady) if steady and sum(steady) > 0 else None,
        "first_step_s": step_s[0] if step_s else None,
        "completions_per_step": completions,
        "prompts_per_step": completions // recipe.num_generations,
        "mean_reward": float(np.mean([h["reward"] for h in history])) if history else None,
        "peak_cuda_allocated_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
        "peak_cuda_reserved_gib": torch.cuda.max_memory_reserved() / 2**30 if cuda else None,
        "prompts": len(rows),
        "data_s": t_data,
        "total_s": time.time() - t0,
        "policy_parameters": n_params,
        "nonzero_loss_steps": sum(1 for h in history if h.get("loss")),
        "nonzero_grad_norm_steps": sum(1 for h in history if h.get("grad_norm")),
        "mean_parseable": float(np.mean([h["rewards/format/mean"] for h in history])) if history else None,
        "warm_start": warm_summary,
        "after_warm_start": sampled,
    }
    env = {
        "device": torch.cuda.get_device_name() if cuda else platform.processor() or platform.machine(),
        "dtype": args.dtype,
        "python": platform.python_version(),
        **manifest["versions"],
        "cuda": torch.version.cuda,
        "cpu_cores": os.cpu_count(),
        "reward_workers": workers,
    }
    lines = []
    if warm is not None:
        w = warm_summary
        lines += [
            f"warm start ({args.warm_target} targets, lr {args.warm_lr:g}, {args.warm_batch} rows/step, vision "
            f"frozen, all text weights): {w['steps']} steps in {w['seconds']:.1f}s ({w['steady_step_s']:.3f} s/step), "
            f"loss {w['first_loss']:.3f} -> {w['final_loss']:.3f}",
        ]
        if sampled is not None:
            lines.append(
                f"after it, sampled at temperature 1: {sampled['parseable']:.0%} of {sampled['replies']} replies "
                f"parse (format), {sampled['distinct']:.2f} distinct of 4 per prompt, {sampled['mean_tokens']:.0f} "
                "tokens"
            )
    lines += table(history, step_s)
    lines += [
        f"loss non-zero at {summary['nonzero_loss_steps']} of {len(history)} steps, grad_norm at "
        f"{summary['nonzero_grad_norm_steps']}; parseable share (format mean) {_num(summary['mean_parseable'])} "
        f"over the steps",
        f"steps {steps} ({summary['stopped_by']}) in {train_s:.1f}s: {summary['steps_per_s']:.3f} steps/s "
        f"(after the first step {summary['steady_steps_per_s'] or 0:.3f}; first {summary['first_step_s'] or 0:.1f}s), "
        f"{completions} completions of <= {recipe.max_completion_length} tokens per step "
        f"({summary['prompts_per_step']} prompts x {recipe.num_generations})",
        f"mean reward {_num(summary['mean_reward'])}; data {t_data:.0f}s for {len(rows)} prompts; "
        f"total {summary['total_s']:.0f}s",
        "peak CUDA memory: "
        + (f"{summary['peak_cuda_allocated_gib']:.2f} GiB allocated, {summary['peak_cuda_reserved_gib']:.2f} GiB "
           "reserved" if cuda else "- (cpu)"),
        f"policy: tiny Qwen3-VL ({n_params / 1e6:.2f} M parameters), "
        f"{'warm-started' if warm else 'random'}, GRPO with LoRA r {recipe.lora.r} on top; use_vllm False",
        "env: " + ", ".join(f"{k} {v}" for k, v in env.items()),
    ]  # fmt: skip
    text = "\n".join(lines)
    print(text)

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "grpo_gpu.txt").write_text(text + "\n")
    report = {
        "summary": summary,
        "env": env,
        "recipe": recipe.model_dump(mode="json", exclude={"model", "dataset", "output_dir"}),
        "setup": {
            "crops": args.crops,
            "size": args.size,
            "photos": TRAIN_PHOTOS,
            "n_kinds": [2, 3],
            "warm_steps": args.warm_steps,
            "warm_seconds": args.warm_seconds,
        },
        "warm_start": warm,
        "log_history": manifest["log_history"],
    }
    (args.out / "grpo_gpu.json").write_text(json.dumps(report, indent=1, default=float) + "\n")
    draw(history, args.out / "grpo_gpu.png")
    shutil.rmtree(work, ignore_errors=True)
    say(f"wrote {args.out}")


if __name__ == "__main__":
    main()
