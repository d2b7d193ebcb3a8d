"""Typed training recipes: the YAML files under ``rl/recipes/`` as pydantic models, with defaults and overrides.

:class:`SFTRecipe` (``rl/recipes/sft.yaml``, :mod:`rl.sft`) and :class:`GRPORecipe` (``rl/recipes/grpo.yaml``,
:mod:`rl.grpo`) share the fields of :class:`TrainingRecipe`. ``Recipe.load(config, overrides)`` reads a YAML path
or a mapping, fills in the defaults, applies ``key=value`` overrides (YAML values, dotted keys into nested
mappings: ``lora.r=8``, ``rewards.fidelity=1.0``) and validates; every mistake a user can fix is a one-line
:class:`RecipeError`. ``recipe.to_yaml()`` prints the effective recipe (``rnr train sft --print-recipe --set ...``).

The committed recipes are package data: :func:`recipe_path` finds them in the installed package (editable or not,
from any working folder), and :func:`recipe_text` is the file with its comments, to copy and edit
(``rnr train sft --print-recipe``).

>>> r = SFTRecipe.load({"model": "m", "dataset": "d", "output_dir": "o"}, ["lora.r=8", "max_steps=5"])
>>> r.max_steps, r.lora.r, r.lora.alpha
(5, 8, 32.0)
>>> SFTRecipe.load({"model": "m"})
Traceback (most recent call last):
rl.recipe.RecipeError: recipe needs ['dataset', 'output_dir']; set them in the YAML or with --set dataset=...
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from reasoner.common import dtype_name

#: Fields of the GRPO recipe's ``vllm`` mapping, passed to TRL's GRPOConfig as ``vllm_<name>``.
VLLM_FIELDS = (
    "mode", "server_base_url", "server_host", "server_port", "server_timeout", "gpu_memory_utilization",
    "tensor_parallel_size", "max_model_length", "enable_sleep_mode",
)  # fmt: skip
_REQUIRED = ("model", "dataset", "output_dir")


class RecipeError(ValueError):
    """A recipe the user can fix; the message is one line."""


class LoraSettings(BaseModel):
    """LoRA adapters (peft); merged into the saved weights after training."""

    model_config = ConfigDict(extra="forbid")

    r: int = Field(16, ge=1, description="Adapter rank.")
    alpha: float = Field(32.0, gt=0, description="LoRA alpha (scaling = alpha / r).")
    dropout: float = Field(0.05, ge=0, lt=1, description="Dropout on the adapter input.")
    target_modules: str | list[str] = Field(
        r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)",
        description="A regex over module names, or a list of names.",
    )


#: The packaged recipe of each training command (``rnr train sft|grpo`` without ``--config``).
DEFAULT_RECIPES = {"sft": "sft.yaml", "grpo": "grpo.yaml"}


def recipe_path(name: str) -> Path:
    """The packaged recipe ``name`` (``sft``, ``grpo`` or a file name under ``rl/recipes``).

    Found through the installed package (importlib.resources), never relative to the working folder.

    Raises:
        RecipeError: No such packaged recipe (one line listing those there are).

    >>> recipe_path("sft").name
    'sft.yaml'

    """
    from importlib.resources import files

    folder = files("rl") / "recipes"
    resource = folder / DEFAULT_RECIPES.get(name, name)
    if not resource.is_file():
        there = sorted(p.name for p in folder.iterdir() if p.name.endswith(".yaml")) if folder.is_dir() else []
        raise RecipeError(f"no packaged recipe {name!r}; packaged: {there or 'none (a broken install?)'}")
    return Path(str(resource))  # a plain file in every installed layout rnr supports (wheel, editable, checkout)


def recipe_text(name: str) -> str:
    """The packaged recipe ``name`` as committed: YAML with a comment on every field, to copy and edit."""
    return recipe_path(name).read_text(encoding="utf-8")


class TrainingRecipe(BaseModel):
    """The fields SFT and GRPO share: data, output, optimisation, precision, logging, LoRA."""

    model_config = ConfigDict(extra="forbid")
    #: The committed recipe quoted in messages.
    EXAMPLE: ClassVar[str] = "rl/recipes/"

    model: str | None = Field(None, description="Base checkpoint folder or hub id (required).")
    dataset: str | None = Field(None, description="Folder written by `rnr synth` (required).")
    output_dir: str | None = Field(None, description="Output checkpoint folder (required).")
    overwrite: bool = False
    max_samples: int | None = Field(None, ge=1, description="Use only the first N samples (null: all).")
    max_steps: int = Field(1000, description="Optimiser steps; -1 trains for num_train_epochs instead.")
    num_train_epochs: float = Field(1.0, gt=0)
    learning_rate: float = Field(1e-4, ge=0)
    per_device_train_batch_size: int = Field(1, ge=1)
    gradient_accumulation_steps: int = Field(8, ge=1)
    lr_scheduler_type: str = "cosine"
    warmup_steps: float = Field(0.03, ge=0, description="A fraction of the steps below 1, else a number of steps.")
    max_grad_norm: float = Field(1.0, ge=0)
    freeze_vision: bool = True
    device: Literal["auto", "cpu", "cuda"] = "auto"
    dtype: str = Field("auto", description="auto, float32, bfloat16 or float16 (short forms bf16, fp16, fp32).")
    gradient_checkpointing: bool = False
    logging_steps: int = Field(10, ge=1)
    seed: int = 0
    lora: LoraSettings | None = None
    trainer: dict[str, Any] = Field(default_factory=dict, description="Extra TRL config fields, passed verbatim.")

    @field_validator("dtype")
    @classmethod
    def _dtype(cls, v: str) -> str:
        return v if v == "auto" else dtype_name(v)

    @model_validator(mode="after")
    def _required(self):
        missing = [k for k in _REQUIRED if not getattr(self, k)]
        if missing:
            raise ValueError(f"recipe needs {missing}; set them in the YAML or with --set {missing[0]}=...")
        return self

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """Every field's default (``None`` for the required ``model``, ``dataset`` and ``output_dir``)."""
        return {name: f.get_default(call_default_factory=True) for name, f in cls.model_fields.items()}

    @classmethod
    def load(cls, config: str | Path | Mapping | TrainingRecipe, overrides: list[str] | Mapping | None = None):
        """The recipe of ``config`` (a YAML path, a mapping or a recipe) over the defaults, then ``overrides``.

        Raises:
            RecipeError: A missing file, an unknown or missing field, a bad value or override (one line).

        """
        if isinstance(config, TrainingRecipe):
            raw = config.model_dump()
        elif isinstance(config, (str, Path)):
            raw = _read_yaml(Path(config), cls.EXAMPLE)
        else:
            raw = dict(config)
        data = apply_overrides({**cls.defaults(), **raw}, overrides)
        try:
            return cls.model_validate(data)
        except ValidationError as e:
            raise RecipeError(_explain(e, cls)) from None

    def to_yaml(self) -> str:
        """The effective recipe as YAML, fields in order.

        >>> "lora: null" in SFTRecipe.load({"model": "m", "dataset": "d", "output_dir": "o"}).to_yaml()
        True
        """
        import yaml

        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False, allow_unicode=True)


