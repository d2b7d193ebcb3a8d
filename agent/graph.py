"""The reason-then-restore state machine (LangGraph).

diagnose -> retrieve -> [review] -> plan -> restore -> rescore -> decide -> (plan again | [full_size] -> export).
A big photo's attempts run and are judged on crops, and ``full_size`` runs the chosen plan on the whole photo and
judges it again (:mod:`agent.crops`). Backends arrive
through the runtime context (:class:`agent.state.Context`), never built inside nodes; images travel as ``.npy``
files in the run's work directory, so a checkpointed run resumes with all intermediate results. ``review`` runs only
when the context asks for it (``rnr ui``): it interrupts the graph for a person to confirm or edit the diagnosis.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.types import interrupt
from pydantic import BaseModel

from agent import crops, policy
from agent.policy import Final, holds, record_of
from agent.state import Context, RestoreState
from agent.trace import AttemptTrace, FullSizeTrace, QualityTrace, ReviewTrace, Trace
from reasoner.common import as_rgb_float, one_line
from reasoner.imageio import from_array, load_image
from reasoner.measure import psf
from reasoner.measure.backend import tone_range_shifted
from reasoner.measure.entries import psf_luma
from reasoner.registry import read_output
from reasoner.schema import KINDS, DiagnosisRecord, combined_severity
from reasoner.tone_comb import read_tone_comb
from restorer.base import ReferenceImage, RestoreOutput
from restorer.metrics import structure_score
from restorer.plan import plan_from_diagnosis


def _timed(name: str):
    def deco(fn):
        def node(state: RestoreState, runtime: Runtime[Context]) -> dict:
            t0 = time.perf_counter()
            update = fn(state, runtime.context)
            timings = dict(state.timings)
            timings[name] = timings.get(name, 0.0) + time.perf_counter() - t0
            return {**update, "timings": timings}

        # Not functools.wraps: LangGraph reads the signature to inject ``runtime``, and must see this one.
        node.__name__, node.__doc__ = fn.__name__, fn.__doc__
        return node

    return deco


def _npy(state: RestoreState, name: str, pixels: np.ndarray) -> str:
    path = Path(state.work_dir) / f"{name}.npy"
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, np.ascontiguousarray(pixels, dtype=np.float32))
    tmp.replace(path)  # a checkpoint never points at a half-written array
    return str(path)


@_timed("diagnose")
def diagnose(state: RestoreState, ctx: Context) -> dict:
    """Load the input once and diagnose it."""
    img = load_image(state.input_path, max_pixels=ctx.max_pixels)
    Path(state.work_dir).mkdir(parents=True, exist_ok=True)
    stats = None
    if hasattr(ctx.reasoner, "diagnose_measured"):  # the quality scorer reads these statistics too
        record, stats = ctx.reasoner.diagnose_measured(img)
    else:
        record = ctx.reasoner.diagnose(img)
    update = {"input_info": img.info(), "input_npy": _npy(state, "input", img.pixels), "record": record}
    s = ctx.settings
    stats = {k: float(v) for k, v in stats.items()} if stats is not None and s.artefact_scorer else None
    if getattr(ctx.restorer, "local", False) and crops.applies(img.pixels.shape, s.crops_above, s.crop_side):
        corners = crops.boxes(img.pixels.shape, s.crop_side)
        update |= {"crops": corners, "crops_npy": _npy(state, "crops", crops.cut(img.pixels, corners, s.crop_side)),
                   "full_stats": stats}  # fmt: skip
    elif stats is not None:
        update["input_stats"] = stats
    return update


@_timed("retrieve")
def retrieve(state: RestoreState, ctx: Context) -> dict:
    """Top-k references above the library's relevance threshold (none without a library)."""
    if ctx.library is None or ctx.settings.top_k == 0:
        return {"references": []}
    from retrieval.library import LibraryError

    try:
        return {"references": ctx.library.search(np.load(state.input_npy), k=ctx.settings.top_k)}
    except LibraryError:  # damaged since it was opened: restore without references rather than fail the image
        return {"references": []}


