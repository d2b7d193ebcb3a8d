"""Supervised fine-tuning of a Qwen3-VL reasoner on a set written by :mod:`rl.synth`, with TRL's ``SFTTrainer``.

Each sample becomes a conversational prompt-completion pair: the ``diagnose`` prompt (system, then the image and the
user text, exactly as the model backends send it) and the target completion as the assistant turn. The loss is on
the completion only (TRL masks the prompt, image tokens included); the completion ends with the chat template's
end-of-turn token, so the model learns to stop. LoRA (peft) is optional; its adapter is merged into the saved
weights, so the output folder is a plain checkpoint (weights, config, tokenizer, chat template, processor) that
``reasoner.qwen3vl.Qwen3VLReasoner(model=OUT)`` and ``rnr diagnose --reasoner qwen3vl`` load as they are.

The recipe is YAML (``rl/recipes/sft.yaml`` documents every field); :func:`train_sft` takes its path or a dict, plus
``key=value`` overrides with dotted keys (``lora.r=8``). Imports torch, transformers, TRL and peft.
"""

from __future__ import annotations

import copy
import json
import math
import shutil
import time
from pathlib import Path
from typing import Any

try:
    import torch
    import transformers
    import trl
    from transformers import AutoModelForImageTextToText, PrinterCallback, TrainerCallback
    from trl import SFTConfig, SFTTrainer
except ImportError as e:  # pragma: no cover - depends on the install
    raise ImportError(
        f"SFT needs torch, transformers and TRL ({e}); install with: pip install 'reason-restore[rl,vlm]'"
    ) from e

from reasoner.hf_processor import load_processor
from reasoner.version import rnr_version
from rl.synth import load_dataset

#: Every recipe field and its default; ``None`` for ``model``/``dataset``/``output_dir`` means required.
DEFAULTS: dict[str, Any] = {
    "model": None,
    "dataset": None,
    "output_dir": None,
    "overwrite": False,
    "max_samples": None,
    "max_steps": 1000,
    "num_train_epochs": 1.0,
    "learning_rate": 1e-4,
    "per_device_train_batch_size": 1,
    "gradient_accumulation_steps": 8,
    "lr_scheduler_type": "cosine",
    "warmup_steps": 0.03,
    "weight_decay": 0.0,
    "max_grad_norm": 1.0,
    "max_length": None,
    "completion_only_loss": True,
    "freeze_vision": True,
    "device": "auto",
    "dtype": "auto",
    "gradient_checkpointing": False,
    "logging_steps": 10,
    "seed": 0,
    "lora": None,
    "trainer": {},
}
LORA_DEFAULTS: dict[str, Any] = {
    "r": 16,
    "alpha": 32,
    "dropout": 0.05,
    "target_modules": r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)",
}
#: Written last into the output folder: its presence means the checkpoint is complete.
MANIFEST = "rnr_training.json"
#: Files of a base checkpoint folder that are weights or model config, i.e. not copied next to the trained weights.
_MODEL_FILES = (
    "config.json",
    "generation_config.json",
    "model.safetensors.index.json",
    "pytorch_model.bin.index.json",
)


class SFTConfigError(ValueError):
    """A recipe the user can fix; the message is one line."""


def _coerce(text: str) -> Any:
    import yaml

    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, str):
        try:
            return float(value)  # YAML 1.1 reads 2e-4 (no dot) as a string
        except ValueError:
            pass
    return value


def apply_overrides(config: dict, items: list[str] | dict | None) -> dict:
    """``config`` with ``key=value`` items (YAML values, dotted keys into nested dicts) applied; a new dict."""
    out = copy.deepcopy(config)
    pairs = items.items() if isinstance(items, dict) else []
    if isinstance(items, list):
        pairs = []
        for item in items:
            key, sep, value = item.partition("=")
            if not sep or not key.strip():
                raise SFTConfigError(f"override {item!r} is not KEY=VALUE (e.g. max_steps=10 or lora.r=8)")
            pairs.append((key.strip(), _coerce(value)))
    for key, value in pairs:
        *parents, leaf = key.split(".")
        node = out
        for p in parents:
            if node.get(p) is None:
                node[p] = {}
            if not isinstance(node[p], dict):
                raise SFTConfigError(f"override {key!r}: {p!r} is not a mapping")
            node = node[p]
        node[leaf] = value
    return out


