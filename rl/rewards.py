"""GRPO reward functions (TRL signature) for a policy that writes diagnosis completions.

Every reward is called as ``reward(prompts, completions, **dataset_columns) -> list[float | None]`` (TRL's
``GRPOTrainer`` passes every dataset column by name, the ``image`` column as PIL images, and conversational
completions as ``[{"role": "assistant", "content": text}]``). ``None`` means "no score" (TRL turns it into NaN and
leaves it out of the weighted sum): it is returned when a completion cannot be parsed or its restoration failed,
never a made-up number.

- :class:`FormatReward` (``format``): 1 when the completion parses and assembles into a record, else 0.
- :class:`SeverityReduction` (``severity_reduction``): run the policy's plan with a restorer, re-score the result
  with an independent scorer (``measure`` by default, never the policy) and reward the drop in severity.
- :class:`Fidelity` (``fidelity``): SSIM/PSNR change against the clean image (synthetic data, ``clean`` column), or
  structural drift from the input (real data), so that over-processing does not pay.
- :class:`DiagnosisAccuracy` (``diagnosis_accuracy``): kind F1 and severity error against the ``record`` column.

Rewards are picklable callable classes with a stable ``__name__`` (TRL's log key). The restoring ones run plans
through a :class:`~rl.reward_engine.RewardEngine`, which owns the worker pool and the caches: pass one engine to the
rewards of a run (:func:`build_rewards`) so the severity and fidelity rewards restore each completion once, and
close it with the run (``with RewardEngine(...) as engine:``). A restoring reward built without an engine makes its
own from its keyword arguments (``reward.close()`` stops its pool). Imports no torch.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any

import numpy as np

from reasoner.imageio import from_array, to_uint8
from reasoner.schema import DiagnosisRecord, Provenance
from reasoner.version import rnr_version
from reasoner.vlm_output import CompletionError, parse_completion, to_record
from restorer.metrics import psnr, ssim, structure_score
from rl.reward_engine import Outcome, RewardEngine


def completion_text(completion: Any) -> str:
    """The assistant text of a TRL completion: a string, or a conversational list of messages.

    >>> completion_text([{"role": "assistant", "content": "{}"}]), completion_text("hi")
    ('{}', 'hi')
    """
    if isinstance(completion, str):
        return completion
    parts = []
    for message in completion:
        content = message.get("content", "") if isinstance(message, dict) else message
        if isinstance(content, list):  # typed content blocks
            content = "".join(b.get("text", "") for b in content if isinstance(b, dict))
        parts.append(str(content or ""))
    return "".join(parts)


def as_uint8(image: Any) -> np.ndarray:
    """An RGB ``uint8 HxWx3`` array of a PIL image, a ``datasets`` image dict, encoded bytes, or an array."""
    if isinstance(image, dict):
        image = image.get("bytes") or image.get("path")
    if isinstance(image, (bytes, bytearray, str)):
        from PIL import Image

        image = Image.open(io.BytesIO(image) if isinstance(image, (bytes, bytearray)) else image)
    if hasattr(image, "convert"):
        return np.asarray(image.convert("RGB"), dtype=np.uint8)
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    return arr if arr.dtype == np.uint8 else to_uint8(arr.astype(np.float32))


_PROVENANCE = dict(backend="policy", rnr_version=rnr_version(), elapsed_s=0.0)


def parse_record(completion: Any, image: Any) -> DiagnosisRecord | None:
    """The record a completion describes for ``image``, or ``None`` when it does not parse or validate."""
    try:
        thinking, parsed = parse_completion(completion_text(completion))
        info = from_array(as_uint8(image).astype(np.float32) / 255.0).info()
        prov = Provenance(**_PROVENANCE, created_at=datetime.now(timezone.utc))
        return to_record(parsed, info, prov, thinking)
    except (CompletionError, ValueError):
        return None


# ------------------------------------------------------------------------------------------------------ rewards


class Reward:
    """Base: a picklable callable whose ``__name__`` is the registry name (TRL logs ``rewards/<name>/mean``)."""

    name = "reward"

    def __init__(self) -> None:
        self.__name__ = self.name

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if k != "__name__" and not k.startswith("_"))
        return f"{type(self).__name__}({shown})"


class _Restoring(Reward):
    """Base of the rewards that restore: plans run through a :class:`~rl.reward_engine.RewardEngine`.

    Args:
        engine: The run's engine, shared with its other restoring rewards; ``None`` makes one from the keyword
            arguments below (owned by this reward: :meth:`close` stops its pool).
        restorer: Restorer of the reward's own engine (default ``classical``).
        scorer: Scorer of the reward's own engine (default ``measure``; never the policy).
        workers: Worker processes of the reward's own engine (default 1; 0 restores inline).
        restorer_kwargs: Keyword arguments of the restorer.
        scorer_kwargs: Keyword arguments of the scorer.

    """

    def __init__(
        self,
        engine: RewardEngine | None = None,
        *,
        restorer: str | None = None,
        scorer: str | None = None,
        workers: int | None = None,
        restorer_kwargs: dict | None = None,
        scorer_kwargs: dict | None = None,
    ) -> None:
        super().__init__()
        settings = dict(restorer=restorer, scorer=scorer, workers=workers, restorer_kwargs=restorer_kwargs,
                        scorer_kwargs=scorer_kwargs)  # fmt: skip
        given = {k: v for k, v in settings.items() if v is not None}
        if engine is not None and given:
            raise ValueError(f"{sorted(given)} belong to the engine passed to the reward, not to the reward")
        self.engine = engine if engine is not None else RewardEngine(**given)

        #: The latest call's (input, restored or None, completion text) triples, for sample logging
        #: (rl/tb_samples.py); not pickled, not shown.
        self._last_batch: list[tuple[np.ndarray, np.ndarray | None, str]] = []

    def __getstate__(self) -> dict:
        return {k: v for k, v in vars(self).items() if k != "_last_batch"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, _last_batch=[])

    @property
    def restorer(self) -> str:
        """The engine's restorer."""
        return self.engine.restorer

    @property
    def scorer(self) -> str:
        """The engine's scorer."""
        return self.engine.scorer

    @property
    def workers(self) -> int:
        """The engine's worker processes."""
        return self.engine.workers

    @property
    def last_batch(self) -> list[tuple[np.ndarray, np.ndarray | None, str]]:
        """``(input uint8, restored uint8 or None, completion text)`` of each completion of the latest call."""
        return list(self._last_batch)

    def close(self) -> None:
        """Stop the engine's worker pool (the engine's owner usually does, by leaving its ``with`` block)."""
        self.engine.close()

    def _outcomes(self, completions, image) -> tuple[list[np.ndarray], list[Outcome | None]]:
        images = [as_uint8(im) for im in image]
        records = [parse_record(c, u8) for c, u8 in zip(completions, images, strict=True)]
        outcomes = self.engine.restore(images, records)
        self._last_batch = [
            (u8, None if a is None else a.pixels, completion_text(c))
            for u8, a, c in zip(images, outcomes, completions, strict=True)
        ]
        return images, outcomes


