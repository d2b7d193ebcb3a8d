"""GRPO of a restoration-plan policy (:mod:`rl.plan_policy`) with TRL, on CPU (a small text policy) or GPUs (Qwen3-VL).

The recipe is :class:`PlanRecipe` (``rl/recipes/grpo_restore.yaml`` for the text policy on CPU,
``rl/recipes/grpo_restore_qwen3vl.yaml`` for Qwen3-VL with LoRA, bf16 and vLLM): the GRPO recipe's fields, rewards
from :data:`rl.plan_rewards.PLAN_REWARDS`, the reasoner that writes the diagnosis the prompt shows, and a warm start.
Rows (:func:`plan_dataset`) hold the prompt (the diagnosis of the degraded crop as a hand plan), the crop
(``pixels``; also ``image`` for a VLM policy), the clean crop, the diagnosis record, the hand plan, the ground truth
and the warm start's targets (hand and oracle plans). :func:`warm_start` runs supervised next-token steps on the
targets; :func:`train_plan_grpo` runs TRL's ``GRPOTrainer`` and writes a policy folder that
:class:`rl.plan_policy.PlanPolicy` (and ``rnr restore --policy``) loads. Imports torch, transformers and TRL.
"""

from __future__ import annotations

import contextlib
import io
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from reasoner.schema import DiagnosisRecord
from restorer.plan import plan_from_record
from rl.plan_policy import (
    COMPLETIONS,
    fit_bins,
    hand_target,
    oracle_target,
    positional_of,
    prompt_messages,
    record_stats,
    write_meta,
)
from rl.plan_rewards import PLAN_REWARDS, PlanEngine, build_plan_rewards
from rl.recipe import GRPORecipe, check_reward_names

#: The plan recipe's default rewards and weights: the full-reference gain leads on synthetic data.
DEFAULT_REWARDS = {"format": 0.2, "psnr_gain": 1.0, "quality_gain": 0.5, "fidelity": 0.25}


class WarmStart(BaseModel):
    """Supervised next-token steps on plan targets before GRPO (the loss on the reply only)."""

    model_config = ConfigDict(extra="forbid")

    target: Literal["hand", "oracle", "ceiling"] = Field(
        "hand", description="hand: the hand planner's plans (factors 1); oracle: the diagnosed kinds that "
        "are really there, at strength 1; ceiling: per crop the best of the hand plan and the plans changing one "
        "diagnosed kind's factor to 0, 0.5 or 1.5, chosen against the clean crop (rows without one: the hand plan)."
    )  # fmt: skip
    steps: int = Field(300, ge=0)
    learning_rate: float = Field(1e-3, gt=0)
    batch: int = Field(16, ge=1)
    noise: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="Share of the compact targets' factors replaced by another bucket, drawn afresh each step: the "
        "warm start still writes the target most often (greedy decoding returns it), but sampling keeps exploring. "
        "Supervised on one constant reply (the hand plan is all 1.00) the policy becomes near-deterministic, every "
        "GRPO group then holds the same reply, and GRPO gets no gradient.",
    )


class PlanRecipe(GRPORecipe):
    """GRPO of a restoration-plan policy (``rl/recipes/grpo_restore.yaml`` documents every field)."""

    EXAMPLE: ClassVar[str] = "rl/recipes/grpo_restore.yaml"

    policy: Literal["vlm", "text"] = "text"
    completion: str = "compact"
    rewards: dict[str, float | dict[str, Any]] = Field(default_factory=lambda: dict(DEFAULT_REWARDS))
    reasoner: str = Field("measure", description="Reasoner whose diagnosis the prompt shows (never the policy).")
    stats: bool = Field(True, description="Show the diagnosis' evidence statistics (deciles over the training set).")
    fallback_to_hand: bool = Field(
        True, description="Score an unparsable reply as the hand plan the agent falls back to (format 0 still)."
    )
    warm_start: WarmStart | None = None
    max_completion_length: int = Field(64, ge=1)

    @field_validator("rewards")
    @classmethod
    def _rewards(cls, v: dict) -> dict:
        return check_reward_names(v, PLAN_REWARDS, "plan reward(s)")

    @model_validator(mode="after")
    def _consistent(self):
        if self.completion not in COMPLETIONS or (self.policy == "vlm" and self.completion != "json"):
            raise ValueError(f"completion={self.completion!r}: use json, or compact with policy: text")
        if self.text_stats is not None or self.text_bins is not None or self.text_prompt != "diagnose":
            raise ValueError("text_stats, text_bins and text_prompt belong to the diagnosis policy (grpo.yaml); "
                             "a plan policy reads the diagnosis")  # fmt: skip
        if self.scorer in ("qwen3vl", "policy") or self.reasoner == "policy":
            raise ValueError("the reasoner and scorer must be independent of the policy being trained")
        batch = self.per_device_train_batch_size * (self.steps_per_generation or self.gradient_accumulation_steps)
        if batch % self.num_generations:
            raise ValueError(
                f"per_device_train_batch_size x steps_per_generation = {batch} must be divisible by num_generations "
                f"= {self.num_generations}; change one of them"
            )
        return self


