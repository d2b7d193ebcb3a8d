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

Rewards are picklable callable classes with a stable ``__name__`` (TRL's log key). Restorations run in a process
pool shared by the rewards of one configuration and are cached by (image sha256, plan JSON), so the severity and
fidelity rewards restore each completion once. Imports no torch.
"""

from __future__ import annotations

import hashlib
import io
import multiprocessing
from collections import OrderedDict
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import numpy as np

from reasoner.imageio import from_array, to_uint8
from reasoner.schema import DiagnosisRecord, Provenance
from reasoner.version import rnr_version
from reasoner.vlm_output import CompletionError, parse_completion, to_record
from restorer.metrics import psnr, ssim, structure_score

#: Restorations kept per configuration (uint8 images; a 256x384 crop is ~0.3 MB).
CACHE_SIZE = 512


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


def _sha(u8: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(u8).tobytes()).hexdigest()


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


# --------------------------------------------------------------------------------------------------- restoration


@dataclass(frozen=True)
class Outcome:
    """A restoration re-scored: the 8-bit result and the scorer's severities (``error`` set when it failed)."""

    pixels: np.ndarray | None
    overall: float = 0.0
    severities: dict | None = None
    error: str | None = None


_WORKER_MODELS: dict[tuple, Any] = {}


def _model(kind: str, name: str, kwargs: tuple) -> Any:
    key = (kind, name, kwargs)
    if key not in _WORKER_MODELS:
        if kind == "restorer":
            from restorer import load_restorer

            _WORKER_MODELS[key] = load_restorer(name, **dict(kwargs))
        else:
            from reasoner import load_reasoner

            _WORKER_MODELS[key] = load_reasoner(name, **dict(kwargs))
    return _WORKER_MODELS[key]


def _score(spec: tuple, u8: np.ndarray) -> Outcome:
    """Worker job: the scorer's severities of an 8-bit image."""
    rec = _model("scorer", spec[2], spec[3]).diagnose(u8.astype(np.float32) / 255.0)
    return Outcome(None, rec.overall_severity, rec.severities())


def _restore(spec: tuple, u8: np.ndarray, record_json: str, plan_json: str) -> Outcome:
    """Worker job: restore ``u8`` with the plan, quantise to 8 bits, re-score; failures come back as ``error``."""
    from restorer import Plan

    try:
        record = DiagnosisRecord.model_validate_json(record_json)
        out = _model("restorer", spec[0], spec[1]).restore(
            u8.astype(np.float32) / 255.0, record, [], Plan.model_validate_json(plan_json)
        )
        if out.shape != u8.shape or not np.isfinite(out).all():
            return Outcome(None, error=f"restorer returned shape {out.shape} or non-finite values")
        res = to_uint8(out)
        scored = _score(spec, res)
        return Outcome(res, scored.overall, scored.severities)
    except Exception as e:  # a failed restoration is a missing score, not a crashed training step
        return Outcome(None, error=f"{type(e).__name__}: {e}"[:500])


class _Engine:
    """Restores and scores in worker processes (or inline with ``workers=0``), with LRU caches."""

    def __init__(self, spec: tuple, workers: int):
        self.spec, self.workers = spec, workers
        self._pool: ProcessPoolExecutor | None = None
        self._restored: OrderedDict[tuple[str, str], Outcome] = OrderedDict()
        self._scores: OrderedDict[str, Outcome] = OrderedDict()
        self.hits = self.misses = 0

    def _map(self, fn, jobs: list[tuple]) -> list[Outcome]:
        if not jobs:
            return []
        if self.workers <= 0:
            return [fn(self.spec, *job) for job in jobs]
        if self._pool is None:
            # spawn: the trainer process holds torch/OpenMP threads, which a forked child can deadlock on.
            self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"))
        try:
            futures = [self._pool.submit(fn, self.spec, *job) for job in jobs]
            return [f.result() for f in futures]
        except BrokenProcessPool as e:
            self._pool = None
            return [Outcome(None, error=f"worker process died: {e}")] * len(jobs)

    @staticmethod
    def _put(cache: OrderedDict, key, value) -> None:
        cache[key] = value
        while len(cache) > CACHE_SIZE:
            cache.popitem(last=False)

    def score(self, images: list[np.ndarray]) -> list[Outcome]:
        """The scorer's severities of each (8-bit) input, cached by sha256."""
        keys = [_sha(u8) for u8 in images]
        # Results are collected here, not re-read from the cache: putting new entries may evict ones this call hit.
        found = {k: self._scores[k] for k in keys if k in self._scores}
        todo = {k: u8 for k, u8 in zip(keys, images, strict=True) if k not in found}
        for k, out in zip(todo, self._map(_score, [(u8,) for u8 in todo.values()]), strict=True):
            self._put(self._scores, k, out)
            found[k] = out
        return [found[k] for k in keys]

    def restore(self, images: list[np.ndarray], records: list[DiagnosisRecord | None]) -> list[Outcome | None]:
        """Restore each image with its record's plan and re-score it; ``None`` where the record is ``None``."""
        from restorer import plan_from_record

        keys: list[tuple[str, str] | None] = []
        todo: dict[tuple[str, str], tuple] = {}
        found: dict[tuple[str, str], Outcome] = {}  # hits kept here: the puts below may evict them from the cache
        for u8, rec in zip(images, records, strict=True):
            if rec is None:
                keys.append(None)
                continue
            plan_json = plan_from_record(rec).model_dump_json()
            key = (_sha(u8), plan_json)
            keys.append(key)
            if key in self._restored:
                self.hits += 1
                self._restored.move_to_end(key)  # least recently *used* goes first
                found[key] = self._restored[key]
            elif key not in todo:
                self.misses += 1
                todo[key] = (u8, rec.model_dump_json(), plan_json)
        for key, out in zip(todo, self._map(_restore, list(todo.values())), strict=True):
            todo[key] = out
            if out.error is None:  # failures are retried next time, not cached
                self._put(self._restored, key, out)
        return [None if k is None else todo[k] if k in todo else found[k] for k in keys]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None


_ENGINES: dict[tuple, _Engine] = {}


def engine(restorer: str, restorer_kwargs: dict, scorer: str, scorer_kwargs: dict, workers: int) -> _Engine:
    """The process-wide engine for this configuration (rewards with equal settings share pool and caches)."""
    spec = (restorer, tuple(sorted(restorer_kwargs.items())), scorer, tuple(sorted(scorer_kwargs.items())))
    key = (*spec, workers)
    if key not in _ENGINES:
        _ENGINES[key] = _Engine(spec, workers)
    return _ENGINES[key]


def shutdown() -> None:
    """Stop every worker pool and drop the engines with their caches (pools also stop at interpreter exit)."""
    for e in _ENGINES.values():
        e.close()
    _ENGINES.clear()


# ------------------------------------------------------------------------------------------------------ rewards


class _Reward:
    """Base: a picklable callable whose ``__name__`` is the registry name (TRL logs ``rewards/<name>/mean``)."""

    name = "reward"

    def __init__(self) -> None:
        self.__name__ = self.name

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if k != "__name__" and not k.startswith("_"))
        return f"{type(self).__name__}({shown})"


