"""GRPO of a Qwen3-VL reasoner on an ``rnr synth`` set with TRL's ``GRPOTrainer`` and the rewards of :mod:`rl.rewards`.

The policy sees the ``diagnose`` prompt with the image (exactly as the backends send it) and writes a completion
freely (no grammar: the ``format`` reward teaches the JSON). Each completion is parsed into a record, its plan is
executed by the restorer, the result re-scored by an independent scorer, and the weighted rewards of the recipe
become GRPO advantages. Synthetic rows also carry the clean crop (regenerated deterministically from the set's
generator settings), which the fidelity guard compares against.

The recipe is :class:`rl.recipe.GRPORecipe` (``rl/recipes/grpo.yaml`` documents every field); overrides are
``key=value`` with dotted keys, as for :mod:`rl.sft`. The restoring rewards share one
:class:`~rl.reward_engine.RewardEngine` per run, closed when training ends. The steps shared with SFT live in
:mod:`rl.training`; the output folder is a plain checkpoint that ``Qwen3VLReasoner(model=OUT)`` loads. Imports
torch, transformers, TRL and peft.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import math
import sys
from pathlib import Path

try:
    import torch
    from transformers import PrinterCallback
    from trl import GRPOConfig, GRPOTrainer
except ImportError as e:  # pragma: no cover - depends on the install
    raise ImportError(
        f"GRPO needs torch, transformers and TRL ({e}); install with: pip install 'reason-restore[rl,vlm]'"
    ) from e

from reasoner.common import one_line
from rl.recipe import GRPORecipe
from rl.reward_engine import RewardEngine
from rl.rewards import build_rewards
from rl.synth import prompt_dataset
from rl.text_policy import TextReward, text_prompt_dataset
from rl.training import (
    BaseGeneration,
    StepMonitor,
    freeze_vision,
    load_vlm,
    lora_config,
    prepare_output,
    resolve_device,
    save_trained,
    trainer_settings,
    versions,
    write_manifest,
)


def reward_engine(recipe: GRPORecipe) -> RewardEngine:
    """The engine the recipe's restoring rewards share: its restorer, scorer and ``reward_workers``."""
    return RewardEngine(recipe.restorer, recipe.scorer, recipe.reward_workers)


def policy_dataset(recipe: GRPORecipe):
    """The training prompts of a recipe: image prompts (``vlm``) or measured-statistics prompts (``text``)."""
    if recipe.policy == "text":
        return text_prompt_dataset(
            recipe.dataset, recipe.max_samples, recipe.text_stats, recipe.completion, recipe.text_prompt,
            recipe.text_bins,
        )  # fmt: skip
    return prompt_dataset(recipe.dataset, recipe.max_samples)


def policy_rewards(recipe: GRPORecipe, engine: RewardEngine) -> tuple[list, list[float]]:
    """The recipe's reward functions (restoring through ``engine``) and weights; wrapped for the ``text`` policy."""
    fns, weights = build_rewards(recipe.rewards, engine)
    if recipe.policy == "text":
        fns = [TextReward(f, compact=recipe.completion == "compact") for f in fns]
    return fns, weights


def load_policy(recipe: GRPORecipe, dtype, say):
    """(processor or tokenizer, model) of the recipe's policy checkpoint."""
    if recipe.policy == "vlm":
        return load_vlm(str(recipe.model), dtype, say)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    name = str(recipe.model)
    say(f"loading {name}")
    try:
        return AutoTokenizer.from_pretrained(name), AutoModelForCausalLM.from_pretrained(name, dtype=dtype)
    except (OSError, ValueError, KeyError, TypeError) as e:
        reason = one_line(e, 300)
        raise ValueError(f"cannot load text policy {name!r}: {reason}; set model to a causal LM folder") from e