# --------------------------------------------------------------------------------------------------------- data


def _png(u8: np.ndarray):
    from PIL import Image

    return Image.fromarray(np.ascontiguousarray(u8))


def diagnose_items(items: Iterable[tuple], reasoner=None) -> list[tuple]:
    """``(degraded uint8, clean uint8 or None, truth or None, diagnosis)`` of ``(degraded, clean, truth)`` crops.

    Crops may be float RGB in [0, 1] or uint8; they are quantised to 8 bits before ``reasoner`` (default
    ``measure``) diagnoses them, as a saved photo would be.
    """
    from reasoner import load_reasoner
    from reasoner.imageio import to_uint8
    from rl.rewards import as_uint8

    diagnose = reasoner or load_reasoner("measure")
    out = []
    for degraded, clean, truth in items:
        u8 = degraded if degraded.dtype == np.uint8 else to_uint8(np.asarray(degraded, np.float32))
        out.append((u8, None if clean is None else as_uint8(clean), truth,
                    diagnose.diagnose(u8.astype(np.float32) / 255.0)))  # fmt: skip
    return out


def training_bins(diagnosed: list[tuple]) -> dict[str, list[float]]:
    """Decile edges of the prompt statistics over diagnosed training crops (:func:`diagnose_items`)."""
    return fit_bins([record_stats(d[3]) for d in diagnosed])


#: Factors the ceiling target tries on one diagnosed kind at a time, the others at 1 (0 drops the kind).
CEILING_FACTORS: tuple[float, ...] = (0.0, 0.5, 1.5)


def one_factor_changes(hand):
    """``(factors, plan)`` of the hand plan with one diagnosed kind's factor set to each of :data:`CEILING_FACTORS`."""
    for i in range(len(hand.operations)):
        for f in CEILING_FACTORS:
            factors = [f if k == i else 1.0 for k in range(len(hand.operations))]
            ops = [op.model_copy(update={"strength": op.strength * x}) for op, x in zip(hand.operations, factors,
                                                                                      strict=True)]  # fmt: skip
            yield factors, hand.model_copy(update={"operations": [op for op in ops if op.strength > 0]})


def plan_psnr(src: np.ndarray, clean: np.ndarray, record: DiagnosisRecord, plan, restorer) -> float:
    """PSNR against ``clean`` (uint8) of ``plan`` run by ``restorer`` on ``src`` (float RGB), saved as 8 bits.

    An empty plan scores the input itself (restorers are not asked to do nothing).
    """
    from reasoner.imageio import to_uint8
    from restorer.metrics import psnr

    return psnr(clean, to_uint8(src if not plan.operations else restorer.restore(src, record, [], plan).pixels))


def one_factor_scores(u8: np.ndarray, clean: np.ndarray, record: DiagnosisRecord, hand, restorer):
    """``(factors, PSNR)`` of each of ``hand``'s one-factor changes (:func:`one_factor_changes`) against ``clean``."""
    src = u8.astype(np.float32) / 255.0
    for factors, plan in one_factor_changes(hand):
        yield factors, plan_psnr(src, clean, record, plan, restorer)