#: The resume value that accepts the proposed diagnosis as it is (LangGraph reads ``Command(resume=None)`` as no
#: answer at all, so acceptance needs a value of its own).
ACCEPT = "accept"


def route_retrieved(state: RestoreState, runtime: Runtime[Context]) -> Literal["review", "plan"]:
    """After retrieve: review when a person is asked (``rnr ui``) or kinds are added (``--add``), else plan."""
    return "review" if runtime.context.review or runtime.context.settings.add else "plan"


def reading_of(reasoner, pixels: Callable[[], np.ndarray]) -> Callable[[str], object] | None:
    """``kind -> entry``: ``reasoner``'s reading of a kind a person says is there, or None where it has none.

    The ``measure`` backend's ``forced_entry`` (the kind's factors read off the photo as if present); ``pixels`` is
    called once, on the first reading (nothing is loaded when no kind is new). ``rnr restore --add`` and the UI's
    diagnosis table both read added kinds this way; without a reading they get :mod:`reasoner.edit`'s defaults.
    """
    reader = getattr(reasoner, "forced_entry", None)
    if reader is None:
        return None
    loaded: list[np.ndarray] = []

    def entry(kind: str):
        if not loaded:
            loaded.append(np.ascontiguousarray(pixels(), dtype=np.float32))
        return reader(loaded[0], kind)

    return entry


def with_additions(record: DiagnosisRecord, add: dict[str, float], measured=None) -> DiagnosisRecord:
    """``record`` with each kind of ``add`` the diagnosis did not report added, at its severity (0: its own).

    ``measured``: :func:`reading_of`'s reading of the kind as present, or None; without a reading the entry is what
    ticking the kind in the UI's diagnosis table gives (:func:`reasoner.edit.edit_degradation`: default factors). A
    severity given moves the severity map's factor and keeps the others (a reading stands where it would move
    nothing). A kind the diagnosis reported keeps its own entry. Raises ``ValueError`` (one line) for a severity below
    mild (``Settings`` refuses those already).
    """
    from reasoner.edit import EditRefused, edit_degradation

    have = {d.kind for d in record.detected()}
    added = []
    for kind, severity in add.items():
        if kind in have:
            continue
        base = measured(kind) if measured is not None else None
        try:
            added.append(edit_degradation(base, kind=kind, present=True, severity=severity or None))
        except EditRefused as e:
            if base is None:
                raise ValueError(f"--add {kind}: {e}") from None
            added.append(base)
    if not added:
        return record
    kept = [d for d in record.degradations if d.kind not in {a.kind for a in added}]
    degradations = sorted([*kept, *added], key=lambda d: KINDS.index(d.kind))
    overall = combined_severity(degradations)
    return record.model_copy(update={"degradations": degradations, "overall_severity": overall})


