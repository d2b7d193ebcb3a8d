"""GRPO of a Qwen3-VL reasoner on an ``rnr synth`` set with TRL's ``GRPOTrainer`` and the rewards of :mod:`rl.rewards`.

The policy sees the ``diagnose`` prompt with the image (exactly as the backends send it) and writes a completion
freely (no grammar: the ``format`` reward teaches the JSON). Each completion is parsed into a record, its plan is
executed by the restorer, the result re-scored by an independent scorer, and the weighted rewards of the recipe
become GRPO advantages. Synthetic rows also carry the clean crop (regenerated deterministically from the set's
generator settings), which the fidelity guard compares against.

The recipe is YAML (``rl/recipes/grpo.yaml`` documents every field); overrides are ``key=value`` with dotted keys,
as for :mod:`rl.sft`, whose loading, device and saving helpers this module reuses. The output folder is a plain
checkpoint that ``Qwen3VLReasoner(model=OUT)`` loads. Imports torch, transformers, TRL and peft.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import json
import math
import shutil
import sys
from functools import cache
from pathlib import Path
from typing import Any

try:
    import torch
    import transformers
    import trl
    from transformers import PrinterCallback
    from trl import GRPOConfig, GRPOTrainer
except ImportError as e:  # pragma: no cover - depends on the install
    raise ImportError(
        f"GRPO needs torch, transformers and TRL ({e}); install with: pip install 'reason-restore[rl,vlm]'"
    ) from e

from reasoner.version import rnr_version
from rl.rewards import REWARDS, build_rewards, shutdown
from rl.sft import (
    MANIFEST,
    SFTConfigError,
    _device_and_dtype,
    _load_model,
    _Monitor,
    _save_processor,
    common_trainer_settings,
)
from rl.synth import load_dataset
from rl.text_policy import COMPLETIONS, PROMPTS, TextReward, text_prompt_dataset

#: Policies: a Qwen3-VL that sees the image, or a causal LM that reads the measured statistics (rl/text_policy.py).
POLICIES = ("vlm", "text")

#: Every recipe field and its default; ``None`` for ``model``/``dataset``/``output_dir`` means required.
DEFAULTS: dict[str, Any] = {
    "policy": "vlm",
    "completion": "json",
    "text_stats": None,
    "text_prompt": "diagnose",
    "text_bins": None,
    "model": None,
    "dataset": None,
    "output_dir": None,
    "overwrite": False,
    "max_samples": None,
    "rewards": {"format": 0.2, "severity_reduction": 1.0, "fidelity": 0.5, "diagnosis_accuracy": 0.5},
    "restorer": "classical",
    "scorer": "measure",
    "reward_workers": 1,
    "max_steps": 500,
    "num_train_epochs": 1.0,
    "learning_rate": 1e-6,
    "per_device_train_batch_size": 4,
    "gradient_accumulation_steps": 1,
    "steps_per_generation": None,
    "num_generations": 4,
    "max_completion_length": 1024,
    "temperature": 1.0,
    "top_p": 1.0,
    "beta": 0.04,
    "loss_type": "dapo",
    "scale_rewards": "group",
    "lr_scheduler_type": "constant",
    "warmup_steps": 0.0,
    "max_grad_norm": 1.0,
    "freeze_vision": True,
    "device": "auto",
    "dtype": "auto",
    "gradient_checkpointing": False,
    "use_vllm": False,
    "vllm": {},
    "logging_steps": 1,
    "log_completions": True,
    "num_completions_to_print": 0,
    "log_samples": 4,
    "log_samples_every": 10,
    "report_to": "tensorboard",
    "save_steps": 0,
    "save_total_limit": 2,
    "resume_from_checkpoint": None,
    "seed": 0,
    "lora": None,
    "trainer": {},
}
#: Fields of the ``vllm`` mapping, passed to GRPOConfig as ``vllm_<name>``.
VLLM_FIELDS = (
    "mode",
    "server_base_url",
    "server_host",
    "server_port",
    "server_timeout",
    "gpu_memory_utilization",
    "tensor_parallel_size",
    "max_model_length",
    "enable_sleep_mode",
)


class GRPOConfigError(SFTConfigError):
    """A recipe the user can fix; the message is one line."""


def load_config(config: str | Path | dict, overrides: list[str] | dict | None = None) -> dict:
    """The full recipe: ``config`` (a YAML path or a dict) over :data:`DEFAULTS`, then ``overrides``; validated."""
    from rl.sft import merge_recipe

    cfg = merge_recipe(config, overrides, DEFAULTS, "rl/recipes/grpo.yaml", GRPOConfigError)
    if not isinstance(cfg["rewards"], dict) or not cfg["rewards"]:
        raise GRPOConfigError(f"rewards must map reward names to weights; known: {sorted(REWARDS)}")
    bad = sorted(set(cfg["rewards"]) - set(REWARDS))
    if bad:
        raise GRPOConfigError(f"unknown reward(s) {bad}; known: {sorted(REWARDS)}")
    bad = sorted(set(cfg["vllm"] or {}) - set(VLLM_FIELDS))
    if bad:
        raise GRPOConfigError(f"unknown vllm field(s) {bad}; known: {list(VLLM_FIELDS)}")
    if cfg["policy"] not in POLICIES:
        raise GRPOConfigError(f"policy={cfg['policy']!r} is not one of {list(POLICIES)}")
    if cfg["completion"] not in COMPLETIONS or (cfg["policy"] == "vlm" and cfg["completion"] != "json"):
        raise GRPOConfigError(f"completion={cfg['completion']!r}: use json, or compact with policy: text")
    if cfg["text_stats"] is not None and not isinstance(cfg["text_stats"], list):
        raise GRPOConfigError("text_stats must be a list of measure statistic names, or null for all of them")
    if cfg["text_prompt"] not in PROMPTS or (cfg["text_prompt"] == "stats" and cfg["completion"] != "compact"):
        raise GRPOConfigError(f"text_prompt={cfg['text_prompt']!r}: use diagnose, or stats with completion compact")
    bins = cfg["text_bins"]
    if bins is not None and not (
        isinstance(bins, dict) and all(isinstance(v, list) and v == sorted(v) for v in bins.values())
    ):
        raise GRPOConfigError("text_bins must map statistic names to ascending lists of bin edges, or be null")
    if cfg["device"] not in ("auto", "cpu", "cuda"):
        raise GRPOConfigError(f"device={cfg['device']!r} is not one of auto, cpu, cuda")
    if cfg["dtype"] not in ("auto", "float32", "bfloat16", "float16"):
        raise GRPOConfigError(f"dtype={cfg['dtype']!r} is not one of auto, float32, bfloat16, float16")
    steps = cfg["steps_per_generation"] or cfg["gradient_accumulation_steps"]
    batch = int(cfg["per_device_train_batch_size"]) * int(steps)
    if batch % int(cfg["num_generations"]):
        raise GRPOConfigError(
            f"per_device_train_batch_size x steps_per_generation = {batch} must be divisible by num_generations "
            f"= {cfg['num_generations']}; change one of them"
        )
    if not isinstance(cfg["trainer"], dict):
        raise GRPOConfigError("trainer must be a mapping of extra GRPOConfig fields")
    return cfg


@cache
def _generator(description: str) -> dict | None:
    try:
        info = json.loads(description)
    except (TypeError, ValueError):
        return None
    return info if isinstance(info, dict) and info.get("generator") == "rl.synth.write_dataset" else None


def clean_crop(generator: dict, index: int, photo: str, seed: int):
    """The clean crop of synth sample ``index`` as ``uint8``, or ``None`` when it cannot be reproduced.

    Repeats :func:`rl.synth.make_sample`'s draws (photo, crop, sample seed) from ``(generator seed, index)``; the
    redrawn photo and sample seed must equal the row's, which checks the crop is the one the sample was made from.
    """
    import numpy as np

    from reasoner.imageio import to_uint8
    from rl.photos import load_photo
    from rl.synth import _crop

    rng = np.random.default_rng([int(generator["seed"]), int(index)])
    photos = list(generator["photos"])
    if photos[int(rng.integers(len(photos)))] != photo:
        return None
    clean = _crop(load_photo(photo), rng, *generator["size"])
    return to_uint8(clean) if int(rng.integers(2**31)) == int(seed) else None


def prompt_dataset(path: str | Path, max_samples: int | None):
    """The synth set as TRL conversational prompts with ``image``, ``record`` and ``clean`` (PIL or None) columns."""
    from PIL import Image

    from prompts import load_prompt

    ds = load_dataset(path)
    if max_samples is not None:
        ds = ds.select(range(min(int(max_samples), len(ds))))
    if "record" not in ds.column_names:
        raise ValueError(f"{path} lacks the record column; write it with `rnr synth`")
    generator = _generator(ds.info.description or "")
    ds = ds.add_column("index", list(range(len(ds))))
    prompts = {pid: load_prompt(*pid.split("/", 1)) for pid in set(ds["prompt_id"])}

    def to_chat(batch: dict) -> dict:
        prompt, clean = [], []
        for i, pid, width, height, photo, seed in zip(
            batch["index"], batch["prompt_id"], batch["width"], batch["height"], batch["photo"], batch["seed"],
            strict=True,
        ):  # fmt: skip
            system, user = prompts[pid].render(width=width, height=height)
            prompt.append([{"role": "system", "content": system}, {"role": "user", "content": user}])
            crop = clean_crop(generator, i, photo, seed) if generator else None
            clean.append(None if crop is None or crop.shape[:2] != (height, width) else Image.fromarray(crop))
        return {"prompt": prompt, "image": batch["image"], "record": batch["record"], "clean": clean}

    return ds.with_transform(
        to_chat, columns=["index", "image", "record", "prompt_id", "width", "height", "photo", "seed"]
    )


def policy_dataset(cfg: dict):
    """The training prompts of a recipe: image prompts (``vlm``) or measured-statistics prompts (``text``)."""
    if cfg["policy"] == "text":
        return text_prompt_dataset(
            cfg["dataset"], cfg["max_samples"], cfg["text_stats"], cfg["completion"], cfg["text_prompt"],
            cfg["text_bins"],
        )  # fmt: skip
    return prompt_dataset(cfg["dataset"], cfg["max_samples"])


def policy_rewards(cfg: dict) -> tuple[list, list[float]]:
    """The recipe's reward functions and weights; wrapped by :class:`rl.text_policy.TextReward` for ``text``."""
    shared = {"restorer": cfg["restorer"], "scorer": cfg["scorer"], "workers": cfg["reward_workers"]}
    fns, weights = build_rewards(cfg["rewards"], shared)
    if cfg["policy"] == "text":
        fns = [TextReward(f, compact=cfg["completion"] == "compact") for f in fns]
    return fns, weights


