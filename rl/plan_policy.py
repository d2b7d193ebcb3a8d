"""A learnable restoration plan: a policy reads the diagnosis and writes which operations run, in what order, how hard.

The hand planner (:func:`restorer.plan.plan_from_record`) runs every detected kind in restoration order at the
strength its confidence gives (1 for a sure detection). A plan policy sees the same diagnosis — the hand plan's
kinds, each with its severity and confidence weight as one digit — and the image statistics the diagnosis cites as
evidence (:data:`PROMPT_STATS`, each as its decile among the training crops, :func:`record_stats`), and writes the
plan as schema-guided JSON
(:class:`PlanCompletion`: ordered steps, each a diagnosed kind with a strength and optional factor overrides) or, for
a small text policy, in a compact form that expands into the same JSON (one factor per diagnosed kind in the
diagnosis' order on the hand planner's strength, ``"1.25 0.00"``, so the warm start on hand plans is the hand
planner exactly and GRPO learns corrections to it; or ``kind strength`` pairs in the order to run them, with
absolute strengths, ``"haze 0.75, noise 1.25"``; ``none`` restores nothing). A kind left out, or given strength 0,
is skipped; a kind the diagnosis does not hold is refused (the restorer needs its factors). :func:`to_plan` turns a
completion into a :class:`restorer.plan.Plan` with the diagnosed factors, which the classical restorer executes and
:func:`restorer.instructions.render_instruction` renders for the edit restorers (strength below 0.75 says
"gently", above 1.25 "thoroughly").

A completion that does not parse is ``None`` here: the rewards score its format 0 (and its restoration as the hand
plan's, or not at all, :mod:`rl.plan_rewards`), and the agent falls back to the hand plan
(:func:`agent.policy.policy_plan`). :class:`PlanPolicy` loads a trained policy folder (the checkpoint and
``rnr_plan_policy.json``) and plans with greedy decoding. Imports no torch at module level.

>>> from restorer.plan import Operation, Plan
>>> hand = Plan(operations=[Operation(kind="noise", severity=0.4), Operation(kind="haze", severity=0.6, strength=0.5)])
>>> print(render_diagnosis(hand))
noise 4 9
haze 6 5
>>> [(op.kind, op.strength) for op in to_plan(parse_completion("haze 1.25, noise 0.5", hand), hand).operations]
[('haze', 1.25), ('noise', 0.5)]
>>> parse_completion("blur 1", hand) is None, hand_target(hand)
(True, '1.00 1.00')
>>> [(op.kind, op.strength) for op in to_plan(parse_completion("1.00 1.50", hand), hand).operations]
[('noise', 1.0), ('haze', 0.75)]
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from reasoner.schema import DEGRADATION_MODELS, DegradationKind, DiagnosisRecord
from reasoner.severity import level_for
from restorer.plan import Operation, Plan

#: Factor buckets (on the hand planner's strength) the oracle target is rounded to; any value in [0, 2] parses.
STRENGTHS: tuple[float, ...] = (0.0, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0)
#: The largest strength a policy may ask for.
MAX_STRENGTH = 2.0
#: Completion formats: the schema JSON, or the compact pairs a small text policy writes.
COMPLETIONS = ("json", "compact")
#: Written next to a trained policy's weights: how to prompt it and read its completions.
META_FILE = "rnr_plan_policy.json"
META_FORMAT = "rnr.plan_policy"
PROMPT_VERSION = 2

SYSTEM = (
    "You plan the restoration of a photo from its diagnosis: which degradations to remove, in what order, and how "
    "strongly."
)
DIAGNOSIS_HEADER = "Diagnosis (kind, severity 0-9, confidence 0-9):"
COMPACT_HINT = (
    "Reply with one factor per diagnosed kind, in the order listed, separated by spaces (e.g. `1.00 0.50`): 1.00 "
    "restores it as the hand planner would, 0.50 half as strongly, 1.50 more strongly, 0.00 skips it."
)
JSON_HINT = (
    'Reply with JSON only: {"steps": [{"kind": KIND, "strength": S}, ...]} in the order to run them; strength 1 '
    "removes the diagnosed amount, 0.5 half of it, 1.5 more; leave a kind out to skip it; a step may set "
    '"params" to override diagnosed factors by name.'
)
STATS_HEADER = "Measured statistics (deciles):"
#: Statistics of the diagnosis' evidence the prompt shows (the ``measure`` backend cites them all; a missing one is
#: written ``?``): noise, sharpness, motion, resampling, compression, haze, exposure, rain, colour.
PROMPT_STATS: tuple[str, ...] = (
    "noise_sigma_mid", "edge_width", "blur_sigma_fit", "orient_aniso", "spec_cutoff", "jpeg_blockiness",
    "transmission_dcp", "contrast_rms", "dark_mean", "lum_mean", "lum_p995", "rain_tophat_frac", "saturation",
)  # fmt: skip
_PAIR = re.compile(r"^\s*([a-z_]+)\s+(\d+(?:\.\d+)?)\s*$")

Param = float | int | str | list[float]


class PlanStep(BaseModel):
    """One step of a policy's plan: a diagnosed kind, its strength, optional overrides of its diagnosed factors."""

    model_config = ConfigDict(extra="forbid")

    kind: DegradationKind
    strength: float = Field(ge=0, le=MAX_STRENGTH, description="Multiplier on the diagnosed dose (0 skips).")
    params: dict[str, Param] = Field(
        default_factory=dict, max_length=8, description="Factors of the kind to use instead of the diagnosed ones."
    )


