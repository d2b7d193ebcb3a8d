"""Running the graph: one image through the graph (batch or interactive), thread ids, and the Python API.

``make_context`` and ``open_library`` live in :mod:`agent.backends` and are re-exported here for the Python API.
"""

from __future__ import annotations

import hashlib
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from agent.backends import make_context, open_library
from agent.graph import ACCEPT, build_graph, final_pixels, finish_trace
from agent.state import Context, RestoreState, Settings
from agent.trace import Trace

__all__ = ["INTERRUPT", "NO_ANSWER", "make_context", "open_library", "restore_image", "run_graph", "stream_run",
           "thread_id", "thread_state"]  # fmt: skip


def thread_id(path: str | Path, ctx: Context, *, sha256: str | None = None) -> str:
    """Checkpoint thread of an image: its bytes (``sha256`` when already known) and the backends/settings."""
    from reasoner.imageio import file_sha256

    h = hashlib.sha256(bytes.fromhex(sha256 or file_sha256(path)))
    h.update(repr(sorted(ctx.backends.items())).encode())
    h.update(ctx.settings.model_dump_json().encode())
    return h.hexdigest()[:32]


def _config(thread: str) -> dict:
    return {"configurable": {"thread_id": thread}, "recursion_limit": 64}


#: ``resume`` default of :func:`stream_run`: continue an interrupted thread only when given an answer.
NO_ANSWER = object()
INTERRUPT = "__interrupt__"


def run_graph(
    input_path: str | Path,
    ctx: Context,
    work_dir: str | Path,
    *,
    checkpointer=None,
    thread: str | None = None,
    on_update: Callable[[str, dict], None] | None = None,
    durability: str = "async",
) -> RestoreState:
    """Drive one image through the graph, streaming node updates to ``on_update``; resumes a checkpointed thread.

    Without a ``checkpointer`` an in-memory one is used (the final state is read back from it). Checkpoints are
    written in the background by default (``durability="async"``): a killed run loses at most the step in flight.
    """
    if checkpointer is None:
        from agent.checkpoint import memory_checkpointer

        checkpointer = memory_checkpointer()
    graph = build_graph(checkpointer)
    thread = thread or "default"
    for node, update in _stream(graph, input_path, ctx, work_dir, thread, NO_ANSWER, durability):
        if node == INTERRUPT:
            raise RuntimeError(f"thread {thread!r} stopped for a review; drive review runs with stream_run")
        if on_update is not None:
            on_update(node, update)
    return RestoreState.model_validate(graph.get_state(_config(thread)).values)


def stream_run(
    input_path: str | Path,
    ctx: Context,
    work_dir: str | Path,
    *,
    checkpointer,
    thread: str,
    resume=NO_ANSWER,
    durability: str = "sync",
) -> Iterator[tuple[str, dict]]:
    """Drive a thread until it finishes or stops for review, yielding ``(node, update)`` as each node completes.

    The interactive sibling of :func:`run_graph` (``rnr ui``): a generator, so a page can show each node as it
    lands. With ``ctx.review`` the run stops after retrieval and the last item is ``(INTERRUPT, payload)`` with the
    proposed record under ``"record"`` (and ``"error"`` when the previous answer was rejected). Call again with
    ``resume=`` the person's answer (``None`` to accept, or the edited record) to continue from the checkpoint;
    a thread still waiting for an answer and called without one yields its pending payload again and stops.
    Checkpoints are written synchronously by default: the person may answer from another request at any time.
    """
    yield from _stream(build_graph(checkpointer), input_path, ctx, work_dir, thread, resume, durability)


def _stream(graph, input_path, ctx: Context, work_dir, thread: str, resume, durability: str):
    """The one driver of a thread (batch and interactive): start, continue after a crash, or answer a review."""
    from langgraph.types import Command

    config = _config(thread)
    snap = graph.get_state(config)
    if resume is not NO_ANSWER:
        if not pending_review(snap):
            raise ValueError(f"thread {thread!r} is not waiting for a review; nothing to resume")
        start = Command(resume=ACCEPT if resume is None else resume)
    elif snap.next or (snap.values and snap.values.get("trace") is None):
        # Interrupted: by a review question, or by a crash. After a crash between a node's saved writes and the next
        # checkpoint, ``next`` reads empty although the run is not done (the writes' branch is pending): only the
        # export node's trace says a thread is finished.
        payload = pending_review(snap)
        if payload is not None:
            yield INTERRUPT, payload
            return
        start = None  # continue where it stopped: LangGraph applies the saved writes and runs what follows
    elif snap.values:
        return  # finished earlier
    else:
        start = RestoreState(input_path=str(input_path), work_dir=str(work_dir))
    question = None
    for chunk in graph.stream(start, config, context=ctx, stream_mode="updates", durability=durability):
        for node, update in chunk.items():
            if node == INTERRUPT:
                question = update[0].value
            else:
                yield node, update or {}
    if question is not None:  # only once the stream has ended: the interrupt is then checkpointed and answerable
        yield INTERRUPT, question