def load_policy(cfg: dict, dtype, say):
    """(processor or tokenizer, model) of the recipe's policy checkpoint."""
    if cfg["policy"] == "vlm":
        return _load_model(str(cfg["model"]), dtype, say)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    name = str(cfg["model"])
    say(f"loading {name}")
    try:
        return AutoTokenizer.from_pretrained(name), AutoModelForCausalLM.from_pretrained(name, dtype=dtype)
    except (OSError, ValueError, KeyError, TypeError) as e:
        reason = " ".join(str(e).split())[:300] or type(e).__name__
        raise ValueError(f"cannot load text policy {name!r}: {reason}; set model to a causal LM folder") from e


def sample_completions(cfg: dict, processor, model, row: dict, g: int) -> list[str]:
    """``g`` sampled completions of the policy for one prompt row (the recipe's temperature, top_p and length)."""
    if cfg["policy"] == "text":
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
            temperature=float(cfg["temperature"]),
            top_p=float(cfg["top_p"]),
            max_new_tokens=int(cfg["max_completion_length"]),
            num_return_sequences=g,
        )
    return processor.batch_decode(ids[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)


def _report_to(value, say) -> list[str]:
    wanted = [value] if isinstance(value, str) else list(value or [])
    if "tensorboard" in wanted and importlib.util.find_spec("tensorboard") is None:
        say("tensorboard is not installed (pip install 'reason-restore[rl]'); logging to the manifest only")
        wanted.remove("tensorboard")
    return wanted or ["none"]


def grpo_settings(cfg: dict, out: Path, use_cpu: bool, dtype, say=lambda _m: None) -> dict:
    """GRPOConfig keyword arguments for a validated recipe."""
    rewards_cfg = cfg["rewards"]
    settings = dict(
        **common_trainer_settings(cfg, out, use_cpu, dtype),
        steps_per_generation=cfg["steps_per_generation"],
        num_generations=int(cfg["num_generations"]),
        max_completion_length=int(cfg["max_completion_length"]),
        temperature=float(cfg["temperature"]),
        top_p=float(cfg["top_p"]),
        beta=float(cfg["beta"]),
        loss_type=cfg["loss_type"],
        scale_rewards=cfg["scale_rewards"],
        reward_weights=[float(v["weight"] if isinstance(v, dict) else v) for v in rewards_cfg.values()],
        use_vllm=bool(cfg["use_vllm"]),
        **{f"vllm_{k}": v for k, v in (cfg["vllm"] or {}).items()},
        log_completions=bool(cfg["log_completions"]),
        num_completions_to_print=int(cfg["num_completions_to_print"] or 0),  # 0: none printed
        report_to=_report_to(cfg["report_to"], say),
        save_strategy="steps" if int(cfg["save_steps"] or 0) > 0 else "no",
        save_steps=int(cfg["save_steps"] or 0) or 500,
        save_total_limit=cfg["save_total_limit"],
    )
    settings.update(cfg["trainer"])
    return settings


def _peft(cfg: dict):
    if cfg["lora"] is None:
        return None
    from peft import LoraConfig

    lc = cfg["lora"]
    return LoraConfig(
        r=int(lc["r"]),
        lora_alpha=float(lc["alpha"]),
        lora_dropout=float(lc["dropout"]),
        target_modules=lc["target_modules"],
        task_type="CAUSAL_LM",
    )


def _prepare_output(cfg: dict) -> Path:
    out = Path(cfg["output_dir"])
    resuming = cfg["resume_from_checkpoint"] not in (None, False)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not resuming:
        if not cfg["overwrite"]:
            raise FileExistsError(f"{out} is not empty; choose another output_dir, set overwrite: true or resume")
        shutil.rmtree(out) if out.is_dir() else out.unlink()
    return out


def train_grpo(config: str | Path | dict, overrides: list[str] | dict | None = None, log=None) -> Path:
    """GRPO-train a Qwen3-VL checkpoint on an ``rnr synth`` set; returns the output checkpoint folder.

    Args:
        config: a YAML recipe path (see ``rl/recipes/grpo.yaml``) or a dict of its fields.
        overrides: ``["key=value", ...]`` or a dict, applied over the recipe (dotted keys for nested fields).
        log: optional callable taking one line of progress text.

    Returns:
        ``output_dir``: weights (LoRA merged), config, processor and tokenizer files, ``trainer/`` checkpoints when
        ``save_steps`` is set, and ``rnr_training.json`` (recipe, per-step log with per-reward means, KL, step
        time, versions), written last.

    """
    cfg = load_config(config, overrides)
    say = log or (lambda _msg: None)
    out = _prepare_output(cfg)
    use_cpu, dtype = _device_and_dtype(cfg)
    train = policy_dataset(cfg)
    say(f"{len(train)} samples from {cfg['dataset']}")
    reward_funcs = policy_rewards(cfg)[0]
    processor, model = load_policy(cfg, dtype, say)
    base_generation = copy.deepcopy(model.generation_config)
    base_eos = model.config.get_text_config().eos_token_id
    if cfg["freeze_vision"] and cfg["policy"] == "vlm":
        for name, p in model.named_parameters():
            if ".visual." in f".{name}":
                p.requires_grad_(False)

    args = GRPOConfig(**grpo_settings(cfg, out, use_cpu, dtype, say))
    timer = _Monitor(say)
    callbacks = [timer]
    if "tensorboard" in args.report_to and int(cfg["log_samples"] or 0) > 0:
        from rl.tb_samples import CompletionSamples

        callbacks.append(CompletionSamples(reward_funcs, int(cfg["log_samples_every"] or 1), int(cfg["log_samples"])))
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=reward_funcs,
        args=args,
        train_dataset=train,
        processing_class=processor,
        peft_config=_peft(cfg),
        callbacks=callbacks,
    )
    trainer.remove_callback(PrinterCallback)
    for cb in callbacks[1:]:
        cb.bind(trainer)
    say(f"training: {args.max_steps} steps, rewards {dict(zip(trainer.reward_func_names, args.reward_weights))}")
    resume = cfg["resume_from_checkpoint"]
    try:
        # TRL prints completion tables with rich to stdout; stdout is reserved for the CLI's JSON summary.
        with contextlib.redirect_stdout(sys.stderr):
            result = trainer.train(resume_from_checkpoint=resume if resume not in (None, False) else None)
    finally:
        shutdown()

    if not trainer.is_world_process_zero():
        return out
    trained = trainer.model
    if cfg["lora"] is not None:
        trained = trained.merge_and_unload()
    trained.generation_config = base_generation
    trained.config.get_text_config().eos_token_id = base_eos
    out.mkdir(parents=True, exist_ok=True)
    trained.save_pretrained(out)
    _save_processor(str(cfg["model"]), processor, out)
    trainer_dir = out / "trainer"
    if trainer_dir.is_dir() and not any(trainer_dir.rglob("*")):
        shutil.rmtree(trainer_dir)

    history = [h for h in trainer.state.log_history if "reward" in h]
    steps = timer.times[1:] or timer.times
    manifest = {
        "format": "rnr.grpo_run",
        "recipe": {k: (str(v) if isinstance(v, Path) else v) for k, v in cfg.items()},
        "samples": len(train),
        "rewards": dict(zip(trainer.reward_func_names, args.reward_weights, strict=True)),
        "global_step": trainer.state.global_step,
        "train_loss": result.training_loss,
        "first_reward": history[0]["reward"] if history else None,
        "final_reward": history[-1]["reward"] if history else None,
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
    if result.training_loss is not None and not math.isfinite(result.training_loss):
        say(f"warning: training loss is {result.training_loss}")
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str) + "\n")
    say(f"wrote {out}")
    return out