class _Restoring(_Reward):
    def __init__(
        self,
        restorer: str = "classical",
        scorer: str = "measure",
        workers: int = 1,
        restorer_kwargs: dict | None = None,
        scorer_kwargs: dict | None = None,
    ) -> None:
        super().__init__()
        if scorer in ("qwen3vl", "policy"):
            # Scoring with the model being trained lets it reward itself; use an independent scorer.
            raise ValueError(f"scorer={scorer!r} would score the policy with itself; use measure (the default)")
        self.restorer, self.scorer, self.workers = restorer, scorer, int(workers)
        self.restorer_kwargs, self.scorer_kwargs = dict(restorer_kwargs or {}), dict(scorer_kwargs or {})

        #: The latest call's (input, restored or None, completion text) triples, for sample logging
        #: (rl/tb_samples.py); not pickled, not shown.
        self._last_batch: list[tuple[np.ndarray, np.ndarray | None, str]] = []

    def __getstate__(self) -> dict:
        return {k: v for k, v in vars(self).items() if k != "_last_batch"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, _last_batch=[])

    @property
    def last_batch(self) -> list[tuple[np.ndarray, np.ndarray | None, str]]:
        """``(input uint8, restored uint8 or None, completion text)`` of each completion of the latest call."""
        return list(self._last_batch)

    def _engine(self) -> _Engine:
        return engine(self.restorer, self.restorer_kwargs, self.scorer, self.scorer_kwargs, self.workers)

    def _outcomes(self, completions, image) -> tuple[list[np.ndarray], list[Outcome | None]]:
        images = [as_uint8(im) for im in image]
        records = [parse_record(c, u8) for c, u8 in zip(completions, images, strict=True)]
        outcomes = self._engine().restore(images, records)
        self._last_batch = [
            (u8, None if a is None else a.pixels, completion_text(c))
            for u8, a, c in zip(images, outcomes, completions, strict=True)
        ]
        return images, outcomes