@_timed("review")
def review(state: RestoreState, ctx: Context) -> dict:
    """Interrupt for a person to confirm or edit the diagnosis; continue with their record once the schema accepts it.

    Placed after retrieve, not before: retrieval reads only pixels, so the person sees the references while
    reviewing, and plan is the first node that reads the record. The resume value is :data:`ACCEPT` (keep the
    proposal) or a record (dict, JSON text or :class:`DiagnosisRecord`) of the same image. LangGraph re-runs an
    interrupted node from its start on resume, so nothing before ``interrupt`` does work. An answer the schema rejects
    interrupts again with the error in the payload (``error``), so the run never continues on an invalid record.
    """
    diagnosed = state.record
    measured = reading_of(ctx.reasoner, lambda: np.load(state.input_npy))
    proposed = with_additions(diagnosed, ctx.settings.add, measured)  # the run's --add, before any person sees it
    if not ctx.review:  # only additions: nobody to ask
        if proposed is diagnosed:  # every added kind was diagnosed already
            return {"review": ReviewTrace(edited=False)}
        changes = record_changes(diagnosed, proposed)
        return {"record": proposed, "review": ReviewTrace(edited=True, changes=changes, record_proposed=diagnosed)}
    payload = {"record": proposed.model_dump(mode="json"), "error": None}
    while True:
        answer = interrupt(payload)
        if answer == ACCEPT and proposed is diagnosed:
            return {"review": ReviewTrace(edited=False)}
        if answer == ACCEPT:
            answer = proposed
        try:
            edited = _as_record(answer)
            if edited.image != proposed.image:
                raise ValueError("the edited record describes another image (its `image` block changed)")
            overall = combined_severity(edited.degradations)
            if abs(edited.overall_severity - overall) > 1e-3:  # the plan and the do-no-harm check read it
                raise ValueError(f"overall_severity {edited.overall_severity} does not match the severities "
                                 f"(1 - prod(1 - severity) = {overall:.3f})")  # fmt: skip
        except ValueError as e:  # pydantic's ValidationError included
            payload = {**payload, "error": one_line(e)[:2000]}
            continue
        changes = record_changes(diagnosed, edited)
        if not changes:
            return {"review": ReviewTrace(edited=False)}
        return {"record": edited, "review": ReviewTrace(edited=True, changes=changes, record_proposed=diagnosed)}


def _as_record(answer) -> DiagnosisRecord:
    if isinstance(answer, str):
        return DiagnosisRecord.model_validate_json(answer)
    if isinstance(answer, BaseModel):  # model_validate would return an instance as is, unchecked
        answer = answer.model_dump(mode="json")
    if not isinstance(answer, dict):
        raise ValueError(f"expected a diagnosis record, got {type(answer).__name__}")
    return DiagnosisRecord.model_validate(answer)


def record_changes(before: DiagnosisRecord, after: DiagnosisRecord) -> list[str]:
    """What a person changed in a diagnosis, one line per change, in physical order (empty: nothing changed)."""
    b = {d.kind: d for d in before.degradations}
    a = {d.kind: d for d in after.degradations}
    out = []
    for kind in KINDS:
        if kind not in a and kind not in b:
            continue
        if kind not in a:
            out.append(f"{kind}: removed (was severity {b[kind].severity:.2f})")
            continue
        if kind not in b:
            out.append(f"{kind}: added with severity {a[kind].severity:.2f}")
            continue
        for name in ("severity", "confidence"):
            x, y = getattr(b[kind], name), getattr(a[kind], name)
            if x != y:
                out.append(f"{kind}: {name} {x:.2f} -> {y:.2f}")
        fb, fa = b[kind].factors.model_dump(), a[kind].factors.model_dump()
        out += [f"{kind}: {k} {fb[k]} -> {fa[k]}" for k in fb if fb[k] != fa[k]]
    for name in ("reasoning", "semantics", "thinking", "overall_severity", "provenance"):
        if name != "overall_severity" or not out:  # overall follows the severities; only say so when alone
            if getattr(before, name) != getattr(after, name):
                out.append(f"{name} edited")
    return out