def merge_recipe(
    config: str | Path | dict,
    overrides: list[str] | dict | None,
    defaults: dict,
    example: str,
    error: type[SFTConfigError] = SFTConfigError,
) -> dict:
    """``config`` (a YAML path or a dict) over ``defaults``, then ``overrides``; checks what both recipes share.

    Unknown fields, missing ``model``/``dataset``/``output_dir`` and a bad ``lora`` block raise ``error``; LoRA
    settings are completed with :data:`LORA_DEFAULTS`.

    Shared by the SFT and GRPO recipes; ``example`` names the recipe file quoted in messages.
    """
    if isinstance(config, (str, Path)):
        import yaml

        path = Path(config)
        if not path.is_file():
            raise error(f"recipe {path} does not exist; see {example} for an example")
        raw = yaml.safe_load(path.read_text()) or {}
        if not isinstance(raw, dict):
            raise error(f"recipe {path} must be a YAML mapping of field: value")
    else:
        raw = dict(config)
    try:
        cfg = apply_overrides({**defaults, **raw}, overrides)
    except SFTConfigError as e:
        raise error(str(e)) from None
    unknown = sorted(set(cfg) - set(defaults))
    if unknown:
        raise error(f"unknown recipe field(s) {unknown}; known: {sorted(defaults)} (others go under trainer:)")
    missing = [k for k in ("model", "dataset", "output_dir") if not cfg[k]]
    if missing:
        raise error(f"recipe needs {missing}; set them in the YAML or with --set {missing[0]}=...")
    if cfg.get("lora") is not None:
        if not isinstance(cfg["lora"], dict):
            raise error("lora must be a mapping (r, alpha, dropout, target_modules) or null")
        bad = sorted(set(cfg["lora"]) - set(LORA_DEFAULTS))
        if bad:
            raise error(f"unknown lora field(s) {bad}; known: {sorted(LORA_DEFAULTS)}")
        cfg["lora"] = {**LORA_DEFAULTS, **cfg["lora"]}
    return cfg


def load_config(config: str | Path | dict, overrides: list[str] | dict | None = None) -> dict:
    """The full recipe: ``config`` (a YAML path or a dict) over :data:`DEFAULTS`, then ``overrides``; validated."""
    cfg = merge_recipe(config, overrides, DEFAULTS, "rl/recipes/sft.yaml")
    if cfg["device"] not in ("auto", "cpu", "cuda"):
        raise SFTConfigError(f"device={cfg['device']!r} is not one of auto, cpu, cuda")
    if cfg["dtype"] not in ("auto", "float32", "bfloat16", "float16"):
        raise SFTConfigError(f"dtype={cfg['dtype']!r} is not one of auto, float32, bfloat16, float16")
    if not isinstance(cfg["trainer"], dict):
        raise SFTConfigError("trainer must be a mapping of extra SFTConfig fields")
    return cfg


def _prompt_dataset(path: str | Path, max_samples: int | None):
    """The synth set as TRL conversational prompt-completion rows with one ``image`` each.

    Rows are built on access (``with_transform``), so nothing is copied or cached next to the dataset.
    """
    from prompts import load_prompt

    ds = load_dataset(path)
    if max_samples is not None:
        ds = ds.select(range(min(int(max_samples), len(ds))))
    prompts = {pid: load_prompt(*pid.split("/", 1)) for pid in set(ds["prompt_id"])}

    def to_chat(batch: dict) -> dict:
        rows = zip(batch["prompt_id"], batch["width"], batch["height"], batch["target"], strict=True)
        prompt, completion = [], []
        for pid, width, height, target in rows:
            system, user = prompts[pid].render(width=width, height=height)
            # A string user turn: TRL puts the image block before its text, the order the backends send.
            prompt.append([{"role": "system", "content": system}, {"role": "user", "content": user}])
            completion.append([{"role": "assistant", "content": target}])
        return {"image": batch["image"], "prompt": prompt, "completion": completion}

    return ds.with_transform(to_chat, columns=["image", "prompt_id", "width", "height", "target"])


