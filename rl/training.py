"""The training steps SFT (:mod:`rl.sft`) and GRPO (:mod:`rl.grpo`) share.

Device and dtype, model loading, trainer settings, step timing, and writing the output checkpoint with its manifest.

The output folder of either is a plain checkpoint (weights with LoRA merged, config, generation config, processor
or tokenizer files) that ``reasoner.qwen3vl.Qwen3VLReasoner(model=OUT)`` loads, and ``rnr_training.json`` (the
recipe, log history, step time, versions), written last: its presence means the checkpoint is complete.
Imports torch and transformers.
"""

from __future__ import annotations

import copy
import json
import shutil
import time
from pathlib import Path
from typing import Any

try:
    import torch
    import transformers
    import trl
    from transformers import AutoModelForImageTextToText, TrainerCallback, TrainingArguments
except ImportError as e:  # pragma: no cover - depends on the install
    raise ImportError(
        f"training needs torch, transformers and TRL ({e}); install with: pip install 'reason-restore[rl,vlm]'"
    ) from e

from reasoner.common import one_line, torch_dtype
from reasoner.hf_processor import load_processor
from reasoner.version import rnr_version
from rl.recipe import RecipeError, TrainingRecipe

#: Written last into the output folder: its presence means the checkpoint is complete.
MANIFEST = "rnr_training.json"
#: Files of a base checkpoint folder that are weights or model config, i.e. not copied next to the trained weights.
_MODEL_FILES = (
    "config.json",
    "generation_config.json",
    "model.safetensors.index.json",
    "pytorch_model.bin.index.json",
)


def resolve_device(recipe: TrainingRecipe) -> tuple[bool, torch.dtype]:
    """``(use_cpu, dtype)`` of a recipe's ``device`` and ``dtype``.

    Raises:
        RecipeError: ``device: cuda`` without a visible CUDA device.

    """
    use_cpu = recipe.device == "cpu" or (recipe.device == "auto" and not torch.cuda.is_available())
    if recipe.device == "cuda" and not torch.cuda.is_available():
        raise RecipeError("device=cuda but no CUDA device is visible; use device=cpu or auto")
    if recipe.dtype != "auto":
        return use_cpu, torch_dtype(recipe.dtype)
    # bf16 only where the hardware has it; CPU training stays in float32 (bf16 autocast is slow there).
    bf16 = not use_cpu and torch.cuda.is_bf16_supported()
    return use_cpu, torch.bfloat16 if bf16 else torch.float32


def trainer_settings(recipe: TrainingRecipe, out: Path, use_cpu: bool, dtype) -> dict:
    """TRL config fields the SFT and GRPO recipes share (optimisation, precision, logging, data loading)."""
    return dict(
        output_dir=str(out / "trainer"),
        max_steps=int(recipe.max_steps),
        num_train_epochs=float(recipe.num_train_epochs),
        learning_rate=float(recipe.learning_rate),
        per_device_train_batch_size=int(recipe.per_device_train_batch_size),
        gradient_accumulation_steps=int(recipe.gradient_accumulation_steps),
        lr_scheduler_type=recipe.lr_scheduler_type,
        warmup_steps=float(recipe.warmup_steps),
        max_grad_norm=float(recipe.max_grad_norm),
        **_checkpointing(bool(recipe.gradient_checkpointing)),
        use_cpu=use_cpu,
        bf16=dtype == torch.bfloat16,
        fp16=dtype == torch.float16,
        logging_steps=int(recipe.logging_steps),
        seed=int(recipe.seed),
        dataloader_num_workers=0,
        remove_unused_columns=False,  # rows are built on access from columns the model does not take
        disable_tqdm=True,  # progress goes through `log` (stderr in the CLI), never to stdout
    )


def _checkpointing(on: bool) -> dict[str, bool]:
    # transformers >= 5.2x renamed the field; TRL's default for the old name would otherwise win with a warning.
    if "activation_checkpointing" in TrainingArguments.__dataclass_fields__:
        return {"activation_checkpointing": on, "gradient_checkpointing": None}
    return {"gradient_checkpointing": on}


def lora_config(recipe: TrainingRecipe):
    """The peft ``LoraConfig`` of the recipe's ``lora`` block, or ``None`` for full fine-tuning."""
    if recipe.lora is None:
        return None
    from peft import LoraConfig

    lc = recipe.lora
    return LoraConfig(
        r=int(lc.r),
        lora_alpha=float(lc.alpha),
        lora_dropout=float(lc.dropout),
        target_modules=lc.target_modules,
        task_type="CAUSAL_LM",
    )