@_timed("plan")
def plan(state: RestoreState, ctx: Context) -> dict:
    """First plan from the diagnosis; on a retry, the plan of the retry the policy calls for (:mod:`agent.policy`)."""
    if not state.attempts:
        diagnosed = plan_from_diagnosis(state.record)
        first = policy.user_plan(diagnosed, ctx.settings, record=state.record)
        if not first.operations:  # nothing to restore: the decision is final before any attempt
            final = policy.conclude(state.record, [], ctx.settings)
            if diagnosed.operations:  # the person's controls (strength 0, only, skip), or the plan policy
                by_hand = policy.user_plan(diagnosed, ctx.settings.model_copy(update={"policy": ""}))
                why = ("the plan policy chose to restore nothing" if by_hand.operations
                       else "your strength/only/skip settings leave nothing to restore")  # fmt: skip
                final = Final("unchanged", None, f"{why}; input returned unchanged")
            return {"plan": first, "plan_source": None, "plan_rule": None, **_final(final)}
        return {"plan": first, "plan_source": None, "plan_rule": None}
    step = policy.decide(state.record, state.attempts, ctx.settings)
    if isinstance(step, Final):  # decide routes here only to retry; the same inputs give the same step
        return _final(step)
    new = policy.retry_plan(step, state.record, state.attempts)
    ran = set(state.attempts[-1].plan.kinds)  # those carry the strength they were last run with, controls included
    new = policy.user_plan(new, ctx.settings, scale=set(new.kinds) - ran)
    update = {"plan": new, "plan_source": step.source, "plan_rule": step.rule}
    if not new.operations:  # every kind left out: nothing left to try, the decision is final
        update |= _final(policy.conclude(state.record, state.attempts, ctx.settings))
    return update


def _final(step: Final) -> dict:
    return {"decision": step.decision, "chosen": step.chosen, "decision_reason": step.reason}


@_timed("restore")
def restore(state: RestoreState, ctx: Context) -> dict:
    """Run the restorer on the plan's source image."""
    n = len(state.attempts)
    first = state.crops_npy or state.input_npy  # a big photo's attempts restore its crops (agent.crops)
    src = np.load(first if state.plan_source is None else Path(state.work_dir) / f"attempt{state.plan_source}.npy")
    refs = _references(state, ctx, state.plan)
    record = record_of(state.record, state.attempts, state.plan_source)
    t0 = time.perf_counter()
    runs: list[RestoreOutput] = []

    def run(image: np.ndarray) -> np.ndarray:
        runs.append(_checked(ctx.restorer, ctx.restorer.restore(image, record, refs, state.plan), image.shape))
        return runs[-1].pixels

    try:
        pixels = crops.each(run, src) if state.crops_npy else run(src)
    except Exception as e:  # a backend failure is an attempt that failed, not a crashed run
        why = one_line(e, with_type=True)
        return {"pending": None, "pending_s": time.perf_counter() - t0, "pending_error": why, "pending_run": None}
    out = runs[0]
    return {
        "pending": _npy(state, f"attempt{n}", pixels),
        "pending_s": time.perf_counter() - t0,
        "pending_error": None,
        # model restorers report prompt, seed, ... so the attempt can be reproduced
        "pending_run": _jsonable(out.run) if out.run else None,
    }


def _references(state: RestoreState, ctx: Context, plan) -> list[ReferenceImage]:
    if not plan.use_references or ctx.library is None:
        return []
    return [ReferenceImage(ctx.library.load_pixels(r), r.score, r.id) for r in state.references]


def _checked(restorer, out, shape: tuple[int, ...]) -> RestoreOutput:
    """What a restorer returned, checked: a :class:`RestoreOutput` of a float RGB image of the input's shape."""
    name = type(restorer).__name__
    if isinstance(out, np.ndarray):  # a restorer written before RestoreOutput: pixels without a run report
        out = RestoreOutput(out)
    elif not isinstance(out, RestoreOutput):
        raise TypeError(f"{name}.restore returned a {type(out).__name__}, not a RestoreOutput")
    pixels = _in_range(out.pixels)
    if pixels is None:
        pixels = as_rgb_float(out.pixels, f"{name}.restore output")
    if pixels.shape != shape:
        raise ValueError(f"{name}.restore output: shape {pixels.shape}, the input's is {shape}")
    return RestoreOutput(pixels, out.run)


def _in_range(pixels) -> np.ndarray | None:
    """``pixels`` itself when already float32 HxWx3 in [0, 1] (a large photo's copy costs 0.3 GB), else None."""
    if not (isinstance(pixels, np.ndarray) and pixels.dtype == np.float32 and pixels.ndim == 3):
        return None
    if pixels.shape[2] != 3 or pixels.size == 0 or not (pixels.min() >= 0.0 and pixels.max() <= 1.0):
        return None  # NaN fails the comparisons too: as_rgb_float says what is wrong
    return pixels