def _device_and_dtype(cfg: dict) -> tuple[bool, torch.dtype]:
    use_cpu = cfg["device"] == "cpu" or (cfg["device"] == "auto" and not torch.cuda.is_available())
    if cfg["device"] == "cuda" and not torch.cuda.is_available():
        raise SFTConfigError("device=cuda but no CUDA device is visible; use device=cpu or auto")
    if cfg["dtype"] != "auto":
        return use_cpu, getattr(torch, cfg["dtype"])
    # bf16 only where the hardware has it; CPU training stays in float32 (bf16 autocast is slow there).
    bf16 = not use_cpu and torch.cuda.is_bf16_supported()
    return use_cpu, torch.bfloat16 if bf16 else torch.float32


def common_trainer_settings(cfg: dict, out: Path, use_cpu: bool, dtype) -> dict:
    """TRL config fields the SFT and GRPO recipes share (optimisation, precision, logging, data loading)."""
    return dict(
        output_dir=str(out / "trainer"),
        max_steps=int(cfg["max_steps"]),
        num_train_epochs=float(cfg["num_train_epochs"]),
        learning_rate=float(cfg["learning_rate"]),
        per_device_train_batch_size=int(cfg["per_device_train_batch_size"]),
        gradient_accumulation_steps=int(cfg["gradient_accumulation_steps"]),
        lr_scheduler_type=cfg["lr_scheduler_type"],
        warmup_steps=float(cfg["warmup_steps"]),
        max_grad_norm=float(cfg["max_grad_norm"]),
        **_checkpointing(bool(cfg["gradient_checkpointing"])),
        use_cpu=use_cpu,
        bf16=dtype == torch.bfloat16,
        fp16=dtype == torch.float16,
        logging_steps=int(cfg["logging_steps"]),
        seed=int(cfg["seed"]),
        dataloader_num_workers=0,
        remove_unused_columns=False,  # rows are built on access from columns the model does not take
        disable_tqdm=True,  # progress goes through `log` (stderr in the CLI), never to stdout
    )


def _checkpointing(on: bool) -> dict[str, bool]:
    # transformers >= 5.2x renamed the field; TRL's default for the old name would otherwise win with a warning.
    if "activation_checkpointing" in SFTConfig.__dataclass_fields__:
        return {"activation_checkpointing": on, "gradient_checkpointing": None}
    return {"gradient_checkpointing": on}


class _Monitor(TrainerCallback):
    """Wall time per optimiser step; logged metrics go to ``say`` as one line each."""

    def __init__(self, say):
        self.times: list[float] = []
        self._t = None
        self._say = say

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            shown = ", ".join(f"{k} {v:.4g}" for k, v in logs.items() if isinstance(v, float) and k != "epoch")
            self._say(f"step {state.global_step}/{state.max_steps}: {shown}")

    def on_step_begin(self, args, state, control, **kwargs):
        self._t = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        if self._t is not None:
            self.times.append(time.perf_counter() - self._t)


def _load_model(name: str, dtype: torch.dtype, say):
    """(processor, model) of a Qwen3-VL checkpoint folder or hub id, with a one-line error when it cannot load."""
    path = Path(name).expanduser()
    if (path.exists() or name.startswith((".", "/", "~"))) and not path.is_dir():
        raise FileNotFoundError(f"model folder {name} does not exist; set model to a Qwen3-VL checkpoint or hub id")
    say(f"loading {name}")
    try:
        return load_processor(name), AutoModelForImageTextToText.from_pretrained(name, dtype=dtype)
    except (OSError, ValueError, KeyError, TypeError) as e:
        reason = " ".join(str(e).split())[:300] or type(e).__name__
        raise ValueError(f"cannot load model {name!r}: {reason}") from e


def _save_processor(base: str, processor, out: Path) -> None:
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