class StepMonitor(TrainerCallback):
    """Wall time per optimiser step; logged metrics go to ``say`` as one line each."""

    def __init__(self, say):
        self.times: list[float] = []
        self._t = None
        self._say = say

    def on_log(self, args, state, control, logs=None, **kwargs):
        """Say the logged floats of a training step in one line."""
        if logs and "loss" in logs:
            shown = ", ".join(f"{k} {v:.4g}" for k, v in logs.items() if isinstance(v, float) and k != "epoch")
            self._say(f"step {state.global_step}/{state.max_steps}: {shown}")

    def on_step_begin(self, args, state, control, **kwargs):
        """Start the step's clock."""
        self._t = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        """Record the step's wall time."""
        if self._t is not None:
            self.times.append(time.perf_counter() - self._t)

    def mean_step_time(self) -> float | None:
        """Mean seconds per step, the first (warm-up) step left out when there are others."""
        steps = self.times[1:] or self.times
        return (sum(steps) / len(steps)) if steps else None


def load_vlm(name: str, dtype: torch.dtype, say):
    """(processor, model) of a Qwen3-VL checkpoint folder or hub id, with a one-line error when it cannot load."""
    path = Path(name).expanduser()
    if (path.exists() or name.startswith((".", "/", "~"))) and not path.is_dir():
        raise FileNotFoundError(f"model folder {name} does not exist; set model to a Qwen3-VL checkpoint or hub id")
    say(f"loading {name}")
    try:
        return load_processor(name), AutoModelForImageTextToText.from_pretrained(name, dtype=dtype)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"cannot load model {name!r}: {one_line(e, 300)}") from e


def freeze_vision(model) -> None:
    """Keep the vision encoder's weights fixed (parameters under a ``visual`` module)."""
    for name, p in model.named_parameters():
        if ".visual." in f".{name}":
            p.requires_grad_(False)


def prepare_output(recipe: TrainingRecipe, resuming: bool | None = None) -> Path:
    """The recipe's ``output_dir``, emptied when ``overwrite`` allows it.

    Args:
        recipe: The recipe.
        resuming: Whether the run resumes from a checkpoint in the folder (kept then); ``None`` where the trainer
            cannot resume.

    Raises:
        FileExistsError: When the folder holds files, the run does not resume and ``overwrite`` is off.

    """
    out = Path(recipe.output_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not resuming:
        if not recipe.overwrite:
            hint = " or set overwrite: true" if resuming is None else ", set overwrite: true or resume"
            raise FileExistsError(f"{out} is not empty; choose another output_dir{hint}")
        shutil.rmtree(out) if out.is_dir() else out.unlink()
    return out


class BaseGeneration:
    """The base model's generation config and stop tokens, taken before training and put back before saving.

    Training aligns special-token ids with the tokenizer; generation must keep the base model's stop tokens.
    """

    def __init__(self, model) -> None:
        self.config = copy.deepcopy(model.generation_config)
        self.eos = model.config.get_text_config().eos_token_id

    def restore(self, model) -> None:
        """Put the base model's generation config and stop tokens back on ``model``."""
        model.generation_config = self.config
        model.config.get_text_config().eos_token_id = self.eos


def save_trained(trainer, recipe: TrainingRecipe, processor, base: BaseGeneration, out: Path) -> None:
    """Write the trained weights (LoRA merged), the base generation settings and the processor files to ``out``."""
    trained = trainer.model
    if recipe.lora is not None:
        trained = trained.merge_and_unload()  # the backends load plain checkpoints, not adapters
    base.restore(trained)
    out.mkdir(parents=True, exist_ok=True)
    trained.save_pretrained(out)
    save_processor(str(recipe.model), processor, out)
    trainer_dir = out / "trainer"
    if trainer_dir.is_dir() and not any(trainer_dir.rglob("*")):
        trainer_dir.rmdir()


def save_processor(base: str, processor, out: Path) -> None:
    """Copy the base folder's tokenizer, chat template and processor files next to the weights (or save them)."""
    src = Path(base)
    if src.is_dir():
        # The base folder's tokenizer, chat template and processor files, byte for byte: prompts render and
        # tokenize exactly as they did for the base model.
        for f in src.iterdir():
            if f.is_file() and f.name not in _MODEL_FILES and f.suffix not in (".safetensors", ".bin", ".pt"):
                shutil.copy2(f, out / f.name)
        return
    processor.save_pretrained(out)
    cfg = out / "processor_config.json"
    if cfg.is_file():
        # Name the upstream class, as real checkpoints do, so installs with torchvision load the full processor.
        data = json.loads(cfg.read_text())
        data["processor_class"] = "Qwen3VLProcessor"
        cfg.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def versions() -> dict[str, str]:
    """Versions of the packages a training run depends on, for the manifest."""
    return {
        "rnr": rnr_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "trl": trl.__version__,
    }


def write_manifest(out: Path, manifest: dict[str, Any]) -> Path:
    """Write ``rnr_training.json`` into ``out`` (last: it marks the checkpoint complete)."""
    path = out / MANIFEST
    path.write_text(json.dumps(manifest, indent=2, default=str) + "\n")
    return path


def read_manifest(out_dir: str | Path) -> dict:
    """The ``rnr_training.json`` of a finished run (recipe, log history, step time, versions)."""
    path = Path(out_dir) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{out_dir} has no {MANIFEST}; it is not a finished `rnr train` output")
    return json.loads(path.read_text())