def _jsonable(run: dict) -> dict:
    """``run`` as plain JSON values (tuples to lists, numpy scalars to numbers), so it checkpoints and exports."""
    return json.loads(json.dumps(run, default=lambda v: v.item() if hasattr(v, "item") else str(v)))


@_timed("rescore")
def rescore(state: RestoreState, ctx: Context) -> dict:
    """Diagnose the attempt with the scorer and judge it against its source."""
    t0 = time.perf_counter()
    source_rec = record_of(state.record, state.attempts, state.plan_source)
    if state.pending is None:
        failed = AttemptTrace(
            index=len(state.attempts), source=state.plan_source, rule=state.plan_rule, plan=state.plan,
            record_after=None,
            severity_after=source_rec.severities(), overall_after=source_rec.overall_severity, structure=0.0,
            verdict="failed", reason=f"restorer failed: {state.pending_error}"[:1000], elapsed_s=state.pending_s,
        )  # fmt: skip
        return {"attempts": [*state.attempts, failed]}
    out = np.load(state.pending)
    if state.crops_npy:  # a big photo: its crops are judged, laid out as one mosaic
        inp, out = crops.mosaic(np.load(state.crops_npy)), crops.mosaic(out)
    else:
        inp = np.load(state.input_npy)
    update: dict = {}
    stats = _stats(ctx, state.input_stats, inp)
    if stats is not None and state.input_stats is None:  # once per image; later attempts are judged against it too
        update["input_stats"] = stats
    rec, structure, quality, verdict, reason = _judge(ctx, inp, out, state.plan, stats, source_rec.overall_severity,
                                                      _noise_sigma(source_rec), state.attempts,
                                                      state.plan_source, _noise_sigma(state.record),
                                                      _kinds(state.record))  # fmt: skip
    attempt = AttemptTrace(
        index=len(state.attempts),
        source=state.plan_source,
        rule=state.plan_rule,
        plan=state.plan,
        record_after=rec,
        severity_after=rec.severities(),
        overall_after=rec.overall_severity,
        structure=structure,
        verdict=verdict,
        reason=reason,
        elapsed_s=state.pending_s + time.perf_counter() - t0,
        restorer_run=state.pending_run,
        quality=quality,
    )
    return {**update, "attempts": [*state.attempts, attempt], "pending": None}


def _motion_confirmed(inp: np.ndarray, plan, attempts, source: int | None) -> bool:
    """Whether ``inp``'s spectrum shows the zero lines of the motion kernel that ``plan`` or its lineage deconvolves.

    :func:`reasoner.measure.psf.confirms_motion` on the input's luma (:func:`reasoner.measure.entries.psf_luma`).
    """
    plans = [plan]
    while source is not None:
        plans.append(attempts[source].plan)
        source = attempts[source].source
    op = next((op for p in plans for op in p.operations if op.kind == "motion_blur"), None)
    if op is None or "length" not in op.params or "angle" not in op.params:
        return False
    return psf.confirms_motion(psf_luma(inp), float(op.params["length"]), float(op.params["angle"]))


def _noise_sigma(record) -> float | None:
    """The diagnosed noise sigma (0-255) of ``record``, or None."""
    return next((d.factors.sigma for d in record.degradations if d.kind == "noise"), None)


def _kinds(record: DiagnosisRecord) -> frozenset[str]:
    """The kinds ``record`` found."""
    return frozenset(d.kind for d in record.degradations)


def _jpeg_quality(plan) -> int | None:
    """The JPEG quality ``plan`` undoes, if it undoes JPEG (``assess`` checks a JPEG-only plan against its cells)."""
    quality = next((op.params.get("quality") for op in plan.operations if op.kind == "jpeg"), None)
    return int(quality) if quality else None


