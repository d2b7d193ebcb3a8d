"""Big photos judged on crops (agent.crops): attempts restore crops, the chosen plan runs once at full size and is
judged again there, and the input comes back whenever that full-size result does not hold.

Thresholds are lowered (``crops_above=1``, 96 px crops) so a 480 x 640 photo takes the big-photo path.
"""

import json
from pathlib import Path

import cv2
import jsonschema
import numpy as np
import pytest

from agent import crops
from agent.backends import make_context
from agent.checkpoint import sqlite_checkpointer
from agent.graph import build_graph, final_pixels
from agent.run import _config, run_graph
from agent.state import Context, RestoreState, Settings
from agent.trace import TRACE_SCHEMA_PATH, Trace
from agent.worker import complete
from reasoner.imageio import save_image
from reasoner.measure import MeasureReasoner
from restorer.classical import ClassicalRestorer
from rl import degradations as D
from rl.photos import load_photo

SHAPE = (480, 640)
SIDE = 96
PADDED = SIDE + 2 * crops.MARGIN
#: Judged by the scorer's severities (a strong noise drop reads "better" there), whatever the quality model's fit.
BIG = Settings(crops_above=1, crop_side=SIDE, artefact_scorer=False, max_attempts=2)


class Recording(ClassicalRestorer):
    """The classical restorer, noting the shape of every image it is given; ``at_full`` replaces its full-size run."""

    def __init__(self, at_full=None):
        super().__init__()
        self.shapes: list[tuple[int, ...]] = []
        self.at_full = at_full

    def restore(self, image, record, references, plan):
        self.shapes.append(image.shape)
        out = super().restore(image, record, references, plan)
        if self.at_full is not None and image.shape[:2] == SHAPE:
            return self.at_full(image, out)
        return out


class Whole(Recording):
    """A restorer that does not say it is local (as a model restorer): never judged on crops."""

    local = False


@pytest.fixture(scope="module")
def noisy(tmp_path_factory) -> Path:
    clean = cv2.resize(load_photo("chelsea"), SHAPE[::-1], interpolation=cv2.INTER_AREA)
    img = np.clip(D.apply(clean, [D.NoiseParams(sigma=25.0, seed=3)]), 0, 1).astype(np.float32)
    return save_image(tmp_path_factory.mktemp("in") / "noisy.png", img)


def _ctx(restorer, settings=BIG) -> Context:
    ctx = make_context(settings=settings)
    return Context(reasoner=ctx.reasoner, scorer=ctx.scorer, restorer=restorer, settings=settings,
                   backends=ctx.backends)  # fmt: skip


def _run(path, ctx, tmp_path, **kw) -> RestoreState:
    return run_graph(path, ctx, tmp_path / "work", **kw)


def test_boxes_lie_inside_the_photo_and_the_mosaic_is_their_cores():
    for shape in [(4000, 6000), (SHAPE[0], SHAPE[1]), (2 * PADDED, 2 * PADDED), (5000, 2 * PADDED)]:
        corners = crops.boxes(shape, SIDE)
        assert len(corners) == crops.COUNT
        for y, x in corners:
            assert 0 <= y <= shape[0] - PADDED and 0 <= x <= shape[1] - PADDED
    img = np.random.default_rng(0).random((*SHAPE, 3)).astype(np.float32)
    corners = crops.boxes(SHAPE, SIDE)
    stack = crops.cut(img, corners, SIDE)
    assert stack.shape == (4, PADDED, PADDED, 3)
    m = crops.mosaic(stack)
    assert m.shape == (2 * SIDE, 2 * SIDE, 3)
    y, x = corners[3]
    m_ = crops.MARGIN
    np.testing.assert_array_equal(m[SIDE:, SIDE:], img[y + m_ : y + m_ + SIDE, x + m_ : x + m_ + SIDE])
    assert not crops.applies(SHAPE, 0, SIDE)  # 0: never
    assert not crops.applies((2 * PADDED - 1, 4000), 1, SIDE)  # no room for the crops
    assert crops.applies(SHAPE, SHAPE[0] * SHAPE[1] - 1, SIDE) and not crops.applies(SHAPE, SHAPE[0] * SHAPE[1], SIDE)
    with pytest.raises(ValueError, match="loop"):
        crops.lineage([1, 0], 0)


def test_attempts_run_on_crops_and_only_the_chosen_plan_at_full_size(noisy, tmp_path):
    restorer = Recording()
    state = _run(noisy, _ctx(restorer), tmp_path)
    trace = state.trace
    assert state.crops is not None and trace.full_size is not None
    attempts = len(trace.attempts)
    assert restorer.shapes[: 4 * attempts] == [(PADDED, PADDED, 3)] * (4 * attempts)
    assert trace.decision == "accepted", trace.decision_reason  # sigma 25 noise: its severity drops by far
    assert restorer.shapes[4 * attempts :] == [(*SHAPE, 3)]  # one full-size run, the chosen plan's
    assert trace.full_size.verdict == "better" and trace.full_size.attempt == trace.chosen_attempt
    assert "confirmed on the full photo" in trace.decision_reason
    # What is returned is the chosen plan run on the whole photo, exactly.
    inp = np.load(state.input_npy)
    chosen = trace.attempts[trace.chosen_attempt]
    want = ClassicalRestorer().restore(inp, trace.record_before, [], chosen.plan).pixels
    np.testing.assert_array_equal(final_pixels(state), want)
    assert trace.overall_after == trace.full_size.overall_after  # the trace describes the full-size result
    assert set(trace.timings) >= {"restore", "rescore", "full_size"}
    jsonschema.validate(json.loads(trace.model_dump_json()), json.loads(TRACE_SCHEMA_PATH.read_text()))
    assert Trace.model_validate_json(trace.model_dump_json()) == trace