class PlanCompletion(BaseModel):
    """What a plan policy writes: the steps in the order they run (its JSON Schema guides decoding)."""

    model_config = ConfigDict(extra="forbid")

    steps: list[PlanStep] = Field(default_factory=list, max_length=8)


def _digit(x: float) -> int:
    return min(max(int(float(x) * 10), 0), 9)


def render_diagnosis(hand: Plan) -> str:
    """The diagnosis as the policy reads it: one ``kind severity confidence`` line per kind of the hand plan.

    Severity and the confidence weight (the hand plan's strength, :func:`restorer.plan.confidence_weight`) are
    written as one digit each (tenths, 9 for 0.9 and above), a token a small model reads at a fixed place.
    """
    return "\n".join(f"{op.kind} {_digit(op.severity)} {_digit(op.strength)}" for op in hand.operations)


def record_stats(record: DiagnosisRecord | None) -> dict[str, float]:
    """The statistics a record cites as evidence, by name (the reasoning steps' ``evidence``, later steps winning)."""
    out: dict[str, float] = {}
    for step in record.reasoning if record is not None else ():
        out.update(step.evidence)
    return out


def fit_bins(stats_rows: list[dict[str, float]], names: tuple[str, ...] = PROMPT_STATS) -> dict[str, list[float]]:
    """Decile edges of each statistic over (training) rows; reused as they are for any other image."""
    from rl.text_policy import stat_bins

    names = tuple(n for n in names if all(n in row for row in stats_rows))
    return stat_bins(stats_rows, list(names)) if stats_rows and names else {}


def render_stats(stats: dict[str, float] | None, bins: dict[str, list[float]]) -> str:
    r"""``name decile`` lines for the statistics of ``bins`` (``?`` where ``stats`` lacks one).

    >>> render_stats({"lum_mean": 0.3}, {"lum_mean": [0.2, 0.4], "dark_mean": [0.1]})
    'Measured statistics (deciles):\nlum_mean 1\ndark_mean ?'
    """
    import bisect

    stats = stats or {}
    lines = [f"{k} {bisect.bisect_right(edges, stats[k]) if k in stats else '?'}" for k, edges in bins.items()]
    return "\n".join([STATS_HEADER, *lines])


def prompt_messages(
    hand: Plan,
    completion: str = "compact",
    stats: dict[str, float] | None = None,
    bins: dict[str, list[float]] | None = None,
) -> list[dict[str, str]]:
    """The conversational prompt for the plan of ``hand``: the diagnosis, the binned statistics when ``bins``."""
    if completion not in COMPLETIONS:
        raise ValueError(f"completion={completion!r} is not one of {list(COMPLETIONS)}")
    hint = COMPACT_HINT if completion == "compact" else JSON_HINT
    parts = [f"{DIAGNOSIS_HEADER}\n{render_diagnosis(hand) or '(nothing detected)'}"]
    if bins:
        parts.append(render_stats(stats, bins))
    user = "\n\n".join([*parts, hint])
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


def parse_compact(text: str) -> PlanCompletion | None:
    """The completion a compact reply stands for, or None when it is not one (kinds checked by the caller).

    >>> parse_compact("noise 1.25, haze 0.5").steps[1].strength, parse_compact("none").steps
    (0.5, [])
    >>> parse_compact("noise strong") is None, parse_compact("noise 3") is None
    (True, True)
    """
    body = text.strip().rstrip(".").strip()
    if body.lower() == "none":
        return PlanCompletion()
    steps = []
    for part in body.split(","):
        m = _PAIR.match(part)
        if not m:
            return None
        try:
            steps.append(PlanStep(kind=m.group(1), strength=float(m.group(2))))
        except ValidationError:
            return None
    try:
        return PlanCompletion(steps=steps) if steps else None
    except ValidationError:
        return None