def _judge(ctx: Context, inp: np.ndarray, out: np.ndarray, plan, stats: dict | None, source_overall: float,
           noise_sigma: float | None = None, attempts=(), source: int | None = None,
           input_noise: float | None = None, diagnosed: frozenset[str] = frozenset()):  # fmt: skip
    """``out`` restored by ``plan`` judged against ``inp``: the scorer's record, structure, quality, verdict, reason.

    ``stats`` are the input's measure statistics for the quality scorer (None: no quality estimate);
    ``noise_sigma`` the source's diagnosed noise, against which a noise-only plan's removed layer is measured;
    ``input_noise`` the input's, which the structure score discounts when the lineage removed noise
    (:func:`restorer.metrics.structure_score`).
    ``source``: the attempt (of ``attempts``) ``plan`` ran on top of, None for ``inp`` itself. The judgement is of
    every kind restored from ``inp`` to ``out``, each at the strength it ran at (a brightening on top of a denoising
    is still one at its diagnosed dose); only a plan run on ``inp`` itself has its JPEG-only change checked against
    the file's quantisation cells. ``diagnosed``: the kinds the input's diagnosis found (whether a brightening is of
    a tone range shifted down is read only beside noise and JPEG). The output is read for what is left of every
    kind restored from a lower presence (:data:`reasoner.measure.backend.RESIDUE_SHARE`).
    """
    strengths = {**policy.lineage_strengths(attempts, source), **plan.strengths}
    kinds = list(strengths)
    jpeg_quality = _jpeg_quality(plan) if source is None else None
    # out_stats (None unless the scorer measures) save the quality scorer measuring the output again
    rec, out_stats = read_output(ctx.scorer, from_array(out), kinds)
    structure = structure_score(inp, out, noise=(input_noise or 0.0) if "noise" in strengths else 0.0)
    quality, why_not = None, None
    if stats is not None:
        from reasoner.quality import assess, describe

        q = assess(inp, out, kinds, source_measured=stats, restored_measured=out_stats, noise_sigma=noise_sigma,
                   jpeg_quality=jpeg_quality)  # fmt: skip
        quality = QualityTrace(gain_db=q.gain_db, uncertainty_db=q.uncertainty_db, spread_db=q.spread_db,
                               spread_log=q.spread_log, removed_noise=q.removed_noise,
                               compression_cells=q.compression_cells,
                               artefacts=q.artefacts, summary=describe(q.artefacts),
                               unchecked=q.unchecked)  # fmt: skip
        why_not = q.implausible
    if quality is not None and quality.gain_db is not None:
        shifted = "low_light" in kinds and tone_range_shifted(inp, diagnosed)
        combed = "low_light" in kinds and read_tone_comb(inp) is not None
        confirmed = "motion_blur" in kinds and _motion_confirmed(inp, plan, attempts, source)
        verdict, reason = policy.judge_quality(structure, quality, ctx.settings, why_not, kinds, strengths,
                                               policy.disk_plan(plan), stats.get("lum_mean"), shifted,
                                               combed, confirmed)  # fmt: skip
    else:
        verdict, reason = policy.judge(structure, source_overall, rec.overall_severity, ctx.settings, kinds)
    return rec, structure, quality, verdict, reason


@_timed("decide")
def decide(state: RestoreState, ctx: Context) -> dict:
    """Accept, retry (bounded), or roll back to the best attempt, as :func:`agent.policy.decide` says."""
    step = policy.decide(state.record, state.attempts, ctx.settings)
    return _final(step) if isinstance(step, Final) else {"decision": None}


def route_plan(state: RestoreState) -> Literal["restore", "full_size", "export"]:
    """After plan: restore, or finish at once when there is nothing (more) to do."""
    return "restore" if state.decision is None else _finish(state)


def route(state: RestoreState) -> Literal["plan", "full_size", "export"]:
    """After decide: retry through plan, or finish."""
    return "plan" if state.decision is None else _finish(state)