def best_one_factor_change(
    u8: np.ndarray, clean: np.ndarray, record: DiagnosisRecord, hand, restorer, hand_psnr: float | None = None
) -> tuple[list[float], float]:
    """The factors of the best of ``hand`` and its one-factor changes by PSNR against ``clean``, and that PSNR.

    Ties keep the hand plan (factors 1). ``restorer`` runs the plans (the classical one); ``hand_psnr``, when the
    caller has it, saves restoring the hand plan again.
    """
    if hand_psnr is None:
        hand_psnr = plan_psnr(u8.astype(np.float32) / 255.0, clean, record, hand, restorer)
    best, best_factors = hand_psnr, [1.0] * len(hand.operations)
    for factors, v in one_factor_scores(u8, clean, record, hand, restorer):
        if v > best + 1e-6:
            best, best_factors = v, factors
    return best_factors, best


def ceiling_target(u8: np.ndarray, clean: np.ndarray, record: DiagnosisRecord, hand, restorer) -> str:
    """The positional target of :func:`best_one_factor_change` (the plan the bench's ``ceiling`` row scores)."""
    return positional_of(best_one_factor_change(u8, clean, record, hand, restorer)[0])


def plan_dataset(
    diagnosed: list[tuple],
    completion: str = "compact",
    bins: dict[str, list[float]] | None = None,
    vlm: bool = False,
    keep_empty: bool = False,
    ceiling: bool = False,
):
    """Plan-policy rows of diagnosed crops (:func:`diagnose_items`), statistics binned by ``bins`` when given.

    Crops with nothing to plan are left out unless ``keep_empty`` (no action to learn). Columns: ``prompt``,
    ``pixels`` (and ``image`` when ``vlm``), ``clean``, ``record`` (the diagnosis), ``hand`` (hand plan JSON),
    ``truth``, ``target_hand``, ``target_oracle`` (the hand target where there is no ground truth), and with
    ``ceiling`` (compact completions only; each crop restored with every one-factor change) ``target_ceiling``.
    """
    from datasets import Dataset

    if ceiling and completion != "compact":
        raise ValueError("the ceiling target is a compact (positional) reply")
    restorer = None
    if ceiling:
        from restorer import load_restorer

        restorer = load_restorer("classical")
    rows: dict[str, list] = {k: [] for k in ("prompt", "pixels", "clean", "record", "hand", "truth", "target_hand",
                                             "target_oracle", *(("target_ceiling",) if ceiling else ()))}  # fmt: skip
    for u8, clean, truth, record in diagnosed:
        hand = plan_from_record(record)
        if not hand.operations and not keep_empty:
            continue
        rows["prompt"].append(prompt_messages(hand, completion, record_stats(record), bins))
        rows["pixels"].append(_png(u8))
        rows["clean"].append(None if clean is None else _png(clean))
        rows["record"].append(record.model_dump_json())
        rows["hand"].append(hand.model_dump_json())
        rows["truth"].append("" if truth is None else truth.model_dump_json())
        rows["target_hand"].append(hand_target(hand, completion))
        rows["target_oracle"].append(hand_target(hand, completion) if truth is None else
                                     oracle_target(hand, truth, completion))  # fmt: skip
        if ceiling:
            rows["target_ceiling"].append(hand_target(hand, completion) if clean is None or not hand.operations else
                                          ceiling_target(u8, clean, record, hand, restorer))  # fmt: skip
    if vlm:
        rows["image"] = list(rows["pixels"])
    return Dataset.from_dict(rows)


def synth_items(path: str | Path, max_samples: int | None = None):
    """``(degraded, clean, truth)`` of an ``rnr synth`` set (the clean crop regenerated, None where it cannot be)."""
    from rl.rewards import as_uint8
    from rl.synth import prompt_dataset

    ds = prompt_dataset(path, max_samples)
    for i in range(len(ds)):
        row = ds[i]
        clean = None if row["clean"] is None else as_uint8(row["clean"])
        yield as_uint8(row["image"]), clean, DiagnosisRecord.model_validate_json(row["record"])


# --------------------------------------------------------------------------------------------------- warm start