class SFTRecipe(TrainingRecipe):
    """Supervised fine-tuning (``rl/recipes/sft.yaml`` documents every field)."""

    EXAMPLE: ClassVar[str] = "`rnr train sft --print-recipe`"

    weight_decay: float = Field(0.0, ge=0)
    max_length: int | None = Field(None, ge=1, description="Truncate sequences to this many tokens (null: never).")
    completion_only_loss: bool = True


class GRPORecipe(TrainingRecipe):
    """GRPO with restoration rewards (``rl/recipes/grpo.yaml`` documents every field)."""

    EXAMPLE: ClassVar[str] = "`rnr train grpo --print-recipe`"

    policy: Literal["vlm", "text"] = "vlm"
    completion: str = "json"
    text_stats: list[str] | None = None
    text_prompt: str = "diagnose"
    text_bins: dict[str, list[float]] | None = None
    rewards: dict[str, float | dict[str, Any]] = Field(
        default_factory=lambda: {"format": 0.2, "severity_reduction": 1.0, "fidelity": 0.5, "diagnosis_accuracy": 0.5}
    )
    restorer: str = "classical"
    scorer: str = "measure"
    reward_workers: int = Field(1, ge=0)
    max_steps: int = 500
    learning_rate: float = Field(1e-6, ge=0)
    per_device_train_batch_size: int = Field(4, ge=1)
    gradient_accumulation_steps: int = Field(1, ge=1)
    steps_per_generation: int | None = Field(None, ge=1)
    num_generations: int = Field(4, ge=1)
    max_completion_length: int = Field(1024, ge=1)
    temperature: float = Field(1.0, gt=0)
    top_p: float = Field(1.0, gt=0, le=1)
    beta: float = Field(0.04, ge=0)
    loss_type: str = "dapo"
    scale_rewards: str | bool = "group"
    lr_scheduler_type: str = "constant"
    warmup_steps: float = Field(0.0, ge=0)
    use_vllm: bool = False
    vllm: dict[str, Any] | None = Field(default_factory=dict)
    logging_steps: int = Field(1, ge=1)
    log_completions: bool = True
    num_completions_to_print: int | None = 0
    log_samples: int | None = 4
    log_samples_every: int | None = 10
    report_to: str | list[str] | None = "tensorboard"
    save_steps: int | None = 0
    save_total_limit: int | None = 2
    resume_from_checkpoint: bool | str | None = None

    @field_validator("rewards")
    @classmethod
    def _rewards(cls, v: dict) -> dict:
        from rl.rewards import REWARDS

        return check_reward_names(v, REWARDS, "reward(s)")

    @field_validator("vllm")
    @classmethod
    def _vllm(cls, v: dict | None) -> dict | None:
        bad = sorted(set(v or {}) - set(VLLM_FIELDS))
        if bad:
            raise ValueError(f"unknown vllm field(s) {bad}; known: {list(VLLM_FIELDS)}")
        return v

    @field_validator("text_bins")
    @classmethod
    def _bins(cls, v: dict | None) -> dict | None:
        if v is not None and not all(edges == sorted(edges) for edges in v.values()):
            raise ValueError("text_bins must map statistic names to ascending lists of bin edges, or be null")
        return v

    @model_validator(mode="after")
    def _consistent(self):
        from rl.text_policy import COMPLETIONS, PROMPTS

        if self.completion not in COMPLETIONS or (self.policy == "vlm" and self.completion != "json"):
            raise ValueError(f"completion={self.completion!r}: use json, or compact with policy: text")
        if self.text_prompt not in PROMPTS or (self.text_prompt == "stats" and self.completion != "compact"):
            raise ValueError(f"text_prompt={self.text_prompt!r}: use diagnose, or stats with completion compact")
        batch = self.per_device_train_batch_size * (self.steps_per_generation or self.gradient_accumulation_steps)
        if batch % self.num_generations:
            raise ValueError(
                f"per_device_train_batch_size x steps_per_generation = {batch} must be divisible by num_generations "
                f"= {self.num_generations}; change one of them"
            )
        return self

    @property
    def reward_weights(self) -> list[float]:
        """The weight of each reward, in the order of :attr:`rewards`."""
        return [float(v["weight"] if isinstance(v, dict) else v) for v in self.rewards.values()]


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