class FormatReward(Reward):
    """1.0 when the completion parses (:func:`~reasoner.vlm_output.parse_completion`) and assembles into a record.

    >>> import numpy as np
    >>> from rl.rewards import FormatReward
    >>> from reasoner.vlm_output import completion_json, from_record
    >>> from reasoner.measure import MeasureReasoner
    >>> img = np.full((32, 32, 3), 0.5, np.float32)
    >>> good = completion_json(from_record(MeasureReasoner().diagnose(img)))
    >>> FormatReward()(prompts=[None, None], completions=[good, "{not json"], image=[img, img])
    [1.0, 0.0]
    """

    name = "format"

    def __call__(self, prompts, completions, *, image=None, **kwargs) -> list[float | None]:
        """One score per completion."""
        images = image if image is not None else [np.zeros((8, 8, 3), np.uint8)] * len(completions)
        return [float(parse_record(c, im) is not None) for _p, c, im in zip(prompts, completions, images, strict=True)]


class SeverityReduction(_Restoring):
    """How much better the restored image is than the input, by a scorer independent of the policy (in [-1, 1]).

    The plan is :func:`restorer.plan_from_record` of the policy's record, run by ``restorer``. By default
    (``estimate="quality"``) the score is the artefact-aware scorer's estimated PSNR gain against the input
    (:mod:`reasoner.quality`), discounted by ``z`` times the estimate's spread on the image and divided by
    ``scale_db``: it sees what restoration adds (ringing, over-smoothing, banding, colour shifts), so plans whose
    artefacts the severity scorer cannot see do not pay. ``estimate="severity"`` (or no quality model installed)
    falls back to ``scorer`` severity of the input minus that of the restored image (``per_kind`` averages the
    per-kind drops over kinds seen in either image). ``None`` when the completion does not parse or the
    restoration fails.

    >>> import numpy as np
    >>> from rl.rewards import SeverityReduction
    >>> from rl.ground_truth import synthesize
    >>> from reasoner.vlm_output import completion_json, from_record
    >>> clean = np.tile(np.linspace(0.2, 0.8, 96, dtype=np.float32), (96, 1))[..., None].repeat(3, 2)
    >>> noisy = synthesize(clean, 0, kinds=["noise"]).image
    >>> right = completion_json(from_record(synthesize(clean, 0, kinds=["noise"]).record))
    >>> r = SeverityReduction(workers=0)(prompts=[None, None], completions=[right, "oops"], image=[noisy, noisy])
    >>> r[0] > 0, r[1]
    (True, None)
    """

    name = "severity_reduction"

    def __init__(
        self,
        *args,
        per_kind: bool = False,
        estimate: str = "quality",
        scale_db: float = 10.0,
        z: float = 0.5,
        **kwargs,
    ) -> None:
        super().__init__(*args, **kwargs)
        if estimate not in ("quality", "severity"):
            raise ValueError(f"estimate={estimate!r}: choose quality or severity")
        self.per_kind, self.estimate = bool(per_kind), estimate
        self.scale_db, self.z = float(scale_db), float(z)

    def __call__(self, prompts, completions, *, image, **kwargs) -> list[float | None]:
        """One score per completion."""
        images, outcomes = self._outcomes(completions, image)
        estimated = self.estimate == "quality"
        if estimated and all(a.gain_db is not None for a in outcomes if a is not None and a.error is None):
            return [
                None
                if a is None or a.error is not None
                else float(np.clip((a.gain_db - self.z * (a.spread_db or 0.0)) / self.scale_db, -1.0, 1.0))
                for a in outcomes
            ]
        scored = [u8 for u8, a in zip(images, outcomes, strict=True) if a is not None and a.error is None]
        before = iter(self.engine.score(scored))  # inputs are scored only where a restoration is compared
        out: list[float | None] = []
        for _p, a in zip(prompts, outcomes, strict=True):
            if a is None or a.error is not None:
                out.append(None)
                continue
            b = next(before)
            if self.per_kind:
                kinds = [k for k in b.severities if b.severities[k] > 0 or a.severities[k] > 0]
                drops = [b.severities[k] - a.severities[k] for k in kinds]
                out.append(float(np.mean(drops)) if drops else 0.0)
            else:
                out.append(float(b.overall - a.overall))
        return out