_NUMBER = re.compile(r"^\d+(?:\.\d+)?$")


def parse_positional(text: str, hand: Plan) -> PlanCompletion | None:
    """The completion of a reply that gives one factor per diagnosed kind, in the diagnosis' order, or None.

    Each factor scales the hand planner's strength of its kind (1 restores as the hand planner would, 0 skips the
    kind), so the policy learns corrections to the hand planner; strengths are capped at :data:`MAX_STRENGTH`.

    >>> from restorer.plan import Operation
    >>> hand = Plan(operations=[Operation(kind="noise", severity=0.4), Operation(kind="haze", severity=0.6,
    ...                                                                          strength=0.5)])
    >>> [(s.kind, s.strength) for s in parse_positional("1.25 0.50", hand).steps]
    [('noise', 1.25), ('haze', 0.25)]
    >>> parse_positional("1.25", hand) is None, parse_positional("1.25 x", hand) is None
    (True, True)
    """
    words = text.strip().rstrip(".").split()
    if not words or len(words) != len(hand.operations) or not all(_NUMBER.match(w) for w in words):
        return None
    factors = [float(w) for w in words]
    if any(f > MAX_STRENGTH for f in factors):
        return None
    steps = [
        PlanStep(kind=op.kind, strength=round(min(f * op.strength, MAX_STRENGTH), 4))
        for op, f in zip(hand.operations, factors, strict=True)
    ]
    return PlanCompletion(steps=steps)


def parse_json(text: str) -> PlanCompletion | None:
    """The completion of a JSON reply (a fenced block or surrounding whitespace allowed), or None."""
    body = text.strip()
    if body.startswith("```"):
        body = body.strip("`").removeprefix("json").strip()
    try:
        return PlanCompletion.model_validate_json(body)
    except (ValidationError, ValueError):
        return None


def parse_completion(text: Any, hand: Plan) -> PlanCompletion | None:
    """A policy's reply (JSON or compact, a string or TRL's message list) checked against the diagnosis.

    Compact replies are one factor per diagnosed kind in the diagnosis' order (what the text policy is taught:
    every reply to a prompt has the same length, so none is favoured for being shorter to write), or ``kind
    strength`` pairs in the order to run them, or ``none``.

    None when it does not parse, names a kind twice, names a kind the diagnosis does not hold (no factors to run
    it with), or overrides a factor the kind does not have or with a value its schema refuses.
    """
    from rl.rewards import completion_text

    text = completion_text(text)
    if text.lstrip().startswith(("{", "```")):
        parsed = parse_json(text)
    else:
        parsed = parse_positional(text, hand) or parse_compact(text)
    if parsed is None:
        return None
    diagnosed = {op.kind: op for op in hand.operations}
    kinds = [s.kind for s in parsed.steps]
    if len(set(kinds)) != len(kinds) or any(k not in diagnosed for k in kinds):
        return None
    for step in parsed.steps:
        if step.params and _factors(step.kind, {**diagnosed[step.kind].params, **step.params}) is None:
            return None
    return parsed


def _factors(kind: str, params: dict) -> dict | None:
    """``params`` validated as the factors of ``kind`` (the record schema's factor model), or None."""
    model = DEGRADATION_MODELS[kind].model_fields["factors"].annotation
    try:
        return model.model_validate(params).model_dump()
    except ValidationError:
        return None


def to_plan(completion: PlanCompletion, hand: Plan) -> Plan:
    """The executable plan: the completion's steps in order, with the diagnosed severity and factors.

    Steps of strength 0 are left out; the instruction names what is removed and how firmly, as the hand plan's does.
    """
    diagnosed = {op.kind: op for op in hand.operations}
    ops = [
        Operation(
            kind=s.kind,
            severity=diagnosed[s.kind].severity,
            strength=round(float(s.strength), 4),
            params={**diagnosed[s.kind].params, **s.params},
        )
        for s in completion.steps
        if s.strength > 0
    ]
    names = ", ".join(f"{op.kind.replace('_', ' ')} ({level_for(op.severity)}{_firmness(op.strength)})" for op in ops)
    instruction = f"Remove {names}; keep content, geometry and colours unchanged." if ops else "Leave the image as is."
    return Plan(operations=ops, instruction=instruction, use_references=hand.use_references)


