"""Restorations and re-scorings for the restoring rewards, in worker processes, with caches, owned by a context.

A :class:`RewardEngine` executes a completion's plan with a restorer, quantises the result to 8 bits and re-scores
it with an independent scorer (``measure`` by default; never the policy being trained). Restorations are cached by
(image sha256, plan JSON) and scores by image sha256, so the rewards that share an engine (severity reduction and
fidelity) restore each completion once. The engine owns its worker pool and caches; ``with RewardEngine(...) as
engine:`` stops the pool on leaving (:meth:`RewardEngine.close` does it by hand). Imports no torch.

>>> with RewardEngine(workers=0) as engine:
...     engine.score([np.full((32, 32, 3), 128, np.uint8)])[0].error is None
True
"""

from __future__ import annotations

import hashlib
import multiprocessing
from collections import OrderedDict
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

import numpy as np

from reasoner.common import one_line
from reasoner.imageio import to_uint8
from reasoner.registry import read_output
from reasoner.schema import DiagnosisRecord

#: Restorations kept per engine (uint8 images; a 256x384 crop is ~0.3 MB).
CACHE_SIZE = 512
#: Scorers that are the policy itself: scoring with them lets the policy reward itself.
SELF_SCORERS = ("qwen3vl", "policy")


@dataclass(frozen=True)
class Outcome:
    """A restoration re-scored, or ``error`` when it failed.

    Holds the 8-bit result, the scorer's severities, and the artefact-aware scorer's estimate of the quality
    change against the input (``gain_db``/``spread_db``; None without a quality model).
    """

    pixels: np.ndarray | None
    overall: float = 0.0
    severities: dict | None = None
    error: str | None = None
    gain_db: float | None = None
    spread_db: float | None = None
    artefacts: tuple[str, ...] = ()


def image_key(u8: np.ndarray) -> str:
    """The cache key of an 8-bit image: SHA-256 of its pixels."""
    return hashlib.sha256(np.ascontiguousarray(u8).tobytes()).hexdigest()


class _Backends:
    """The restorer and scorer of one engine configuration, loaded on first use (in the process that uses them)."""

    def __init__(self, spec: tuple) -> None:
        self.spec = spec
        self._restorer = self._scorer = None

    @property
    def restorer(self) -> Any:
        if self._restorer is None:
            from restorer import load_restorer

            self._restorer = load_restorer(self.spec[0], **dict(self.spec[1]))
        return self._restorer

    @property
    def scorer(self) -> Any:
        if self._scorer is None:
            from reasoner import load_reasoner

            self._scorer = load_reasoner(self.spec[2], **dict(self.spec[3]))
        return self._scorer


def score_image(backends: _Backends, u8: np.ndarray, restored_kinds: tuple[str, ...] | None = None) -> Outcome:
    """The scorer's severities of an 8-bit image.

    ``restored_kinds``: the image is a restoration's output and these kinds were restored on the way to it; it is
    read as the agent's judgement reads one (:func:`reasoner.registry.read_output`).
    """
    img = u8.astype(np.float32) / 255.0
    if restored_kinds is None:
        rec = backends.scorer.diagnose(img)
    else:
        rec = read_output(backends.scorer, img, restored_kinds)[0]
    return Outcome(None, rec.overall_severity, rec.severities())


def restore_and_score(backends: _Backends, u8: np.ndarray, record_json: str, plan_json: str) -> Outcome:
    """Restore ``u8`` with the plan, quantise to 8 bits, re-score; failures come back as ``error``."""
    from restorer import Plan

    try:
        record, plan = DiagnosisRecord.model_validate_json(record_json), Plan.model_validate_json(plan_json)
        src = u8.astype(np.float32) / 255.0
        result = backends.restorer.restore(src, record, [], plan)
        # Restorers return restorer.base.RestoreOutput; a bare array is accepted from restorers written before it.
        out = np.asarray(getattr(result, "pixels", result))
        if out.shape != u8.shape or not np.isfinite(out).all():
            return Outcome(None, error=f"restorer returned shape {out.shape} or non-finite values")
        res = to_uint8(out)
        scored = score_image(backends, res, tuple(plan.kinds))
        gain = spread = None
        arts: tuple[str, ...] = ()
        from reasoner.quality import assess, load_model

        if load_model() is not None:  # the artefact-aware scorer: independent of the policy, like the scorer
            q = assess(src, res.astype(np.float32) / 255.0, plan.kinds)
            gain, spread, arts = q.gain_db, q.spread_db, tuple(q.artefacts)
        return Outcome(res, scored.overall, scored.severities, gain_db=gain, spread_db=spread, artefacts=arts)
    except Exception as e:  # a failed restoration is a missing score, not a crashed training step
        return Outcome(None, error=one_line(e, 500, with_type=True))


# A worker process serves one engine, so its backends are the process's own state, set when the pool starts it.
_WORKER: _Backends | None = None


def _start_worker(spec: tuple) -> None:
    global _WORKER
    _WORKER = _Backends(spec)