def sample_completions(recipe: GRPORecipe, processor, model, row: dict, g: int) -> list[str]:
    """``g`` sampled completions of the policy for one prompt row (the recipe's temperature, top_p and length)."""
    if recipe.policy == "text":
        text = processor.apply_chat_template(row["prompt"], tokenize=False, add_generation_prompt=True)
        inputs = processor([text], return_tensors="pt").to(model.device)
    else:
        messages = [
            {"role": "system", "content": row["prompt"][0]["content"]},
            {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": row["prompt"][1]["content"]}]},
        ]
        text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        inputs = processor(text=[text], images=[row["image"]], return_tensors="pt").to(model.device)
    with torch.no_grad():
        ids = model.generate(
            **inputs,
            do_sample=True,
            temperature=float(recipe.temperature),
            top_p=float(recipe.top_p),
            max_new_tokens=int(recipe.max_completion_length),
            num_return_sequences=g,
        )
    return processor.batch_decode(ids[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)


def _report_to(value, say) -> list[str]:
    wanted = [value] if isinstance(value, str) else list(value or [])
    if "tensorboard" in wanted and importlib.util.find_spec("tensorboard") is None:
        say("tensorboard is not installed (pip install 'reason-restore[rl]'); logging to the manifest only")
        wanted.remove("tensorboard")
    return wanted or ["none"]


def grpo_settings(recipe: GRPORecipe, out: Path, use_cpu: bool, dtype, say=lambda _m: None) -> dict:
    """GRPOConfig keyword arguments for a validated recipe."""
    settings = dict(
        **trainer_settings(recipe, out, use_cpu, dtype),
        steps_per_generation=recipe.steps_per_generation,
        num_generations=int(recipe.num_generations),
        max_completion_length=int(recipe.max_completion_length),
        temperature=float(recipe.temperature),
        top_p=float(recipe.top_p),
        beta=float(recipe.beta),
        loss_type=recipe.loss_type,
        scale_rewards=recipe.scale_rewards,
        reward_weights=recipe.reward_weights,
        use_vllm=bool(recipe.use_vllm),
        **{f"vllm_{k}": v for k, v in (recipe.vllm or {}).items()},
        log_completions=bool(recipe.log_completions),
        num_completions_to_print=int(recipe.num_completions_to_print or 0),  # 0: none printed
        report_to=_report_to(recipe.report_to, say),
        save_strategy="steps" if int(recipe.save_steps or 0) > 0 else "no",
        save_steps=int(recipe.save_steps or 0) or 500,
        save_total_limit=recipe.save_total_limit,
    )
    settings.update(recipe.trainer)
    return settings


def train_grpo(config: str | Path | dict | GRPORecipe, overrides: list[str] | dict | None = None, log=None) -> Path:
    """GRPO-train a Qwen3-VL checkpoint on an ``rnr synth`` set; returns the output checkpoint folder.

    Args:
        config: a YAML recipe path (see ``rl/recipes/grpo.yaml``), a dict of its fields, or a :class:`GRPORecipe`.
        overrides: ``["key=value", ...]`` or a dict, applied over the recipe (dotted keys for nested fields).
        log: optional callable taking one line of progress text.

    Returns:
        ``output_dir``: weights (LoRA merged), config, processor and tokenizer files, ``trainer/`` checkpoints when
        ``save_steps`` is set, and ``rnr_training.json`` (recipe, per-step log with per-reward means, KL, step
        time, versions), written last.

    """
    recipe = GRPORecipe.load(config, overrides)
    say = log or (lambda _msg: None)
    resume = recipe.resume_from_checkpoint if recipe.resume_from_checkpoint not in (None, False) else None
    out = prepare_output(recipe, resuming=resume is not None)
    use_cpu, dtype = resolve_device(recipe)
    train = policy_dataset(recipe)
    say(f"{len(train)} samples from {recipe.dataset}")
    with reward_engine(recipe) as engine:
        reward_funcs = policy_rewards(recipe, engine)[0]
        processor, model = load_policy(recipe, dtype, say)
        base = BaseGeneration(model)
        if recipe.freeze_vision and recipe.policy == "vlm":
            freeze_vision(model)

        args = GRPOConfig(**grpo_settings(recipe, out, use_cpu, dtype, say))
        timer = StepMonitor(say)
        callbacks = [timer]
        if "tensorboard" in args.report_to and int(recipe.log_samples or 0) > 0:
            from rl.tb_samples import CompletionSamples

            every, n = int(recipe.log_samples_every or 1), int(recipe.log_samples)
            callbacks.append(CompletionSamples(reward_funcs, every, n))
        trainer = GRPOTrainer(
            model=model,
            reward_funcs=reward_funcs,
            args=args,
            train_dataset=train,
            processing_class=processor,
            peft_config=lora_config(recipe),
            callbacks=callbacks,
        )
        trainer.remove_callback(PrinterCallback)
        for cb in callbacks[1:]:
            cb.bind(trainer)
        say(f"training: {args.max_steps} steps, rewards {dict(zip(trainer.reward_func_names, args.reward_weights))}")
        # TRL prints completion tables with rich to stdout; stdout is reserved for the CLI's JSON summary.
        with contextlib.redirect_stdout(sys.stderr):
            result = trainer.train(resume_from_checkpoint=resume)

    if not trainer.is_world_process_zero():
        return out
    save_trained(trainer, recipe, processor, base, out)
    history = [h for h in trainer.state.log_history if "reward" in h]
    manifest = {
        "format": "rnr.grpo_run",
        "recipe": recipe.model_dump(mode="json"),
        "samples": len(train),
        "rewards": dict(zip(trainer.reward_func_names, args.reward_weights, strict=True)),
        "global_step": trainer.state.global_step,
        "train_loss": result.training_loss,
        "first_reward": history[0]["reward"] if history else None,
        "final_reward": history[-1]["reward"] if history else None,
        "log_history": trainer.state.log_history,
        "step_time_s": timer.mean_step_time(),
        "train_runtime_s": result.metrics.get("train_runtime"),
        "versions": versions(),
    }
    if result.training_loss is not None and not math.isfinite(result.training_loss):
        say(f"warning: training loss is {result.training_loss}")
    write_manifest(out, manifest)
    say(f"wrote {out}")
    return out


def dry_run(
    config: str | Path | dict | GRPORecipe, overrides: list[str] | dict | None = None, samples: int = 4, log=None
) -> dict:
    """Evaluate every reward on the policy's unconstrained generations for a few samples; no training.

    Returns ``{"samples": n, "generations": g, "rewards": {name: {"weight", "mean", "min", "max", "none"}},
    "rows": [{"index", "kinds", "completion", <reward name>: value, ...}]}``.
    """
    import numpy as np

    recipe = GRPORecipe.load(config, overrides)
    say = log or (lambda _msg: None)
    use_cpu, dtype = resolve_device(recipe)
    data = policy_dataset(recipe)
    n = min(int(samples), len(data))
    g = int(recipe.num_generations)
    rows: list[dict] = []
    with reward_engine(recipe) as engine:
        reward_funcs, weights = policy_rewards(recipe, engine)
        processor, model = load_policy(recipe, dtype, say)
        model.to("cpu" if use_cpu else "cuda").eval()
        scores: dict[str, list] = {f.__name__: [] for f in reward_funcs}
        torch.manual_seed(int(recipe.seed))
        for i in range(n):
            row = data[i]
            texts = sample_completions(recipe, processor, model, row, g)
            completions = [[{"role": "assistant", "content": t}] for t in texts]
            cols = ("pixels", "record", "clean", "stats") if recipe.policy == "text" else ("image", "record", "clean")
            columns = {k: [row[k]] * g for k in cols}
            values = {
                f.__name__: f(prompts=[row["prompt"]] * g, completions=completions, **columns) for f in reward_funcs
            }
            kinds = [d["kind"] for d in json.loads(row["record"])["degradations"]]
            for j, t in enumerate(texts):
                rows.append({"index": i, "kinds": kinds, "completion": t[:200]} | {k: v[j] for k, v in values.items()})
            for k, v in values.items():
                scores[k].extend(v)
            say(f"sample {i}: " + ", ".join(f"{k} {_fmt(v)}" for k, v in values.items()))
    table = {}
    for (name, vals), weight in zip(scores.items(), weights, strict=True):
        got = [v for v in vals if v is not None]
        table[name] = {
            "weight": weight,
            "mean": float(np.mean(got)) if got else None,
            "min": min(got) if got else None,
            "max": max(got) if got else None,
            "none": len(vals) - len(got),
        }
    return {"samples": n, "generations": g, "rewards": table, "rows": rows}


def _fmt(values: list) -> str:
    return "[" + " ".join("None" if v is None else f"{v:.3g}" for v in values) + "]"