class FormatReward(_Reward):
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
    """Scorer severity of the input minus that of the restored image (in [-1, 1]; positive = improvement).

    The plan is :func:`restorer.plan_from_record` of the policy's record, run by ``restorer``; both images are
    scored by ``scorer`` (default ``measure``, independent of the policy). ``per_kind`` averages the per-kind drops
    over kinds the scorer sees in either image instead of using the combined overall severity. ``None`` when the
    completion does not parse or the restoration fails.

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

    def __init__(self, *args, per_kind: bool = False, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.per_kind = bool(per_kind)

    def __call__(self, prompts, completions, *, image, **kwargs) -> list[float | None]:
        """One score per completion."""
        images, outcomes = self._outcomes(completions, image)
        scored = [u8 for u8, a in zip(images, outcomes, strict=True) if a is not None and a.error is None]
        before = iter(self._engine().score(scored))  # inputs are scored only where a restoration is compared
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


class DiagnosisAccuracy(_Reward):
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
REWARDS: dict[str, type[_Reward]] = {
    "format": FormatReward,
    "severity_reduction": SeverityReduction,
    "fidelity": Fidelity,
    "diagnosis_accuracy": DiagnosisAccuracy,
}


def build_rewards(spec: dict[str, float | dict], shared: dict | None = None) -> tuple[list[_Reward], list[float]]:
    """Reward instances and weights from a recipe's ``rewards`` mapping.

    Each value is a weight, or a mapping with ``weight`` and the reward's keyword arguments; ``shared`` keyword
    arguments (restorer, scorer, workers) go to the rewards that take them.

    >>> fns, weights = build_rewards({"format": 0.2, "diagnosis_accuracy": {"weight": 0.5, "f1_weight": 0.7}})
    >>> [f.__name__ for f in fns], weights
    (['format', 'diagnosis_accuracy'], [0.2, 0.5])
    """
    import inspect

    fns, weights = [], []
    for name, value in spec.items():
        if name not in REWARDS:
            raise ValueError(f"unknown reward {name!r} in the recipe; known: {sorted(REWARDS)}")
        opts = dict(value) if isinstance(value, dict) else {"weight": value}
        weight = float(opts.pop("weight", 1.0))
        cls = REWARDS[name]
        accepted = set(inspect.signature(cls.__init__).parameters) | (
            set(inspect.signature(_Restoring.__init__).parameters) if issubclass(cls, _Restoring) else set()
        )
        kwargs = {k: v for k, v in (shared or {}).items() if k in accepted} | opts
        try:
            fns.append(cls(**kwargs))
        except TypeError as e:
            raise ValueError(f"reward {name!r}: {e}") from None
        weights.append(weight)
    return fns, weights