def _worker_score(u8: np.ndarray) -> Outcome:
    return score_image(_WORKER, u8)


def _worker_restore(u8: np.ndarray, record_json: str, plan_json: str) -> Outcome:
    return restore_and_score(_WORKER, u8, record_json, plan_json)


class RewardEngine:
    """Restores and scores in worker processes (or inline with ``workers=0``), with LRU caches.

    Args:
        restorer: Restorer registry name or ``"pkg.module:Class"`` that executes the plans.
        scorer: Reasoner that re-scores the results; never the policy (``qwen3vl``/``policy`` are refused).
        workers: Worker processes (0: restore in the calling process).
        restorer_kwargs: Keyword arguments of the restorer.
        scorer_kwargs: Keyword arguments of the scorer.
        cache_size: Restorations (and scores) kept.

    Pickling keeps the configuration only: a copy starts with empty caches and its own pool.

    """

    def __init__(
        self,
        restorer: str = "classical",
        scorer: str = "measure",
        workers: int = 1,
        restorer_kwargs: dict | None = None,
        scorer_kwargs: dict | None = None,
        cache_size: int = CACHE_SIZE,
    ) -> None:
        if scorer in SELF_SCORERS:
            # Scoring with the model being trained lets it reward itself; use an independent scorer.
            raise ValueError(f"scorer={scorer!r} would score the policy with itself; use measure (the default)")
        self.restorer, self.scorer, self.workers = restorer, scorer, int(workers)
        self.restorer_kwargs, self.scorer_kwargs = dict(restorer_kwargs or {}), dict(scorer_kwargs or {})
        self.cache_size = int(cache_size)
        self._reset()

    def _reset(self) -> None:
        self.spec = (
            self.restorer, tuple(sorted(self.restorer_kwargs.items())),
            self.scorer, tuple(sorted(self.scorer_kwargs.items())),
        )  # fmt: skip
        self._inline = _Backends(self.spec)
        self._pool: ProcessPoolExecutor | None = None
        self._restored: OrderedDict[tuple[str, str], Outcome] = OrderedDict()
        self._scores: OrderedDict[str, Outcome] = OrderedDict()
        self.hits = self.misses = 0

    def __getstate__(self) -> dict:
        keep = ("restorer", "scorer", "workers", "restorer_kwargs", "scorer_kwargs", "cache_size")
        return {k: getattr(self, k) for k in keep}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._reset()

    def __repr__(self) -> str:
        return (
            f"RewardEngine(restorer={self.restorer!r}, scorer={self.scorer!r}, workers={self.workers}, "
            f"restorer_kwargs={self.restorer_kwargs!r}, scorer_kwargs={self.scorer_kwargs!r})"
        )

    def __enter__(self) -> RewardEngine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _map(self, inline, in_worker, jobs: list[tuple]) -> list[Outcome]:
        if not jobs:
            return []
        if self.workers <= 0:
            return [inline(self._inline, *job) for job in jobs]
        if self._pool is None:
            # spawn: the trainer process holds torch/OpenMP threads, which a forked child can deadlock on.
            self._pool = ProcessPoolExecutor(
                self.workers, mp_context=multiprocessing.get_context("spawn"),
                initializer=_start_worker, initargs=(self.spec,),
            )  # fmt: skip
        try:
            futures = [self._pool.submit(in_worker, *job) for job in jobs]
            return [f.result() for f in futures]
        except BrokenProcessPool as e:
            self._pool = None
            return [Outcome(None, error=f"worker process died: {e}")] * len(jobs)

    def _put(self, cache: OrderedDict, key, value) -> None:
        cache[key] = value
        while len(cache) > self.cache_size:
            cache.popitem(last=False)

    def score(self, images: list[np.ndarray]) -> list[Outcome]:
        """The scorer's severities of each (8-bit) input, cached by sha256."""
        keys = [image_key(u8) for u8 in images]
        # Results are collected here, not re-read from the cache: putting new entries may evict ones this call hit.
        found = {k: self._scores[k] for k in keys if k in self._scores}
        todo = {k: u8 for k, u8 in zip(keys, images, strict=True) if k not in found}
        for k, out in zip(todo, self._map(score_image, _worker_score, [(u8,) for u8 in todo.values()]), strict=True):
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
            key = (image_key(u8), plan_json)
            keys.append(key)
            if key in self._restored:
                self.hits += 1
                self._restored.move_to_end(key)  # least recently *used* goes first
                found[key] = self._restored[key]
            elif key not in todo:
                self.misses += 1
                todo[key] = (u8, rec.model_dump_json(), plan_json)
        done = self._map(restore_and_score, _worker_restore, list(todo.values()))
        for key, out in zip(todo, done, strict=True):
            todo[key] = out
            if out.error is None:  # failures are retried next time, not cached
                self._put(self._restored, key, out)
        return [None if k is None else todo[k] if k in todo else found[k] for k in keys]

    def close(self) -> None:
        """Stop the worker pool; the caches stay (a later call starts a new pool)."""
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None