def test_the_crops_judge_like_the_whole_photo(noisy, tmp_path):
    # Same diagnosis, same first plan; the crops' verdict agrees with the whole photo's on this clear case.
    big = _run(noisy, _ctx(Recording()), tmp_path / "a").trace
    whole = _run(noisy, _ctx(Recording(), BIG.model_copy(update={"crops_above": 0})), tmp_path / "b").trace
    assert whole.full_size is None
    assert big.record_before.degradations == whole.record_before.degradations
    assert big.attempts[0].plan == whole.attempts[0].plan
    assert big.attempts[0].verdict == whole.attempts[0].verdict == "better"


def test_a_plan_that_does_not_hold_at_full_size_returns_the_input(noisy, tmp_path):
    restorer = Recording(at_full=lambda image, out: type(out)(1.0 - image))  # wrecks only the full-size run
    state = _run(noisy, _ctx(restorer), tmp_path)
    trace = state.trace
    assert trace.decision == "unchanged" and trace.chosen_attempt is None
    assert trace.full_size.verdict == "drift" and trace.full_size.attempt is not None
    assert "not on the full photo" in trace.decision_reason
    np.testing.assert_array_equal(final_pixels(state), np.load(state.input_npy))
    assert trace.overall_after == trace.overall_before


def test_a_restorer_failing_at_full_size_returns_the_input(noisy, tmp_path):
    def fail(image, out):
        raise MemoryError("no room for the whole photo")

    state = _run(noisy, _ctx(Recording(at_full=fail)), tmp_path)
    assert state.trace.decision == "unchanged" and state.trace.full_size.verdict == "failed"
    assert "MemoryError: no room for the whole photo" in state.trace.decision_reason
    np.testing.assert_array_equal(final_pixels(state), np.load(state.input_npy))


def test_restorers_that_are_not_local_and_small_photos_are_judged_whole(noisy, tmp_path):
    restorer = Whole()
    state = _run(noisy, _ctx(restorer), tmp_path / "a")
    assert state.crops is None and state.trace.full_size is None
    assert set(restorer.shapes) == {(*SHAPE, 3)}
    state = _run(noisy, _ctx(Recording(), Settings(artefact_scorer=False)), tmp_path / "b")  # 0.3 MP: whole
    assert state.crops is None and state.trace.full_size is None


class Crash(BaseException):
    """Stands for the process dying in the middle of the full-size run."""


def test_a_crash_in_the_full_size_run_resumes_to_the_same_output(noisy, tmp_path):
    clean = _run(noisy, _ctx(Recording()), tmp_path / "clean")
    crashes = iter([True])

    def die_once(image, out):
        if next(crashes, False):
            raise Crash
        return out

    ctx = _ctx(Recording(at_full=die_once))
    saver = sqlite_checkpointer(tmp_path / "ck.sqlite")
    with pytest.raises(Crash):
        _run(noisy, ctx, tmp_path, checkpointer=saver, thread="t")
    stopped = RestoreState.model_validate(build_graph(saver).get_state(_config("t")).values)
    assert stopped.decision is not None and stopped.final_npy is None and not complete(stopped)
    resumed = _run(noisy, ctx, tmp_path, checkpointer=saver, thread="t")
    assert complete(resumed)
    np.testing.assert_array_equal(final_pixels(resumed), final_pixels(clean))
    assert resumed.trace.decision == clean.trace.decision


def test_a_stop_after_the_full_size_checkpoint_resumes_without_running_it_again(noisy, tmp_path):
    restorer = Recording()
    ctx = _ctx(restorer)
    saver = sqlite_checkpointer(tmp_path / "ck.sqlite")
    graph = build_graph(saver)
    start = RestoreState(input_path=str(noisy), work_dir=str(tmp_path / "work"))
    list(graph.stream(start, _config("t"), context=ctx, interrupt_before=["export"], durability="sync"))
    runs = len(restorer.shapes)
    assert restorer.shapes[-1] == (*SHAPE, 3)
    state = RestoreState.model_validate(graph.get_state(_config("t")).values)
    Path(state.final_npy).unlink()  # its array gone: the thread is not complete, the resume must say so
    assert not complete(state)
    resumed = _run(noisy, ctx, tmp_path, checkpointer=saver, thread="t")
    assert len(restorer.shapes) == runs and resumed.trace is not None
    assert not complete(resumed)  # the batch runner then restarts the image (tests/safety: "arrays gone")


def test_measure_reads_the_mosaic_like_a_photo(noisy):
    # The seams between crops are not read as a degradation: the mosaic's diagnosis names the photo's kinds.
    from reasoner.imageio import load_image

    img = load_image(noisy).pixels
    whole = MeasureReasoner().diagnose(img)
    mosaic = MeasureReasoner().diagnose(crops.mosaic(crops.cut(img, crops.boxes(img.shape, 160), 160)))
    assert [d.kind for d in mosaic.degradations] == [d.kind for d in whole.degradations]


def test_a_trace_says_the_photo_was_judged_on_crops_when_nothing_was_chosen(noisy, tmp_path):
    state = _run(noisy, _ctx(Recording(), BIG.model_copy(update={"strength": 0.0})), tmp_path)  # nothing to run
    assert state.trace.decision == "unchanged"
    full = state.trace.full_size
    assert full is not None and full.crops == state.crops and full.attempt is None and full.verdict is None