def _firmness(strength: float) -> str:
    from restorer.instructions import FIRM_ABOVE, GENTLE_BELOW

    return ", gently" if strength < GENTLE_BELOW else ", thoroughly" if strength > FIRM_ABOVE else ""


def bucket(strength: float) -> float:
    """The nearest of :data:`STRENGTHS`.

    >>> bucket(0.62), bucket(0.9), bucket(3.0)
    (0.5, 1.0, 2.0)
    """
    return min(STRENGTHS, key=lambda s: (abs(s - strength), s))


def compact_of(plan: Plan) -> str:
    """The compact reply of ``plan`` (kinds in its order, strengths with two decimals), or ``none``.

    Every strength is written with the same number of tokens (``1.00``, not ``1``): a shorter spelling of one
    strength would be sampled with fewer chances of a malformed reply, and the format reward would then favour it
    for its length instead of its restoration.

    >>> compact_of(Plan(operations=[Operation(kind="noise", severity=0.4, strength=1)]))
    'noise 1.00'
    """
    return ", ".join(f"{op.kind} {op.strength:.2f}" for op in plan.operations) or "none"


def json_of(plan: Plan) -> str:
    """The JSON reply of ``plan`` (steps in its order, no factor overrides)."""
    steps = [PlanStep(kind=op.kind, strength=op.strength) for op in plan.operations]
    return PlanCompletion(steps=steps).model_dump_json()


def positional_of(factors: list[float]) -> str:
    """The positional compact reply: one factor per diagnosed kind with two decimals, separated by spaces.

    >>> positional_of([1, 0.5])
    '1.00 0.50'
    """
    return " ".join(f"{x:.2f}" for x in factors)


def hand_target(hand: Plan, completion: str = "compact") -> str:
    """What the hand planner would write: every diagnosed kind in restoration order at its strength (factors 1)."""
    if completion == "compact":
        return positional_of([1.0] * len(hand.operations))
    return json_of(Plan(operations=[op for op in hand.operations if op.strength > 0]))


def oracle_target(hand: Plan, truth: DiagnosisRecord, completion: str = "compact") -> str:
    """The oracle plan within the policy's reach: the diagnosed kinds that are really there at strength 1, others 0.

    (The oracle plan proper, :func:`restorer.plan.plan_from_record` of the ground truth, may need kinds the
    diagnosis missed, whose factors the policy does not have.) In the compact form a factor is capped at
    :data:`MAX_STRENGTH`, so a very unsure real detection gets twice its hand strength, not 1.
    """
    real = {d.kind for d in truth.detected()}
    if completion == "compact":
        factors = [bucket(min(1.0 / max(op.strength, 1e-6), MAX_STRENGTH)) if op.kind in real else 0.0
                   for op in hand.operations]  # fmt: skip
        return positional_of(factors)
    ops = [op.model_copy(update={"strength": 1.0}) for op in hand.operations if op.kind in real]
    return json_of(Plan(operations=ops))


def expand(text: Any, hand: Plan) -> str | None:
    """The schema JSON a reply stands for (compact replies expanded), or None when it does not parse."""
    parsed = parse_completion(text, hand)
    return None if parsed is None else parsed.model_dump_json()


def completion_schema() -> dict:
    """The JSON Schema of :class:`PlanCompletion`, for schema-guided decoding (xgrammar, vLLM structured outputs)."""
    return PlanCompletion.model_json_schema()


# ------------------------------------------------------------------------------------------------ trained policy


class PlanPolicyError(ValueError):
    """A policy folder that cannot be used; the message is one line naming it."""


def write_meta(
    out: str | Path, policy: Literal["text", "vlm"], completion: str, bins: dict[str, list[float]] | None = None
) -> Path:
    """Write :data:`META_FILE` into a policy folder (how to prompt it, with which statistic bins, and read it)."""
    path = Path(out) / META_FILE
    meta = {"format": META_FORMAT, "prompt_version": PROMPT_VERSION, "policy": policy, "completion": completion,
            "bins": bins or {}}  # fmt: skip
    path.write_text(json.dumps(meta, indent=2) + "\n")
    return path


