"""Supervised fine-tuning of a Qwen3-VL reasoner on a set written by :mod:`rl.synth`, with TRL's ``SFTTrainer``.

Each sample becomes a conversational prompt-completion pair: the ``diagnose`` prompt (system, then the image and the
user text, exactly as the model backends send it) and the target completion as the assistant turn. The loss is on
the completion only (TRL masks the prompt, image tokens included); the completion ends with the chat template's
end-of-turn token, so the model learns to stop. LoRA (peft) is optional; its adapter is merged into the saved
weights, so the output folder is a plain checkpoint (weights, config, tokenizer, chat template, processor) that
``reasoner.qwen3vl.Qwen3VLReasoner(model=OUT)`` and ``rnr diagnose --reasoner qwen3vl`` load as they are.

The recipe is :class:`rl.recipe.SFTRecipe` (``rl/recipes/sft.yaml`` documents every field); :func:`train_sft`
takes its path, a dict or the recipe, plus ``key=value`` overrides with dotted keys (``lora.r=8``). The steps it
shares with GRPO live in :mod:`rl.training`. Imports torch, transformers, TRL and peft.
"""

from __future__ import annotations

import math
from pathlib import Path

try:
    from transformers import PrinterCallback
    from trl import SFTConfig, SFTTrainer
except ImportError as e:  # pragma: no cover - depends on the install
    raise ImportError(
        f"SFT needs torch, transformers and TRL ({e}); install with: pip install 'reason-restore[rl,vlm]'"
    ) from e

from rl.recipe import SFTRecipe
from rl.synth import sft_dataset
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


def train_sft(config: str | Path | dict | SFTRecipe, overrides: list[str] | dict | None = None, log=None) -> Path:
    """Fine-tune a Qwen3-VL checkpoint on an ``rnr synth`` set; returns the output checkpoint folder.

    Args:
        config: a YAML recipe path (see ``rl/recipes/sft.yaml``), a dict of its fields, or an :class:`SFTRecipe`.
        overrides: ``["key=value", ...]`` or a dict, applied over the recipe (dotted keys for nested fields).
        log: optional callable taking one line of progress text.

    Returns:
        ``output_dir``: weights (LoRA merged), config, generation config, processor and tokenizer files, and
        ``rnr_training.json`` (recipe, per-step log, step time, versions), written last.

    """
    recipe = SFTRecipe.load(config, overrides)
    say = log or (lambda _msg: None)
    out = prepare_output(recipe)
    use_cpu, dtype = resolve_device(recipe)

    train = sft_dataset(recipe.dataset, recipe.max_samples)  # before the model: a bad path fails fast
    say(f"{len(train)} samples from {recipe.dataset}")
    processor, model = load_vlm(str(recipe.model), dtype, say)
    base = BaseGeneration(model)
    if recipe.freeze_vision:
        freeze_vision(model)

    settings = dict(
        **trainer_settings(recipe, out, use_cpu, dtype),
        weight_decay=float(recipe.weight_decay),
        # Truncation would cut completions (or image tokens, which breaks the forward pass); keep it off unless asked.
        max_length=recipe.max_length,
        completion_only_loss=bool(recipe.completion_only_loss),
        save_strategy="no",
        report_to="none",
    )
    settings.update(recipe.trainer)  # the recipe's escape hatch wins
    args = SFTConfig(**settings)
    timer = StepMonitor(say)
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=train,
        processing_class=processor,
        peft_config=lora_config(recipe),
        callbacks=[timer],
    )
    trainer.remove_callback(PrinterCallback)  # it prints every log dict to stdout
    say(f"training: {args.max_steps} steps, device {'cpu' if use_cpu else 'cuda'}, dtype {str(dtype)[6:]}")
    result = trainer.train()

    if not trainer.is_world_process_zero():  # under `accelerate launch`, one process writes the checkpoint
        return out
    save_trained(trainer, recipe, processor, base, out)
    history = [h for h in trainer.state.log_history if "loss" in h]
    manifest = {
        "format": "rnr.sft_run",
        "recipe": recipe.model_dump(mode="json"),
        "samples": len(train),
        "global_step": trainer.state.global_step,
        "train_loss": result.training_loss,
        "final_loss": history[-1]["loss"] if history else result.training_loss,
        "log_history": trainer.state.log_history,
        "step_time_s": timer.mean_step_time(),
        "train_runtime_s": result.metrics.get("train_runtime"),
        "versions": versions(),
    }
    if manifest["final_loss"] is not None and not math.isfinite(manifest["final_loss"]):
        say(f"warning: final loss is {manifest['final_loss']}")
    write_manifest(out, manifest)
    say(f"wrote {out}")
    return out
