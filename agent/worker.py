"""One batch worker: backends loaded once, then one input at a time into the output folder.

Shared by the local engine (in-process or a process pool) and the Ray engine, so both write exactly the same files.
Per image, in this order: run (or resume) the graph on its checkpoint, check the final state is complete (a crash
between a node's saved writes and the next checkpoint can leave one that only looks finished; then the image starts
again), write a preview of the input for the report, the restored image and the trace (each atomically), and only
then delete the work files. The manifest row is appended by the driver, after all that.

The restored image is written like its input (:mod:`reasoner.imagefile`): same container and bit depth, EXIF, ICC
and XMP carried over, unless :class:`OutputOptions` say otherwise; an image returned unchanged in its own container
is the input's bytes. Its name is the item's name with the container's suffix (``photo.jpeg`` -> ``photo.jpeg``).
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from agent.backends import Backends
from agent.manifest import Item
from agent.state import Context, RestoreState, Settings
from agent.trace import RESTORED, OutputFileTrace, Trace
from reasoner.common import one_line
from reasoner.files import DiskFullError, is_disk_full

#: Inputs' previews for the report (the report reads nothing outside the run folder).
PREVIEWS = ".rnr/previews"
PREVIEW_SIDE = 1024
#: A thread's SQLite checkpoint, in its work folder.
CHECKPOINT = "checkpoint.sqlite"
#: Key of a row's warnings: printed by the driver, never written to the manifest.
WARNINGS = "warnings"


@dataclass(frozen=True)
class OutputOptions:
    """How restored images are written.

    ``format``: png, jpeg, webp or tiff (None: each input's own container); ``quality``: JPEG/WebP quality 1-100
    (None: 95, or lossless WebP for a lossless input).
    """

    format: str | None = None
    quality: int | None = None

    def __post_init__(self) -> None:
        """Check the choice at once (one-line ValueError), not on the first image."""
        from reasoner.imagefile import check_quality, normalise_format

        if self.format is not None:
            object.__setattr__(self, "format", normalise_format(self.format))
        check_quality(self.quality)
        if self.quality is not None and self.format in ("png", "tiff"):
            raise ValueError(f"--quality applies to jpeg and webp; {self.format} is lossless")

    def as_row(self) -> dict:
        """The options as a manifest row records them (a resume with other options writes the image again)."""
        return {"format": self.format, "quality": self.quality}

    def describe(self) -> str:
        """The options in a few words, e.g. ``"webp, quality 80"`` or ``"each input's own container"``."""
        said = self.format or "each input's own container"
        return said + (f", quality {self.quality}" if self.quality is not None else "")

    def suffix_guess(self, path: Path) -> str:
        """The output suffix an input is expected to get, before it is read (for rows of inputs that fail)."""
        from reasoner.imagefile import SourceFile, normalise_format, output_suffix

        try:
            container = self.format or normalise_format(path.suffix)
        except ValueError:
            container = "png"
        return output_suffix(SourceFile(container, path.suffix.lower()), container)


class Worker:
    """Backends for a batch, and :meth:`process` to restore one input with them."""

    def __init__(
        self, ctx: Context, *, protect: frozenset[str] = frozenset(), output: OutputOptions | None = None
    ) -> None:
        """``protect``: absolute paths the run must never write (its inputs); ``output``: how images are written."""
        self.ctx = ctx
        self.protect = protect
        self.output = output or OutputOptions()

    @classmethod
    def load(
        cls, backends: Backends, settings: Settings, max_pixels: int | None = None, output: OutputOptions | None = None
    ) -> Worker:
        """Load ``backends`` (once: the worker keeps them for every image it is given)."""
        return cls(backends.load(settings, max_pixels=max_pixels), output=output)

    def process(
        self,
        item: Item,
        out: Path,
        *,
        on_update: Callable[[str, dict], None] | None = None,
        checkpoint: str | None = None,
    ) -> dict:
        """Restore one input into ``out``; returns its manifest row (status "failed" with the error on failure).

        ``checkpoint`` is a ``postgres://`` URL for shared checkpoints; ``None`` keeps a SQLite file in the work dir.
        A row may carry :data:`WARNINGS` (one line each, e.g. a checkpoint that could not be resumed), which the
        driver prints and leaves out of the manifest.

        Raises:
            DiskFullError: The disk filled up; this image's work files are removed, the batch should stop.

        """
        from agent.outcome import outcome
        from reasoner.imageio import ImageLoadError, file_sha256

        t0 = time.perf_counter()
        row = {"input": str(item.path), "input_abs": os.path.abspath(item.path), "name": item.name,
               "output": f"{item.name}{self.output.suffix_guess(Path(item.path))}",
               "trace": f"{item.name}.json", "output_options": self.output.as_row()}  # fmt: skip
        thread: ImageThread | None = None
        try:
            row["sha256"] = item.sha256 or file_sha256(item.path)  # resume keys inputs by path and content
            thread = ImageThread(self.ctx, item, out, row["sha256"], checkpoint)
            state = self._run(thread, on_update, row)
            trace = self._export(item, out, state, row)
            thread.forget()
            said = outcome(trace)
            row.update(status="ok" if state.decision in RESTORED else "unchanged", decision=state.decision,
                       overall_before=trace.overall_before, overall_after=trace.overall_after,
                       gain_db=said.gain_db, uncertainty_db=said.uncertainty_db, at_least_db=said.at_least_db,
                       unsure=said.unsure, artefacts=said.artefacts, appeared=said.appeared,
                       unchecked=said.unchecked, summary=said.line, timings=trace.timings)  # fmt: skip
        except Exception as e:  # noqa: BLE001 - one bad input must not stop the batch; the error is recorded
            if _disk_full(e):
                if thread is not None:
                    shutil.rmtree(thread.work, ignore_errors=True)  # its temporary files only hold the disk full
                where = e.path if isinstance(e, DiskFullError) else out
                raise DiskFullError(where, _more_needed(item.path, out, self.ctx.settings.max_attempts, e)) from None
            if isinstance(e, ImageLoadError):
                error = str(e)
            elif isinstance(e, OSError | ValueError):
                error = f"{item.path}: {one_line(e)}"
            else:
                error = f"{item.path}: {one_line(e, with_type=True)}"
            row.update(status="failed", error=error)
        row["seconds"] = round(time.perf_counter() - t0, 4)
        return row

    def _run(self, thread: ImageThread, on_update, row: dict) -> RestoreState:
        """Run or resume the image's thread; a resume that fails starts the image again, with a warning."""
        from reasoner.imageio import ImageLoadError

        resuming = thread.exists()
        try:
            return thread.run(on_update)
        except ImageLoadError:
            raise
        except Exception as e:  # noqa: BLE001 - re-raised below unless a fresh start helps
            if not resuming or _disk_full(e):
                raise
            # A run killed mid-step (or mid-clean-up) can leave a checkpoint that no longer matches its work
            # files; the graph is deterministic, so starting again gives what the uninterrupted run would have.
            row.setdefault(WARNINGS, []).append(
                f"{thread.where}: could not resume {thread.item.path} ({one_line(e, with_type=True)[:300]}); "
                "restarting it from the beginning"
            )
            thread.forget()
            return thread.run(on_update)

    def _export(self, item: Item, out: Path, state: RestoreState, row: dict) -> Trace:
        """Write the input's preview, the restored image and the trace, each atomically; returns the trace."""
        from agent.graph import final_pixels, finish_trace
        from agent.io import write_text_atomic

        pixels = final_pixels(state)
        t_io = time.perf_counter()
        self._write_preview(out, item.name, state)
        written = write_output(out, item, row, pixels, state.chosen is None, self.output, self.protect)
        trace = finish_trace(state.trace, row["output"], time.perf_counter() - t_io)
        trace = trace.model_copy(update={"output_file": written})
        write_text_atomic(out / row["trace"], trace.model_dump_json(indent=1))
        return trace

    def _write_preview(self, out: Path, name: str, state: RestoreState) -> None:
        import cv2
        import numpy as np

        from reasoner.files import write_bytes_atomic
        from reasoner.imageio import to_uint8

        pixels = np.load(state.input_npy, mmap_mode="r")
        h, w = pixels.shape[:2]
        s = min(1.0, PREVIEW_SIDE / max(h, w))
        size = (max(1, round(w * s)), max(1, round(h * s)))
        small = to_uint8(cv2.resize(np.asarray(pixels), size, interpolation=cv2.INTER_AREA))
        small = cv2.cvtColor(small, cv2.COLOR_RGB2BGR)
        ok, buf = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, 90])
        if ok:
            (out / PREVIEWS).mkdir(parents=True, exist_ok=True)
            write_bytes_atomic(out / PREVIEWS / f"{name}.jpg", buf.tobytes())