def warm_start(
    base: str | Path,
    data,
    out: str | Path,
    ws: WarmStart,
    completion: str = "compact",
    bins: dict[str, list[float]] | None = None,
    say=None,
) -> Path:
    """Supervised next-token steps of a text policy on ``data``'s ``target_<ws.target>`` replies; writes ``out``.

    A plain loop (the loss on the reply only, batches drawn with seed 0), then the weights, tokenizer and
    :data:`rl.plan_policy.META_FILE` (with ``bins``, those the rows' prompts were rendered with), so ``out`` is a
    policy folder the agent can load as it is.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    say = say or (lambda _m: None)
    tok = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32).train()
    opt = torch.optim.AdamW(model.parameters(), lr=ws.learning_rate)
    end = tok.eos_token or "<|im_end|>"
    pairs = []
    for prompt, target in zip(data["prompt"], data[f"target_{ws.target}"], strict=True):
        p_ids = tok(tok.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True))["input_ids"]
        pairs.append((p_ids, tok(target + end)["input_ids"]))
    rng = np.random.default_rng(0)
    targets = list(data[f"target_{ws.target}"])
    for step in range(ws.steps):
        picked = rng.choice(len(pairs), size=min(ws.batch, len(pairs)), replace=False)
        batch = [pairs[i] for i in picked]
        if ws.noise > 0 and completion == "compact":
            batch = [(p, tok(_perturbed(targets[i], ws.noise, rng) + end)["input_ids"]) for (p, _c), i in
                     zip(batch, picked, strict=True)]  # fmt: skip
        ids, mask, labels = reply_batch(batch, tok.pad_token_id)
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        if step % 50 == 0 or step == ws.steps - 1:
            say(f"warm start step {step}: loss {loss.item():.3f}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model.eval().save_pretrained(out)
    tok.save_pretrained(out)
    write_meta(out, "text", completion, bins)
    return out


def reply_batch(pairs, pad_id: int):
    """(input ids, attention mask, labels) of (prompt ids, reply ids) pairs, right-padded: the loss on the replies.

    >>> [t.tolist() for t in reply_batch([([1, 2], [3]), ([4], [5, 6])], 0)]
    [[[1, 2, 3], [4, 5, 6]], [[1, 1, 1], [1, 1, 1]], [[-100, -100, 3], [-100, 5, 6]]]
    """
    import torch

    width = max(len(p) + len(c) for p, c in pairs)
    ids = torch.full((len(pairs), width), pad_id)
    labels = torch.full((len(pairs), width), -100)
    mask = torch.zeros((len(pairs), width), dtype=torch.long)
    for j, (p, c) in enumerate(pairs):
        ids[j, : len(p) + len(c)] = torch.tensor(p + c)
        labels[j, len(p) : len(p) + len(c)] = torch.tensor(c)
        mask[j, : len(p) + len(c)] = 1
    return ids, mask, labels


def _perturbed(target: str, noise: float, rng: np.random.Generator) -> str:
    """A positional compact target with each factor replaced, with probability ``noise``, by another bucket.

    >>> _perturbed("1.00 1.00", 0.0, np.random.default_rng(0))
    '1.00 1.00'
    """
    from rl.plan_policy import STRENGTHS, parse_positional, positional_of

    words = target.split()
    if not words or any(parse_positional(w, _ONE) is None for w in words):
        return target  # not a positional target (none, pairs): left as it is
    factors = [float(w) for w in words]
    for j, f in enumerate(factors):
        if rng.random() < noise:
            others = [s for s in STRENGTHS if s != f]
            factors[j] = others[int(rng.integers(len(others)))]
    return positional_of(factors)


def _one_kind_plan():
    from restorer.plan import Operation, Plan

    return Plan(operations=[Operation(kind="noise", severity=0.5)])


_ONE = _one_kind_plan()


# --------------------------------------------------------------------------------------------------------- GRPO


def plan_engine(recipe: PlanRecipe) -> PlanEngine:
    """The engine the recipe's restoring rewards share: its restorer and ``reward_workers``."""
    return PlanEngine(recipe.restorer, recipe.scorer, recipe.reward_workers)