class Fidelity(_Restoring):
    """Fidelity change of the restoration against the clean image, or structural drift from the input.

    With a ``clean`` column (synthetic data): ``dSSIM + dPSNR / psnr_scale`` of the restored image relative to the
    input, both against the clean image, clipped to [-1, 1] — negative when restoration moved away from the truth
    (over-processing: deblurring a sharp image, smoothing texture). Without one (real data), ``drift_scale * (s - 1)``
    where ``s`` is :func:`restorer.metrics.structure_score` of input and result (0 for an untouched image, negative as
    structure is lost). ``None`` when the completion does not parse or the restoration fails.

    >>> import numpy as np
    >>> from rl.rewards import Fidelity
    >>> from reasoner.vlm_output import completion_json, from_record
    >>> from rl.ground_truth import synthesize
    >>> rng = np.random.default_rng(0)
    >>> clean = np.clip(0.5 + 0.2 * rng.standard_normal((64, 64, 3)), 0, 1).astype(np.float32)
    >>> blur = completion_json(from_record(synthesize(clean, 0, kinds=["blur"]).record))  # claims blur
    >>> Fidelity(workers=0)(prompts=[None], completions=[blur], image=[clean], clean=[clean])[0] < 0
    True
    """

    name = "fidelity"

    def __init__(self, *args, psnr_scale: float = 20.0, drift_scale: float = 2.0, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.psnr_scale, self.drift_scale = float(psnr_scale), float(drift_scale)

    def __call__(self, prompts, completions, *, image, clean=None, **kwargs) -> list[float | None]:
        """One score per completion."""
        images, outcomes = self._outcomes(completions, image)
        cleans = clean if clean is not None else [None] * len(images)
        out: list[float | None] = []
        for _p, src, ref, a in zip(prompts, images, cleans, outcomes, strict=True):
            if a is None or a.error is not None:
                out.append(None)
                continue
            if ref is not None:
                gt = as_uint8(ref)
                gain = ssim(gt, a.pixels) - ssim(gt, src) + (psnr(gt, a.pixels) - psnr(gt, src)) / self.psnr_scale
                out.append(float(np.clip(gain, -1.0, 1.0)))
            elif np.array_equal(src, a.pixels):
                out.append(0.0)  # untouched: no drift (the windowed correlation is only ~1 numerically)
            else:
                s = structure_score(src.astype(np.float32) / 255, a.pixels.astype(np.float32) / 255)
                out.append(float(max(-1.0, self.drift_scale * (s - 1.0))))
        return out


class DiagnosisAccuracy(Reward):
    """``f1_weight * F1(kinds) + (1 - f1_weight) * (1 - mean |severity error|)`` against the ``record`` column.

    Kinds are the detected ones (level not "none"); severity errors are averaged over kinds either record lists
    (absent = 0). Two clean verdicts score 1. ``None`` when the completion does not parse.

    >>> from rl.rewards import DiagnosisAccuracy
    >>> from rl.ground_truth import synthesize
    >>> from reasoner.vlm_output import completion_json, from_record
    >>> import numpy as np
    >>> truth = synthesize(np.full((32, 32, 3), 0.5, np.float32), 0, kinds=["noise"]).record
    >>> DiagnosisAccuracy()(prompts=[None, None], completions=[completion_json(from_record(truth)), "x"],
    ...                     record=[truth.model_dump_json()] * 2)
    [1.0, None]
    """

    name = "diagnosis_accuracy"

    def __init__(self, f1_weight: float = 0.5) -> None:
        super().__init__()
        self.f1_weight = float(f1_weight)

    def __call__(self, prompts, completions, *, record, image=None, **kwargs) -> list[float | None]:
        """One score per completion."""
        images = image if image is not None else [np.zeros((8, 8, 3), np.uint8)] * len(completions)
        out: list[float | None] = []
        for _p, c, truth_json, im in zip(prompts, completions, record, images, strict=True):
            pred = parse_record(c, im)
            if pred is None:
                out.append(None)
                continue
            truth = DiagnosisRecord.model_validate_json(truth_json) if isinstance(truth_json, str) else truth_json
            said, real = {d.kind for d in pred.detected()}, {d.kind for d in truth.detected()}
            f1 = 1.0 if not said and not real else 2 * len(said & real) / (len(said) + len(real))
            kinds = {d.kind for d in pred.degradations} | {d.kind for d in truth.degradations}
            err = float(np.mean([abs(pred.severity(k) - truth.severity(k)) for k in kinds])) if kinds else 0.0
            out.append(float(self.f1_weight * f1 + (1 - self.f1_weight) * (1 - err)))
        return out


#: Registry name -> reward class; recipes list rewards by these names.
REWARDS: dict[str, type[Reward]] = {
    "format": FormatReward,
    "severity_reduction": SeverityReduction,
    "fidelity": Fidelity,
    "diagnosis_accuracy": DiagnosisAccuracy,
}


def build_rewards(
    spec: dict[str, float | dict], engine: RewardEngine | None = None
) -> tuple[list[Reward], list[float]]:
    """Reward instances and weights from a recipe's ``rewards`` mapping.

    Each value is a weight, or a mapping with ``weight`` and the reward's keyword arguments. The restoring rewards
    share ``engine`` (the caller owns it and closes it); without one, each makes its own.

    >>> fns, weights = build_rewards({"format": 0.2, "diagnosis_accuracy": {"weight": 0.5, "f1_weight": 0.7}})
    >>> [f.__name__ for f in fns], weights
    (['format', 'diagnosis_accuracy'], [0.2, 0.5])

    Raises:
        ValueError: For an unknown reward or option, naming the reward.

    """

    def options(cls: type, opts: dict) -> None:
        if engine is not None and issubclass(cls, _Restoring):
            opts["engine"] = engine

    return instantiate(spec, REWARDS, "unknown reward {name!r} in the recipe", options)


def instantiate(
    spec: dict[str, float | dict],
    registry: Mapping[str, type[Reward]],
    unknown: str,
    options: Callable[[type, dict], None],
) -> tuple[list[Reward], list[float]]:
    """Reward instances and weights from a ``rewards`` mapping over ``registry`` (diagnosis or plan rewards).

    ``unknown`` is the message for a name not in ``registry`` (formatted with ``name``); ``options(cls, opts)`` may
    add to a reward's keyword arguments before it is built.
    """
    fns, weights = [], []
    for name, value in spec.items():
        if name not in registry:
            raise ValueError(f"{unknown.format(name=name)}; known: {sorted(registry)}")
        opts = dict(value) if isinstance(value, dict) else {"weight": value}
        weight = float(opts.pop("weight", 1.0))
        cls = registry[name]
        options(cls, opts)
        try:
            fns.append(cls(**opts))
        except (TypeError, ValueError) as e:
            raise ValueError(f"reward {name!r}: {e}") from None
        weights.append(weight)
    return fns, weights