def train_sft(config: str | Path | dict, overrides: list[str] | dict | None = None, log=None) -> Path:
    """Fine-tune a Qwen3-VL checkpoint on an ``rnr synth`` set; returns the output checkpoint folder.

    Args:
        config: a YAML recipe path (see ``rl/recipes/sft.yaml``) or a dict of its fields.
        overrides: ``["key=value", ...]`` or a dict, applied over the recipe (dotted keys for nested fields).
        log: optional callable taking one line of progress text.

    Returns:
        ``output_dir``: weights (LoRA merged), config, generation config, processor and tokenizer files, and
        ``rnr_training.json`` (recipe, per-step log, step time, versions), written last.

    """
    cfg = load_config(config, overrides)
    say = log or (lambda _msg: None)
    out = Path(cfg["output_dir"])
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        if not cfg["overwrite"]:
            raise FileExistsError(f"{out} is not empty; choose another output_dir or set overwrite: true")
        shutil.rmtree(out) if out.is_dir() else out.unlink()
    use_cpu, dtype = _device_and_dtype(cfg)

    train = _prompt_dataset(cfg["dataset"], cfg["max_samples"])  # before the model: a bad path fails fast
    say(f"{len(train)} samples from {cfg['dataset']}")
    processor, model = _load_model(str(cfg["model"]), dtype, say)
    base_generation = copy.deepcopy(model.generation_config)
    base_eos = model.config.get_text_config().eos_token_id
    if cfg["freeze_vision"]:
        for name, p in model.named_parameters():
            if ".visual." in f".{name}":
                p.requires_grad_(False)

    peft_config = None
    if cfg["lora"] is not None:
        from peft import LoraConfig

        lc = cfg["lora"]
        peft_config = LoraConfig(
            r=int(lc["r"]),
            lora_alpha=float(lc["alpha"]),
            lora_dropout=float(lc["dropout"]),
            target_modules=lc["target_modules"],
            task_type="CAUSAL_LM",
        )

    settings = dict(
        **common_trainer_settings(cfg, out, use_cpu, dtype),
        weight_decay=float(cfg["weight_decay"]),
        # Truncation would cut completions (or image tokens, which breaks the forward pass); keep it off unless asked.
        max_length=cfg["max_length"],
        completion_only_loss=bool(cfg["completion_only_loss"]),
        save_strategy="no",
        report_to="none",
    )
    settings.update(cfg["trainer"])  # the recipe's escape hatch wins
    args = SFTConfig(**settings)
    timer = _Monitor(say)
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=train,
        processing_class=processor,
        peft_config=peft_config,
        callbacks=[timer],
    )
    trainer.remove_callback(PrinterCallback)  # it prints every log dict to stdout
    say(f"training: {args.max_steps} steps, device {'cpu' if use_cpu else 'cuda'}, dtype {str(dtype)[6:]}")
    result = trainer.train()

    if not trainer.is_world_process_zero():  # under `accelerate launch`, one process writes the checkpoint
        return out
    trained = trainer.model
    if peft_config is not None:
        trained = trained.merge_and_unload()  # the backends load plain checkpoints, not adapters
    # Training aligns special-token ids with the tokenizer; keep the base model's stop tokens for generation.
    trained.generation_config = base_generation
    trained.config.get_text_config().eos_token_id = base_eos
    out.mkdir(parents=True, exist_ok=True)
    trained.save_pretrained(out)
    _save_processor(str(cfg["model"]), processor, out)
    trainer_dir = out / "trainer"
    if trainer_dir.is_dir() and not any(trainer_dir.rglob("*")):
        trainer_dir.rmdir()

    history = [h for h in trainer.state.log_history if "loss" in h]
    steps = timer.times[1:] or timer.times
    manifest = {
        "format": "rnr.sft_run",
        "recipe": {k: (str(v) if isinstance(v, Path) else v) for k, v in cfg.items()},
        "samples": len(train),
        "global_step": trainer.state.global_step,
        "train_loss": result.training_loss,
        "final_loss": history[-1]["loss"] if history else result.training_loss,
        "log_history": trainer.state.log_history,
        "step_time_s": (sum(steps) / len(steps)) if steps else None,
        "train_runtime_s": result.metrics.get("train_runtime"),
        "versions": {
            "rnr": rnr_version(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "trl": trl.__version__,
        },
    }
    if manifest["final_loss"] is not None and not math.isfinite(manifest["final_loss"]):
        say(f"warning: final loss is {manifest['final_loss']}")
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str) + "\n")
    say(f"wrote {out}")
    return out


def read_manifest(out_dir: str | Path) -> dict:
    """The ``rnr_training.json`` of a finished run (recipe, log history, step time, versions)."""
    path = Path(out_dir) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{out_dir} has no {MANIFEST}; it is not a finished `rnr train sft` output")
    return json.loads(path.read_text())