def dry_run(config: str | Path | dict, overrides: list[str] | dict | None = None, samples: int = 4, log=None) -> dict:
    """Evaluate every reward on the policy's unconstrained generations for a few samples; no training.

    Returns ``{"samples": n, "generations": g, "rewards": {name: {"weight", "mean", "min", "max", "none"}},
    "rows": [{"index", "kinds", "completion", <reward name>: value, ...}]}``.
    """
    import numpy as np

    cfg = load_config(config, overrides)
    say = log or (lambda _msg: None)
    use_cpu, dtype = _device_and_dtype(cfg)
    data = policy_dataset(cfg)
    n = min(int(samples), len(data))
    reward_funcs, weights = policy_rewards(cfg)
    processor, model = load_policy(cfg, dtype, say)
    model.to("cpu" if use_cpu else "cuda").eval()
    g = int(cfg["num_generations"])
    rows: list[dict] = []
    scores: dict[str, list] = {f.__name__: [] for f in reward_funcs}
    torch.manual_seed(int(cfg["seed"]))
    try:
        for i in range(n):
            row = data[i]
            texts = sample_completions(cfg, processor, model, row, g)
            completions = [[{"role": "assistant", "content": t}] for t in texts]
            cols = ("pixels", "record", "clean", "stats") if cfg["policy"] == "text" else ("image", "record", "clean")
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
    finally:
        shutdown()
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