def _finish(state: RestoreState) -> Literal["full_size", "export"]:
    # A big photo's chosen attempt exists only on its crops: its plan runs at full size first.
    return "full_size" if state.crops_npy and state.chosen is not None else "export"


@_timed("full_size")
def full_size(state: RestoreState, ctx: Context) -> dict:
    """A big photo: the chosen attempt's plan (and its sources') run on the whole photo, judged against the input.

    The result is returned only when that judgement says better too; otherwise the input is returned unchanged,
    the reason saying that the crops' verdict did not hold.
    """
    t0 = time.perf_counter()
    s, chosen = ctx.settings, state.chosen
    base = {"crops": state.crops, "side": s.crop_side, "margin": crops.MARGIN, "attempt": chosen}
    inp = np.load(state.input_npy)
    x = inp
    try:
        for i in crops.lineage([a.source for a in state.attempts], chosen):
            a = state.attempts[i]
            record = record_of(state.record, state.attempts, a.source)
            x = _checked(ctx.restorer, ctx.restorer.restore(x, record, _references(state, ctx, a.plan), a.plan),
                         inp.shape).pixels  # fmt: skip
    except Exception as e:  # noqa: BLE001 - the restorer failing at full size returns the input, it is not a crash
        reason = f"restorer failed on the full photo: {one_line(e, with_type=True)}"[:1000]
        trace = FullSizeTrace(**base, verdict="failed", reason=reason, elapsed_s=time.perf_counter() - t0)
        return {"full_size": trace, **_undo(reason)}
    stats = _stats(ctx, state.full_stats, inp)
    source = record_of(state.record, state.attempts, state.attempts[chosen].source)
    rec, structure, quality, verdict, reason = _judge(ctx, inp, x, state.attempts[chosen].plan, stats,
                                                      state.record.overall_severity, _noise_sigma(source),
                                                      state.attempts, state.attempts[chosen].source,
                                                      _noise_sigma(state.record), _kinds(state.record))  # fmt: skip
    trace = FullSizeTrace(**base, verdict=verdict, reason=reason, structure=structure, quality=quality,
                          severity_after=rec.severities(), overall_after=rec.overall_severity,
                          elapsed_s=time.perf_counter() - t0)  # fmt: skip
    if not holds(state.attempts[chosen], verdict, quality, s):
        likely = "likely " if state.attempts[chosen].verdict == "uncertain" else ""
        return {"full_size": trace, **_undo(f"{likely}better on the {len(state.crops)} crops it was judged on, but "
                                             f"not on the full photo ({verdict}: {reason})")}  # fmt: skip
    n = len(state.crops)
    confirmed = f"{state.decision_reason}; judged on {n} crops and confirmed on the full photo ({reason})"
    return {"full_size": trace, "final_npy": _npy(state, "final", x), "decision_reason": confirmed[:1000]}


def _undo(why: str) -> dict:
    return {"decision": "unchanged", "chosen": None, "decision_reason": f"{why}; input returned unchanged"[:1000]}


@_timed("export")
def export(state: RestoreState, ctx: Context) -> dict:
    """Assemble the trace of the final decision; the caller adds where it wrote the image (:func:`finish_trace`)."""
    return {"trace": build_trace(state, ctx)}


def build_graph(checkpointer=None):
    """The compiled graph. Pass a LangGraph checkpointer to make runs resumable."""
    g = StateGraph(RestoreState, context_schema=Context)
    for name, fn in (("diagnose", diagnose), ("retrieve", retrieve), ("review", review), ("plan", plan),
                     ("restore", restore), ("rescore", rescore), ("decide", decide), ("full_size", full_size),
                     ("export", export)):  # fmt: skip
        g.add_node(name, fn)
    g.add_edge(START, "diagnose")
    g.add_edge("diagnose", "retrieve")
    g.add_conditional_edges("retrieve", route_retrieved, {"review": "review", "plan": "plan"})
    g.add_edge("review", "plan")
    g.add_conditional_edges("plan", route_plan, {"restore": "restore", "full_size": "full_size", "export": "export"})
    g.add_edge("restore", "rescore")
    g.add_edge("rescore", "decide")
    g.add_conditional_edges("decide", route, {"plan": "plan", "full_size": "full_size", "export": "export"})
    g.add_edge("full_size", "export")
    g.add_edge("export", END)
    return g.compile(checkpointer=checkpointer)