def pending_review(snap) -> dict | None:
    """The payload of the review interrupt a thread's snapshot is waiting on, if any."""
    for task in snap.tasks:
        for intr in task.interrupts:
            return intr.value
    return None


def thread_state(checkpointer, thread: str) -> RestoreState | None:
    """The state a thread's latest checkpoint holds (None for an unknown thread)."""
    values = build_graph(checkpointer).get_state(_config(thread)).values
    return RestoreState.model_validate(values) if values else None


def restore_image(
    image: str | Path | np.ndarray,
    *,
    reasoner: str = "measure",
    scorer: str = "measure",
    restorer: str = "classical",
    index: str | Path | None = None,
    settings: Settings | None = None,
    context: Context | None = None,
    out: str | Path | None = None,
    output_format: str | None = None,
    quality: int | None = None,
    reasoner_model: str | None = None,
    scorer_model: str | None = None,
    restorer_model: str | None = None,
    restorer_options: dict | None = None,
) -> tuple[np.ndarray, Trace]:
    """Restore one image (a path or a ``float32 HxWx3 RGB in [0, 1]`` array); returns the pixels and the trace.

    Backends as :func:`agent.backends.make_context` names them: a model backend needs its model id or folder
    (``reasoner="qwen3vl", reasoner_model="Qwen/Qwen3-VL-2B-Instruct"``); none is ever picked for you.

    ``settings`` carries the controls: ``Settings(strength=0.5)``, ``kind_strength={"noise": 0.3}``,
    ``only=["noise"]``, ``skip=["jpeg"]``. With ``out``, the result is also written there like the input (its
    container unless ``out``'s suffix or ``output_format`` says otherwise, its bit depth, EXIF, ICC and XMP; an
    unchanged image in its own container is the input's bytes), atomically, and the trace records it.

    Example: ``restore_image("photo.jpg", settings=Settings(strength=0.5, skip=["jpeg"]), out="photo-restored.jpg")``.

    Raises:
        ValueError: An array that is not a finite float ``HxWx3`` RGB image, or a bad ``output_format`` / ``quality``
            (one line).
        ImageLoadError: A path that is not an image rnr can read (one line naming it).

    """
    from agent.checkpoint import memory_checkpointer
    from reasoner.common import as_rgb_float
    from reasoner.imageio import save_image

    if isinstance(image, np.ndarray):
        image = as_rgb_float(image, "image")  # before any backend loads: a bad array fails at once
    container = _out_container(out, output_format, quality)
    ctx = context or make_context(reasoner, scorer, restorer, index, settings, reasoner_model=reasoner_model,
                                  scorer_model=scorer_model, restorer_model=restorer_model,
                                  restorer_options=restorer_options)  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="rnr-") as tmp:
        if isinstance(image, np.ndarray):
            image = save_image(Path(tmp) / "input.png", image)
        state = run_graph(image, ctx, Path(tmp) / "work", checkpointer=memory_checkpointer(), thread="api")
        t0 = time.perf_counter()
        pixels = final_pixels(state)
        written, path = None, None
        if out is not None:
            written, path = write_like_input(image, Path(out), pixels, state.chosen is None, container, quality)
        trace = finish_trace(state.trace, path, time.perf_counter() - t0)
        return pixels, trace.model_copy(update={"output_file": written})


def _out_container(out, output_format: str | None, quality: int | None) -> str | None:
    """The container ``out`` is written in (``output_format``, else ``out``'s suffix, else the input's: None)."""
    from reasoner.imagefile import check_quality, normalise_format

    check_quality(quality)
    if output_format is not None:
        return normalise_format(output_format)
    if out is not None and Path(out).suffix:
        return normalise_format(Path(out).suffix)
    return None


def write_like_input(image, out: Path, pixels, unchanged: bool, container: str | None, quality: int | None):
    """Write ``pixels`` to ``out`` like the input file ``image`` (see :func:`restore_image`).

    Returns the trace's record of the file, and its path (``out`` with the container's suffix when it had none).
    """
    from agent.worker import output_file_trace
    from reasoner.imagefile import SourceFile, copy_input, output_suffix, read_source, write_like

    source, data = read_source(image) if isinstance(image, (str, Path)) else (SourceFile("png", ".png"), b"")
    container = container or source.container or "png"
    if not out.suffix:
        out = out.with_name(out.name + output_suffix(source, container))
    if unchanged and data and container == source.container and quality is None:
        return output_file_trace(copy_input(out, data, source), source), str(out)
    return output_file_trace(write_like(out, pixels, source, container=container, quality=quality), source), str(out)
