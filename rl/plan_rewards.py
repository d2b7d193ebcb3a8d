"""GRPO rewards for a restoration-plan policy (:mod:`rl.plan_policy`), in TRL's signature, independent of the policy.

Each reward is called as ``reward(prompts, completions, *, pixels, hand, record, clean=None, **columns)``: ``pixels``
the degraded crop, ``hand`` the hand plan's JSON (the diagnosis the prompt shows), ``record`` the diagnosis record's
JSON (what the restorer reads), ``clean`` the clean crop on synthetic data. A completion is parsed against the
diagnosis (:func:`rl.plan_policy.parse_completion`), turned into a plan, executed by the restorer and judged:

- :class:`PlanFormat` (``format``): 1 when the reply parses into a plan of diagnosed kinds, else 0.
- :class:`QualityGain` (``quality_gain``): the artefact-aware scorer's estimated PSNR gain against the input
  (:func:`reasoner.quality.assess`, as :class:`rl.rewards.SeverityReduction` with ``estimate="quality"``),
  ``z`` ensemble spreads down, over ``scale_db``, in [-1, 1]. No reference needed: it works on real photos.
- :class:`PsnrGain` (``psnr_gain``): the full-reference gain on synthetic data, PSNR(restored, clean) minus
  PSNR(degraded, clean), over ``scale_db``, in [-1, 1]; None without a clean crop.
- :class:`PlanFidelity` (``fidelity``): the fidelity guard of :class:`rl.rewards.Fidelity` (dSSIM + dPSNR / 20
  against the clean crop, or structural drift from the input without one).

The restoring rewards share one :class:`PlanEngine` (restorations cached by image and plan, so the three restore
each completion once). A reply that does not parse scores 0 on format and, on the restoring rewards, None (TRL leaves
it out of the weighted sum) or, with ``fallback`` (the plan recipes' choice), the score of the hand plan the agent
falls back to. Imports no torch.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from restorer.metrics import psnr, ssim, structure_score
from restorer.plan import Plan
from rl import reward_engine as _engine
from rl.plan_policy import parse_completion, to_plan
from rl.reward_engine import Outcome, RewardEngine, image_key
from rl.rewards import Reward, as_uint8, completion_text, instantiate


def restore_and_assess(backends, u8: np.ndarray, record_json: str, plan_json: str) -> Outcome:
    """Restore ``u8`` with the plan, quantise to 8 bits, and estimate the change with the artefact-aware scorer.

    Unlike :func:`rl.reward_engine.restore_and_score` the result is not re-diagnosed (no plan reward reads the
    severities). Failures come back as ``error``.
    """
    from reasoner.common import one_line
    from reasoner.imageio import to_uint8
    from reasoner.quality import assess, load_model
    from reasoner.schema import DiagnosisRecord

    try:
        record = DiagnosisRecord.model_validate_json(record_json)
        plan = Plan.model_validate_json(plan_json)
        src = u8.astype(np.float32) / 255.0
        result = backends.restorer.restore(src, record, [], plan)
        out = np.asarray(getattr(result, "pixels", result))
        if out.shape != u8.shape or not np.isfinite(out).all():
            return Outcome(None, error=f"restorer returned shape {out.shape} or non-finite values")
        res = to_uint8(out)
        gain = spread = None
        arts: tuple[str, ...] = ()
        if load_model() is not None:
            q = assess(src, res.astype(np.float32) / 255.0, plan.kinds)
            gain, spread, arts = q.gain_db, q.spread_db, tuple(q.artefacts)
        return Outcome(res, gain_db=gain, spread_db=spread, artefacts=arts)
    except Exception as e:  # a failed restoration is a missing score, not a crashed training step
        return Outcome(None, error=one_line(e, 500, with_type=True))


def _worker_restore_assess(u8: np.ndarray, record_json: str, plan_json: str) -> Outcome:
    return restore_and_assess(_engine._WORKER, u8, record_json, plan_json)


class PlanEngine(RewardEngine):
    """A :class:`~rl.reward_engine.RewardEngine` that runs given plans (not a record's), restored and assessed.

    >>> from restorer.plan import Operation
    >>> img = np.full((32, 32, 3), 128, np.uint8)
    >>> rec = '{"x": 1}'  # the record is only read when the restorer runs; a bad one is a failed restoration
    >>> with PlanEngine(workers=0) as engine:
    ...     engine.restore_plans([img], [rec], [Plan()])[0].error is not None
    True
    """

    def restore_plans(self, images: list[np.ndarray], records: list[str], plans: list[Plan | None]) -> list:
        """Restore each 8-bit image with its plan (record JSON alongside); None where the plan is None."""
        keys: list[tuple[str, str] | None] = []
        todo: dict[tuple[str, str], Any] = {}
        found: dict[tuple[str, str], Outcome] = {}
        for u8, rec, plan in zip(images, records, plans, strict=True):
            if plan is None:
                keys.append(None)
                continue
            plan_json = plan.model_dump_json()
            key = (image_key(u8), plan_json)
            keys.append(key)
            if key in self._restored:
                self.hits += 1
                self._restored.move_to_end(key)
                found[key] = self._restored[key]
            elif key not in todo:
                self.misses += 1
                todo[key] = (u8, rec, plan_json)
        done = self._map(restore_and_assess, _worker_restore_assess, list(todo.values()))
        for key, out in zip(todo, done, strict=True):
            todo[key] = out
            if out.error is None:
                self._put(self._restored, key, out)
        return [None if k is None else todo[k] if k in todo else found[k] for k in keys]


def plans_of(completions, hand, fallback: bool = False) -> list[Plan | None]:
    """The plan of each completion against its row's hand plan (JSON or Plan).

    Where a completion does not parse: None, or with ``fallback`` the hand plan itself (what the agent runs then).
    """
    out = []
    for c, h in zip(completions, hand, strict=True):
        h = h if isinstance(h, Plan) else Plan.model_validate_json(h)
        parsed = parse_completion(c, h)
        out.append((h if fallback else None) if parsed is None else to_plan(parsed, h))
    return out


class PlanFormat(Reward):
    """1.0 when the reply parses into a plan of diagnosed kinds, else 0.0.

    >>> from restorer.plan import Operation
    >>> hand = Plan(operations=[Operation(kind="noise", severity=0.4)]).model_dump_json()
    >>> PlanFormat()(None, ["noise 1.25", '{"steps": [{"kind": "noise", "strength": 1}]}', "blur 1", "{"],
    ...              hand=[hand] * 4)
    [1.0, 1.0, 0.0, 0.0]
    """

    name = "format"

    def __call__(self, prompts, completions, *, hand, **kwargs) -> list[float | None]:
        """One score per completion."""
        return [float(p is not None) for p in plans_of(completions, hand)]


class _PlanRestoring(Reward):
    """Base of the rewards that restore: plans run through a shared :class:`PlanEngine`.

    Args:
        engine: The run's engine (shared by its restoring rewards); None makes one (``workers`` processes, 0 inline).
        workers: Worker processes of an engine made here.
        fallback: Score a reply that does not parse as the hand plan it falls back to in the agent (its format
            reward is 0 all the same) instead of None. Without it, GRPO's advantage of a malformed reply is the
            format weight alone, far below any restoration, and the policy learns to write whatever is least often
            malformed (fewer kinds, the commonest digits) rather than what restores best.

    """

    def __init__(
        self, engine: PlanEngine | None = None, *, workers: int | None = None, fallback: bool = False
    ) -> None:
        super().__init__()
        self.fallback = bool(fallback)
        if engine is not None and workers is not None:
            raise ValueError("workers belongs to the engine passed to the reward, not to the reward")
        self.engine = engine if engine is not None else PlanEngine(workers=0 if workers is None else workers)
        self._last_batch: list[tuple[np.ndarray, np.ndarray | None, str]] = []

    def __getstate__(self) -> dict:
        return {k: v for k, v in vars(self).items() if k != "_last_batch"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, _last_batch=[])

    @property
    def last_batch(self) -> list[tuple[np.ndarray, np.ndarray | None, str]]:
        """``(input uint8, restored uint8 or None, completion text)`` of each completion of the latest call."""
        return list(self._last_batch)

    def close(self) -> None:
        """Stop the engine's worker pool."""
        self.engine.close()

    def _outcomes(self, completions, pixels, hand, record) -> tuple[list[np.ndarray], list[Outcome | None]]:
        images = [as_uint8(p) for p in pixels]
        outcomes = self.engine.restore_plans(images, list(record), plans_of(completions, hand, self.fallback))
        self._last_batch = [
            (u8, None if a is None else a.pixels, completion_text(c))
            for u8, a, c in zip(images, outcomes, completions, strict=True)
        ]
        return images, outcomes


def _ok(a: Outcome | None) -> bool:
    return a is not None and a.error is None


class QualityGain(_PlanRestoring):
    """The artefact-aware scorer's estimated gain, ``z`` spreads down, over ``scale_db``, clipped to [-1, 1].

    None where the reply does not parse, the restoration fails, or no quality model is installed.
    """

    name = "quality_gain"

    def __init__(self, *args, scale_db: float = 10.0, z: float = 0.5, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.scale_db, self.z = float(scale_db), float(z)

    def __call__(self, prompts, completions, *, pixels, hand, record, **kwargs) -> list[float | None]:
        """One score per completion."""
        _, outcomes = self._outcomes(completions, pixels, hand, record)
        return [
            float(np.clip((a.gain_db - self.z * (a.spread_db or 0.0)) / self.scale_db, -1.0, 1.0))
            if _ok(a) and a.gain_db is not None else None
            for a in outcomes
        ]  # fmt: skip


class PsnrGain(_PlanRestoring):
    """Full-reference gain on synthetic data: (PSNR(restored, clean) - PSNR(degraded, clean)) / scale_db in [-1, 1].

    >>> from restorer.plan import Operation
    >>> rng = np.random.default_rng(0)
    >>> clean = np.tile(np.linspace(0.2, 0.8, 64, dtype=np.float32), (64, 1))[..., None].repeat(3, 2)
    >>> from rl.ground_truth import synthesize
    >>> syn = synthesize(clean, 0, kinds=["noise"])
    >>> from restorer.plan import plan_from_record
    >>> hand = plan_from_record(syn.record).model_dump_json()
    >>> r = PsnrGain(workers=0)(None, ["noise 1", "none", "oops"], pixels=[syn.image] * 3, hand=[hand] * 3,
    ...                         record=[syn.record.model_dump_json()] * 3, clean=[clean] * 3)
    >>> r[0] > 0, r[1], r[2]
    (True, 0.0, None)
    """

    name = "psnr_gain"

    def __init__(self, *args, scale_db: float = 10.0, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.scale_db = float(scale_db)

    def __call__(self, prompts, completions, *, pixels, hand, record, clean=None, **kwargs) -> list[float | None]:
        """One score per completion."""
        images, outcomes = self._outcomes(completions, pixels, hand, record)
        cleans = clean if clean is not None else [None] * len(images)
        out: list[float | None] = []
        for src, ref, a in zip(images, cleans, outcomes, strict=True):
            if not _ok(a) or ref is None:
                out.append(None)
                continue
            gt = as_uint8(ref)
            out.append(float(np.clip((psnr(gt, a.pixels) - psnr(gt, src)) / self.scale_db, -1.0, 1.0)))
        return out


class PlanFidelity(_PlanRestoring):
    """The fidelity guard: dSSIM + dPSNR / psnr_scale against the clean crop, or ``drift_scale * (structure - 1)``."""

    name = "fidelity"

    def __init__(self, *args, psnr_scale: float = 20.0, drift_scale: float = 2.0, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.psnr_scale, self.drift_scale = float(psnr_scale), float(drift_scale)

    def __call__(self, prompts, completions, *, pixels, hand, record, clean=None, **kwargs) -> list[float | None]:
        """One score per completion."""
        images, outcomes = self._outcomes(completions, pixels, hand, record)
        cleans = clean if clean is not None else [None] * len(images)
        out: list[float | None] = []
        for src, ref, a in zip(images, cleans, outcomes, strict=True):
            if not _ok(a):
                out.append(None)
            elif ref is not None:
                gt = as_uint8(ref)
                gain = ssim(gt, a.pixels) - ssim(gt, src) + (psnr(gt, a.pixels) - psnr(gt, src)) / self.psnr_scale
                out.append(float(np.clip(gain, -1.0, 1.0)))
            elif np.array_equal(src, a.pixels):
                out.append(0.0)
            else:
                s = structure_score(src.astype(np.float32) / 255, a.pixels.astype(np.float32) / 255)
                out.append(float(max(-1.0, self.drift_scale * (s - 1.0))))
        return out


#: Registry name -> reward class; plan recipes (``rl/recipes/grpo_restore*.yaml``) list rewards by these names.
PLAN_REWARDS: dict[str, type[Reward]] = {
    "format": PlanFormat,
    "quality_gain": QualityGain,
    "psnr_gain": PsnrGain,
    "fidelity": PlanFidelity,
}


def build_plan_rewards(
    spec: dict[str, float | dict], engine: PlanEngine | None = None, fallback: bool = False
) -> tuple[list, list[float]]:
    """Reward instances and weights from a plan recipe's ``rewards`` mapping (weights, or mappings with options).

    ``fallback`` is the restoring rewards' default (see :class:`_PlanRestoring`); a reward's options may override it.

    >>> fns, weights = build_plan_rewards({"format": 0.2, "psnr_gain": {"weight": 1.0, "scale_db": 5}})
    >>> [f.__name__ for f in fns], weights, fns[1].scale_db
    (['format', 'psnr_gain'], [0.2, 1.0], 5.0)

    Raises:
        ValueError: For an unknown reward or option, naming the reward.

    """

    def options(cls: type, opts: dict) -> None:
        if issubclass(cls, _PlanRestoring):
            opts.setdefault("fallback", fallback)
            if engine is not None:
                opts["engine"] = engine

    return instantiate(spec, PLAN_REWARDS, "unknown plan reward {name!r}", options)