def _stats(ctx: Context, known: dict | None, inp: np.ndarray) -> dict | None:
    """The input's measure statistics for the artefact-aware scorer: ``known`` ones, else measured now.

    None when attempts are not judged by that scorer (switched off, or no model installed).
    """
    if not (ctx.settings.artefact_scorer and _quality_model() is not None):
        return None
    if known is not None:
        return known
    from reasoner.quality import measured

    return measured(inp)


def _quality_model():
    from reasoner.quality import load_model

    return load_model()


def _scored(state: RestoreState) -> bool:
    return any(a.quality is not None and a.quality.gain_db is not None for a in state.attempts)


def final_pixels(state: RestoreState) -> np.ndarray:
    """What the run returns: the chosen attempt (a big photo's: its full-size result), or the input unchanged."""
    return np.load(final_path(state))


def final_path(state: RestoreState) -> Path:
    """The ``.npy`` file of what the run returns (see :func:`final_pixels`)."""
    if state.chosen is None:
        return Path(state.input_npy)
    return Path(state.final_npy) if state.crops_npy else Path(state.work_dir) / f"attempt{state.chosen}.npy"


def build_trace(state: RestoreState, ctx: Context) -> Trace:
    """The :class:`Trace` of a decided state (timings so far; no output path yet)."""
    from reasoner.version import rnr_version

    chosen = state.attempts[state.chosen] if state.chosen is not None else None
    after = chosen.severity_after if chosen else state.record.severities()
    overall = chosen.overall_after if chosen else state.record.overall_severity
    quality = chosen.quality if chosen else (QualityTrace(gain_db=0.0, spread_db=0.0) if _scored(state) else None)
    full = state.full_size
    if chosen is not None and full is not None:  # what is returned is the full-size result
        after, overall, quality = full.severity_after, full.overall_after, full.quality
    elif full is None and state.crops:  # judged on crops, nothing chosen: the trace still says where they were
        full = FullSizeTrace(crops=state.crops, side=ctx.settings.crop_side, margin=crops.MARGIN)
    return Trace(
        input=state.input_info,
        record_before=state.record,
        references=state.references,
        attempts=state.attempts,
        decision=state.decision,
        chosen_attempt=state.chosen,
        decision_reason=state.decision_reason,
        severity_before=state.record.severities(),
        severity_after=after,
        overall_before=state.record.overall_severity,
        overall_after=overall,
        timings={k: round(v, 6) for k, v in state.timings.items()},
        backends=ctx.backends,
        settings=ctx.settings.model_dump(),
        versions=_versions(rnr_version()),
        created_at=datetime.now(timezone.utc),
        review=state.review,
        quality=quality,
        full_size=full,
    )


def finish_trace(trace: Trace, output_path: str | None, io_s: float) -> Trace:
    """The trace as exported: where the image went, output-writing time as ``io``, and the ``total``."""
    timings = {**trace.timings, "io": round(io_s, 6)}
    timings["total"] = round(sum(timings.values()), 6)
    return trace.model_copy(update={"output_path": output_path, "timings": timings})


def _versions(rnr: str) -> dict[str, str]:
    import langgraph.version
    import pydantic

    return {"reason-restore": rnr, "numpy": np.__version__, "opencv": cv2.__version__,
            "pydantic": pydantic.VERSION, "langgraph": langgraph.version.__version__}  # fmt: skip