def train_plan_grpo(
    config: str | Path | dict | PlanRecipe,
    overrides: list[str] | dict | None = None,
    log=None,
    train=None,
    bins: dict[str, list[float]] | None = None,
    callbacks: list | None = None,
) -> Path:
    """GRPO-train a plan policy; returns the output folder (a policy folder :class:`PlanPolicy` loads).

    Args:
        config: A YAML recipe path (``rl/recipes/grpo_restore.yaml``), a dict of its fields, or a recipe.
        overrides: ``["key=value", ...]`` or a dict, applied over the recipe.
        log: Optional callable taking one line of progress text.
        train: Rows of :func:`plan_dataset` to train on; default: the recipe's ``dataset`` (an ``rnr synth`` set)
            diagnosed by its ``reasoner``, statistics binned over it (when ``stats``).
        bins: The statistic bins ``train``'s prompts were rendered with (written into the policy folder).
        callbacks: More ``transformers.TrainerCallback`` objects for the trainer (a time budget, say).

    Returns:
        ``output_dir``: weights (LoRA merged), tokenizer or processor, ``rnr_plan_policy.json`` and
        ``rnr_training.json`` (recipe, per-step log with per-reward means, step time, versions), written last.

    """
    import torch  # noqa: F401  (fail early with the install hint of rl.grpo)
    from transformers import PrinterCallback
    from trl import GRPOConfig, GRPOTrainer

    from reasoner import load_reasoner
    from rl.grpo import grpo_settings, load_policy
    from rl.training import (
        BaseGeneration,
        StepMonitor,
        freeze_vision,
        lora_config,
        prepare_output,
        resolve_device,
        save_trained,
        versions,
        write_manifest,
    )

    recipe = PlanRecipe.load(config, overrides)
    say = log or (lambda _msg: None)
    resume = recipe.resume_from_checkpoint if recipe.resume_from_checkpoint not in (None, False) else None
    out = prepare_output(recipe, resuming=resume is not None)
    use_cpu, dtype = resolve_device(recipe)
    if train is None:
        diagnosed = diagnose_items(synth_items(recipe.dataset, recipe.max_samples), load_reasoner(recipe.reasoner))
        bins = training_bins(diagnosed) if recipe.stats else None
        train = plan_dataset(diagnosed, recipe.completion, bins, vlm=recipe.policy == "vlm")
    say(f"{len(train)} prompts with something to plan")
    with plan_engine(recipe) as engine:
        reward_funcs, weights = build_plan_rewards(recipe.rewards, engine, recipe.fallback_to_hand)
        processor, model = load_policy(recipe, dtype, say)
        base = BaseGeneration(model)
        if recipe.freeze_vision and recipe.policy == "vlm":
            freeze_vision(model)
        settings = grpo_settings(recipe, out, use_cpu, dtype, say)
        settings["reward_weights"] = weights
        args = GRPOConfig(**settings)
        timer = StepMonitor(say)
        trainer = GRPOTrainer(
            model=model,
            reward_funcs=reward_funcs,
            args=args,
            train_dataset=train,
            processing_class=processor,
            peft_config=lora_config(recipe),
            callbacks=[timer, *(callbacks or [])],
        )
        trainer.remove_callback(PrinterCallback)
        say(f"training: {args.max_steps} steps, rewards {dict(zip(trainer.reward_func_names, args.reward_weights))}")
        with contextlib.redirect_stdout(sys.stderr):
            result = trainer.train(resume_from_checkpoint=resume)
    if not trainer.is_world_process_zero():
        return out
    save_trained(trainer, recipe, processor, base, out)
    write_meta(out, recipe.policy, recipe.completion, bins)
    history = [h for h in trainer.state.log_history if "reward" in h]
    manifest = {
        "format": "rnr.grpo_plan_run",
        "recipe": recipe.model_dump(mode="json"),
        "samples": len(train),
        "rewards": dict(zip(trainer.reward_func_names, args.reward_weights, strict=True)),
        "global_step": trainer.state.global_step,
        "train_loss": result.training_loss,
        "first_reward": history[0]["reward"] if history else None,
        "final_reward": history[-1]["reward"] if history else None,
        "log_history": trainer.state.log_history,
        "step_time_s": timer.mean_step_time(),
        "step_s": timer.times,
        "train_runtime_s": result.metrics.get("train_runtime"),
        "versions": versions(),
    }
    write_manifest(out, manifest)
    say(f"wrote {out}")
    return out


def recipe_yaml(name: str) -> str:
    """The text of a committed plan recipe (``grpo_restore.yaml``, ``grpo_restore_qwen3vl.yaml``), package data."""
    from importlib.resources import files

    return files("rl").joinpath("recipes", name).read_text()


def load_recipe_yaml(name: str, overrides: list[str] | dict | None = None) -> PlanRecipe:
    """A committed plan recipe, validated (``overrides`` applied)."""
    import yaml

    return PlanRecipe.load(yaml.safe_load(io.StringIO(recipe_yaml(name))), overrides)