def write_output(
    out: Path, item: Item, row: dict, pixels, unchanged: bool, options: OutputOptions, protect: frozenset[str]
) -> OutputFileTrace:
    """Write the restored image like its input into ``out`` (``row["output"]`` gets its name); returns what was kept.

    Raises:
        ValueError: The input changed while it was restored, or the name is one of the run's inputs.

    """
    import hashlib

    from reasoner.imagefile import copy_input, output_container, output_suffix, read_source, write_like

    source, data = read_source(item.path)
    if row.get("sha256") and hashlib.sha256(data).hexdigest() != row["sha256"]:
        raise ValueError("the file changed while it was being restored; run again (--resume restores it again)")
    container = output_container(source, options.format)
    row["output"] = f"{item.name}{output_suffix(source, container)}"
    target = out / row["output"]
    if os.path.abspath(target) in protect or os.path.realpath(target) in protect:
        raise ValueError(f"{target} is one of this run's inputs; it is never overwritten (pick another --out)")
    if unchanged and container == source.container and options.quality is None:
        written = copy_input(target, data, source)  # bit-exact: nothing re-encoded, nothing lost
    else:
        written = write_like(target, pixels, source, container=container, quality=options.quality)
    return output_file_trace(written, source)


def output_file_trace(written, source) -> OutputFileTrace:
    """The trace's record of a :class:`reasoner.imagefile.WrittenFile` written like ``source``."""
    return OutputFileTrace(container=written.container, input_container=source.container,
                           bit_depth=written.bit_depth, input_bit_depth=source.bit_depth, quality=written.quality,
                           subsampling=written.subsampling, lossless=written.lossless, copied=written.copied,
                           exif_kept=written.exif_kept, icc_kept=written.icc_kept, xmp_kept=written.xmp_kept,
                           orientation_normalised=written.orientation_normalised,
                           notes=written.notes[:16])  # fmt: skip