def apply_overrides(config: Mapping, items: list[str] | Mapping | None) -> dict:
    """``config`` with ``key=value`` items (YAML values, dotted keys into nested mappings) applied; a new dict.

    >>> apply_overrides({"lora": None, "seed": 0}, ["lora.r=8", "seed=3"])
    {'lora': {'r': 8}, 'seed': 3}

    Raises:
        RecipeError: For an item that is not ``KEY=VALUE`` or a key through a value that is not a mapping.

    """
    out = copy.deepcopy(dict(config))
    pairs = list(items.items()) if isinstance(items, Mapping) else []
    for item in items if isinstance(items, list) else []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise RecipeError(f"override {item!r} is not KEY=VALUE (e.g. max_steps=10 or lora.r=8)")
        pairs.append((key.strip(), _coerce(value)))
    for key, value in pairs:
        *parents, leaf = key.split(".")
        node = out
        for p in parents:
            if node.get(p) is None:
                node[p] = {}
            if not isinstance(node[p], dict):
                raise RecipeError(f"override {key!r}: {p!r} is not a mapping")
            node = node[p]
        node[leaf] = value
    return out


def _read_yaml(path: Path, example: str) -> dict:
    import yaml

    if not path.is_file():
        raise RecipeError(f"recipe {path} does not exist; see {example} for an example")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise RecipeError(f"recipe {path} is not valid YAML: {' '.join(str(e).split())}") from None
    if not isinstance(raw, dict):
        raise RecipeError(f"recipe {path} must be a YAML mapping of field: value")
    return raw


def _explain(error: ValidationError, cls: type[TrainingRecipe]) -> str:
    """One line for a recipe's validation errors: unknown fields per mapping, then each other error."""
    unknown: dict[tuple, list[str]] = {}
    parts: list[str] = []
    for err in error.errors():
        loc = tuple(err["loc"])
        if err["type"] == "extra_forbidden":
            unknown.setdefault(loc[:-1], []).append(str(loc[-1]))
        elif err["type"] == "value_error":
            parts.append(err["msg"].removeprefix("Value error, "))
        else:
            where = ".".join(str(p) for p in loc)
            parts.append(f"{where}: {err['msg']} (got {err['input']!r})")
    for parent, names in unknown.items():
        if not parent:
            parts.insert(0, f"unknown recipe field(s) {sorted(names)}; known: {sorted(cls.model_fields)} (others go "
                            "under trainer:)")  # fmt: skip
        else:
            known = sorted(LoraSettings.model_fields) if parent == ("lora",) else []
            parts.insert(0, f"unknown {'.'.join(map(str, parent))} field(s) {sorted(names)}; known: {known}")
    return "; ".join(parts)


def check_reward_names(v: dict, known, label: str) -> dict:
    """A recipe's ``rewards`` mapping, if it names only rewards in ``known`` (and at least one)."""
    if not v:
        raise ValueError(f"rewards must map reward names to weights; known: {sorted(known)}")
    bad = sorted(set(v) - set(known))
    if bad:
        raise ValueError(f"unknown {label} {bad}; known: {sorted(known)}")
    return v