def read_meta(path: str | Path) -> dict:
    """The :data:`META_FILE` of a policy folder.

    Raises:
        PlanPolicyError: When the folder or its metadata is missing or not a plan policy's.

    """
    folder = Path(path)
    meta_path = folder / META_FILE
    if not folder.is_dir():
        raise PlanPolicyError(f"policy {path}: no such folder; pass a folder written by bench/grpo_restore.py or "
                              "rl.plan_grpo.train_plan_grpo")  # fmt: skip
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError):
        raise PlanPolicyError(
            f"policy {path}: {META_FILE} is missing or unreadable; not a plan policy folder"
        ) from None
    if not isinstance(meta, dict) or meta.get("format") != META_FORMAT or meta.get("completion") not in COMPLETIONS:
        raise PlanPolicyError(f"policy {path}: {META_FILE} is not a plan policy's")
    if meta.get("prompt_version") != PROMPT_VERSION:
        raise PlanPolicyError(f"policy {path}: prompt version {meta.get('prompt_version')} (this install reads "
                              f"{PROMPT_VERSION}); retrain it")  # fmt: skip
    if meta.get("policy") != "text":
        raise PlanPolicyError(f"policy {path}: a {meta.get('policy')} policy reads the image, which the agent's plan "
                              "hook does not pass; use a text policy")  # fmt: skip
    return meta


class PlanPolicy:
    """A trained text plan policy (a causal LM folder with :data:`META_FILE`), planning by greedy decoding on CPU.

    Args:
        path: The policy folder.
        max_new_tokens: Longest reply.

    """

    def __init__(self, path: str | Path, max_new_tokens: int = 96) -> None:
        self.path = str(path)
        self.meta = read_meta(path)
        self.completion = self.meta["completion"]
        self.bins = {k: [float(e) for e in v] for k, v in (self.meta.get("bins") or {}).items()}
        self.max_new_tokens = int(max_new_tokens)
        try:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError as e:  # pragma: no cover - depends on the install
            raise ImportError(f"a plan policy needs torch and transformers ({e}); install with: "
                              "pip install 'reason-restore[rl]'") from e  # fmt: skip
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.path)
            self.model = AutoModelForCausalLM.from_pretrained(self.path, dtype=torch.float32).eval()
        except (OSError, ValueError, KeyError, TypeError) as e:
            from reasoner.common import one_line

            raise PlanPolicyError(f"policy {path}: cannot load the model: {one_line(e, 300)}") from None
        self.tokenizer.padding_side = "left"

    def replies(
        self,
        hands: list[Plan],
        stats: list[dict[str, float] | None] | None = None,
        *,
        sample: bool = False,
        n: int = 1,
        seed: int = 0,
    ) -> list[list[str]]:
        """``n`` replies per hand plan (with its image's statistics), greedy or sampled at temperature 1, batched."""
        import torch

        stats = stats if stats is not None else [None] * len(hands)
        texts = [
            self.tokenizer.apply_chat_template(prompt_messages(h, self.completion, st, self.bins), tokenize=False,
                                               add_generation_prompt=True)
            for h, st in zip(hands, stats, strict=True)
        ]  # fmt: skip
        out: list[list[str]] = []
        if sample:
            torch.manual_seed(seed)
        for i in range(0, len(texts), 16):
            batch = self.tokenizer(texts[i : i + 16], return_tensors="pt", padding=True)
            with torch.no_grad():
                ids = self.model.generate(
                    **batch, do_sample=sample, max_new_tokens=self.max_new_tokens, num_return_sequences=n,
                    **({"temperature": 1.0, "top_p": 1.0} if sample else {}),
                )  # fmt: skip
            words = self.tokenizer.batch_decode(ids[:, batch["input_ids"].shape[1] :], skip_special_tokens=True)
            out += [words[j : j + n] for j in range(0, len(words), n)]
        return out

    def plan(self, hand: Plan, record: DiagnosisRecord | None = None) -> tuple[Plan | None, str]:
        """The policy's plan of a diagnosis (``hand``, and ``record``'s evidence) and its reply.

        The plan is None when the reply does not parse.
        """
        if not hand.operations:
            return None, ""
        reply = self.replies([hand], [record_stats(record)])[0][0]
        parsed = parse_completion(reply, hand)
        return (None if parsed is None else to_plan(parsed, hand)), reply


_LOADED: dict[tuple[str, float], PlanPolicy] = {}


def load_plan_policy(path: str | Path) -> PlanPolicy:
    """The policy of ``path``, loaded once per process (reloaded when its metadata file changes)."""
    meta = Path(path) / META_FILE
    key = (str(Path(path).resolve()), meta.stat().st_mtime if meta.is_file() else 0.0)
    if key not in _LOADED:
        _LOADED[key] = PlanPolicy(path)
    return _LOADED[key]