class IncompleteState(RuntimeError):
    """A checkpointed thread that stopped without a decision and a trace."""


class ImageThread:
    """One image's checkpoint thread and work folder (``OUT/.rnr/work/<thread>``): run, resume, forget."""

    def __init__(self, ctx: Context, item: Item, out: Path, sha256: str, checkpoint: str | None) -> None:
        """``checkpoint``: a ``postgres://`` URL, or None for a SQLite file in the work folder."""
        from agent.checkpoint import is_postgres_url, redact
        from agent.run import thread_id

        self.ctx, self.item, self.checkpoint = ctx, item, checkpoint
        self.thread = thread_id(item.path, ctx, sha256=sha256)
        self.work = out / ".rnr" / "work" / self.thread
        self.shared = is_postgres_url(checkpoint)
        #: Where the checkpoint lives, for messages.
        self.where = f"{redact(checkpoint)} thread {self.thread}" if self.shared else str(self.work / CHECKPOINT)

    def _saver(self):
        from agent.checkpoint import open_checkpointer

        return open_checkpointer(self.checkpoint, self.work / CHECKPOINT)

    def exists(self) -> bool:
        """Whether a checkpoint of this thread exists (the image was started before)."""
        if not self.shared:
            return (self.work / CHECKPOINT).exists()
        saver = self._saver()
        try:
            return saver.get_tuple({"configurable": {"thread_id": self.thread}}) is not None
        finally:
            saver.conn.close()

    def run(self, on_update: Callable[[str, dict], None] | None = None) -> RestoreState:
        """Run the thread to its end (resuming from its checkpoint); the final state is checked to be complete.

        Raises:
            IncompleteState: The thread ended without a decided, exported state (its checkpoint is stale).

        """
        from agent.run import run_graph

        self.work.mkdir(parents=True, exist_ok=True)
        saver = self._saver()
        try:
            state = run_graph(self.item.path, self.ctx, self.work, checkpointer=saver, thread=self.thread,
                              on_update=on_update)  # fmt: skip
        finally:
            # An interrupt can leave a checkpoint write in flight in LangGraph's background thread; closing the
            # connection under it crashes SQLite (SIGSEGV). The saver's lock waits for that write.
            with saver.lock:
                saver.conn.close()
        if not complete(state):
            raise IncompleteState(f"thread {self.thread} ended without a decided, exported state")
        return state

    def forget(self) -> None:
        """Delete the thread's checkpoint and work files (a checkpoint without its work files cannot resume)."""
        if self.shared:
            saver = self._saver()
            try:
                saver.delete_thread(self.thread)
            finally:
                saver.conn.close()
        shutil.rmtree(self.work, ignore_errors=True)


def complete(state: RestoreState) -> bool:
    """Whether a thread's final state has what the outputs are made of: a decision, a trace, its arrays on disk."""
    if state.trace is None or state.decision is None or not state.input_npy:
        return False
    from agent.graph import final_path

    if state.chosen is not None and state.crops_npy and not state.final_npy:
        return False
    return all(p.is_file() for p in {Path(state.input_npy), final_path(state)})


def _more_needed(path: Path, out: Path, attempts: int, err: BaseException) -> int | None:
    """About how much more space than is free now the image needs, or at least what the failed write wanted.

    An image's work files peak at a float32 RGB array of the input and one per attempt.
    """
    from reasoner.imageio import header_size

    size = header_size(path)
    peak = size[0] * size[1] * 12 * (1 + attempts) if size else 0
    try:
        free = shutil.disk_usage(out).free
    except OSError:
        free = 0
    return max(peak - free, getattr(err, "needed", None) or 0) or None


def _disk_full(e: BaseException | None) -> bool:
    """A full disk anywhere in the exception's chain (SQLite says so in words, numpy and files with ENOSPC)."""
    seen = 0
    while e is not None and seen < 8:
        if is_disk_full(e) or (isinstance(e, sqlite3.OperationalError) and "disk is full" in str(e)):
            return True
        e, seen = e.__cause__ or e.__context__, seen + 1
    return False


# ----- pool workers: die with their parent, leave interrupts to it

_WORKER: Worker | None = None


def init_pool_worker(
    backends: Backends,
    settings: Settings,
    max_pixels: int | None,
    protect: frozenset[str],
    output: OutputOptions | None = None,
) -> None:
    """Initializer of a pool process: load the backends, and make sure this process never outlives the driver."""
    global _WORKER
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C reaches the whole group: the driver decides what stops
    _die_with_parent()
    _close_run_lock()
    _WORKER = Worker.load(backends, settings, max_pixels, output)
    _WORKER.protect = protect


def pool_process(item: Item, out: Path, checkpoint: str | None) -> dict:
    """Process one item in a pool worker (see :func:`init_pool_worker`)."""
    assert _WORKER is not None, "init_pool_worker did not run"
    return _WORKER.process(item, out, checkpoint=checkpoint)


def _die_with_parent() -> None:
    parent = os.getppid()
    try:  # Linux: the kernel kills us when the parent dies, even by SIGKILL
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # the parent died before the line above took effect
        os._exit(1)

    def watch() -> None:  # elsewhere (and as a second guard): poll for re-parenting
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="rnr-parent-watch", daemon=True).start()


def _close_run_lock() -> None:
    """Close this process's inherited copy of the run lock: the lock then lives exactly as long as the driver."""
    fd_dir = Path("/proc/self/fd")
    if not fd_dir.is_dir():
        return
    for entry in list(fd_dir.iterdir()):
        try:
            if os.readlink(entry).endswith(f"{os.sep}.rnr{os.sep}lock"):
                os.close(int(entry.name))
        except (OSError, ValueError):
            continue
