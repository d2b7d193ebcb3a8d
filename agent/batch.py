"""Batch restoration: many inputs, one output folder, resumable, never losing or corrupting anything.

Layout of ``OUT``: ``<name>.<ext>`` (restored image, in the input's container unless asked otherwise: see
:class:`agent.worker.OutputOptions`) and ``<name>.json`` (trace) per input, ``manifest.jsonl`` (one
line per finished input, written by the driver only), ``report.html``, and ``.rnr/``: ``lock`` (one writer per
folder), ``names.jsonl`` (output names handed out), ``previews/`` (inputs' previews for the report) and
``work/<thread>/`` (intermediate arrays and a per-image SQLite checkpoint, removed once the image is done).

What the driver promises (each has a fault-injection test):

- Inputs are only read. ``OUT`` may not be an input folder; ``-r`` never enters ``OUT``; no output ever replaces an
  input or a file no run here wrote (names are handed out so, see :mod:`agent.manifest`).
- Inputs are identified by absolute path and content (SHA-256): ``--resume`` skips exactly the inputs finished with
  the same bytes, a new input never takes an earlier input's name.
- A crash at any point (``kill -9`` included) leaves a state ``--resume`` completes with the outputs an
  uninterrupted run writes. SIGINT/SIGTERM abandon the image in flight (its checkpoint stays) and raise
  :class:`Interrupted`; pool workers die with the driver.
- A full disk stops the batch with :class:`reasoner.files.DiskFullError` after removing the failed image's work files.
- One driver per ``OUT`` (:class:`agent.runlock.RunLock`); a second is refused naming the first's pid.
- What the run keeps in ``OUT`` (the manifest, ``.rnr`` and its lock, names, work and previews) is never written
  through a symlink or opened as a FIFO planted under its name: the run refuses in one line naming it.

With ``checkpoint="postgres://..."`` the per-image checkpoints live on that PostgreSQL server instead (one thread per
image, deleted once the image is done), shared by every worker and host of the run, so a worker can resume an image
another one left half done. Checkpointed states name arrays under ``OUT/.rnr/work/<thread>/`` by the path ``OUT``
was given as, so hosts that share checkpoints must see ``OUT`` at that same path.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from agent.backends import Backends
from agent.manifest import (
    CLAIMS,
    MANIFEST,
    Item,
    append_claims,
    append_row,
    assign_names,
    check_own,
    read_claims,
    read_manifest,
    seal_manifest,
)
from agent.runlock import RunLock, check_free
from agent.state import Settings
from agent.worker import WARNINGS, OutputOptions, Worker, init_pool_worker, pool_process

__all__ = ["MANIFEST", "Interrupted", "Item", "NoImagesError", "OutputOptions", "Summary", "plan_batch",
           "read_manifest", "run_batch"]  # fmt: skip


@dataclass
class Summary:
    """What a batch run did."""

    done: list[dict] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[dict] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    total: int = 0


class NoImagesError(ValueError):
    """The inputs hold no image to process (one line naming them)."""


class Interrupted(BaseException):  # noqa: N818 - a BaseException like KeyboardInterrupt, so `except Exception` passes it
    """SIGINT or SIGTERM stopped the batch; the image in flight was abandoned and resumes where it stopped."""

    def __init__(self, signum: int, summary: Summary | None = None) -> None:
        super().__init__(signum)
        self.signum = signum
        self.summary = summary

    @property
    def exit_code(self) -> int:
        """128 + the signal number, as a shell reports a process killed by it."""
        return 128 + self.signum


class Recorder:
    """The driver's side of a finished input: its warnings said, its manifest row appended, the summary updated.

    Only the driver writes the manifest (both engines), so a row is appended once, after the image's files exist.
    """

    def __init__(self, out: Path, summary: Summary, on_row=None, on_warning=None) -> None:
        self.out, self.summary, self.on_row, self.on_warning = out, summary, on_row, on_warning

    def __call__(self, row: dict) -> None:
        """Record ``row`` (a worker's, or :func:`refused_row`'s)."""
        for message in row.pop(WARNINGS, ()):
            self.summary.warnings.append(message)
            if self.on_warning is not None:
                self.on_warning(message)
        append_row(self.out, row)
        (self.summary.failed if row["status"] == "failed" else self.summary.done).append(row)
        if self.on_row is not None:
            self.on_row(row)


@dataclass
class BatchPlan:
    """A checked batch: items to process, items already finished, inputs refused before any read."""

    out: Path
    todo: list[Item]
    summary: Summary
    refused: list[tuple[Item, str]] = field(default_factory=list)
    protect: frozenset[str] = frozenset()


def check_new_run(out: Path, resume: bool) -> None:
    """Refuse a folder another run is writing (naming it), or one that already holds a run unless resuming it."""
    check_free(out)
    if not resume and ((out / MANIFEST).exists() or (out / CLAIMS).exists()):
        raise FileExistsError(
            f"{out}: already holds a run ({MANIFEST}); pass --resume to continue it or pick another --out"
        )


def check_out(inputs: Sequence[str | Path], out: Path) -> None:
    """Refuse an ``out`` that is a file, or an input folder (outputs would sit among, and be read back as, inputs)."""
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out}: exists and is not a folder; --out takes a folder")
    real = os.path.realpath(out)
    for inp in inputs:
        if Path(inp).is_dir() and os.path.realpath(inp) == real:
            raise FileExistsError(
                f"--out {out} is the input folder {inp}: restored images would sit among the photos they came from "
                f"and be read back as inputs on the next run; write to another folder, e.g. --out {Path(inp)}-restored"
            )


def scan(
    inputs: Sequence[str | Path], out: Path, *, recursive: bool, follow_symlinks: bool
) -> tuple[list[tuple[Path, Path]], list[tuple[Path, str]]]:
    """Input files as ``(path, path relative to the folder given)`` and refused ones ``(path, reason)``, unread."""
    from reasoner.imageio import ImageLoadError, iter_image_files

    files, refused = [], []

    def on_refused(err: ImageLoadError) -> None:
        refused.append((Path(err.path), err.reason))

    for inp in inputs:
        root = Path(inp)
        found = iter_image_files(
            [root], recursive=recursive, follow_symlinks=follow_symlinks, exclude=[out], on_refused=on_refused
        )
        files += [(f, f.relative_to(root) if root.is_dir() else Path(f.name)) for f in found]
    seen, unique = set(), []
    for f, rel in files:  # the same file given twice (a folder and a file in it) is one input
        key = os.path.abspath(f)
        if key not in seen:
            seen.add(key)
            unique.append((f, rel))
    return unique, refused


def plan_batch(
    inputs: Sequence[str | Path],
    out: Path,
    resume: bool,
    *,
    recursive: bool = False,
    follow_symlinks: bool = False,
    warn: Callable[[str], None] | None = None,
    scanned: tuple[list[tuple[Path, Path]], list[tuple[Path, str]]] | None = None,
    output: OutputOptions | None = None,
) -> BatchPlan:
    """Check the inputs and ``out``, name every input, and split them into to-do and already finished.

    Call under the run lock. Shared by the local and Ray engines so both skip exactly the same items on ``resume``.

    Raises:
        FileExistsError: ``out`` is unusable (a file, an input folder) or holds a run and ``resume`` is false.
        NoImagesError: The inputs hold no image.
        ImageLoadError: An input that does not exist.

    """
    from reasoner.imageio import ImageLoadError, file_sha256

    files, refused = scanned or scan(inputs, out, recursive=recursive, follow_symlinks=follow_symlinks)
    if not files and not refused:
        raise NoImagesError(f"no images found in {', '.join(map(str, inputs))}" + ("" if recursive else
                            " (use --recursive for sub-folders)"))  # fmt: skip
    warnings: list[str] = []
    warn_all = (lambda m: (warnings.append(m), warn(m))) if warn else warnings.append
    check_own(out / CLAIMS)  # a link, FIFO or folder planted under the names: refused before anything is read
    seal_manifest(out)
    previous = read_manifest(out, warn_all)
    claims = read_claims(out, warn_all)
    by_path = {}
    for row in previous.values():
        by_path[row.get("input_abs") or os.path.abspath(row["input"])] = row
    # Hash only what a resume must compare; workers hash the rest as they read it.
    entries = []
    for path, rel in files:
        row = by_path.get(os.path.abspath(path)) if resume else None
        sha = None
        if row is not None and row.get("sha256"):
            try:
                sha = file_sha256(path)
            except ImageLoadError:
                sha = None
        entries.append((path, rel, sha))
    named = assign_names([*entries, *((p, Path(p.name), None) for p, _ in refused)], out, previous, claims)
    items, refused_items = named[: len(entries)], named[len(entries) :]
    append_claims(out, [it for it in named if it.name not in previous and os.path.abspath(it.path) not in claims])
    summary = Summary(warnings=warnings, total=len(named))
    todo = []
    wanted = (output or OutputOptions()).as_row()
    for it in items:
        row = by_path.get(os.path.abspath(it.path))
        if resume and _is_done(out, row, it):
            if row.get("output_options", wanted) == wanted:
                summary.skipped.append(it.name)
                continue
            was = OutputOptions(**row["output_options"]).describe()
            warn_all(f"{it.path}: written earlier as {row['output']} ({was}); writing it again as "
                     f"{(output or OutputOptions()).describe()} (the earlier file is kept)")  # fmt: skip
        todo.append(it)
    protect = frozenset(os.path.realpath(p) for p, _ in files) | frozenset(os.path.abspath(p) for p, _ in files)
    return BatchPlan(out, todo, summary, list(zip(refused_items, (r for _, r in refused), strict=True)), protect)


def _is_done(out: Path, row: dict | None, item: Item) -> bool:
    if not row or row["status"] not in ("ok", "unchanged") or row["name"] != item.name:
        return False
    if row.get("sha256") and row["sha256"] != item.sha256:
        return False  # the input changed since: restore it again
    return (out / row["output"]).is_file() and (out / row["trace"]).is_file()


def refused_row(item: Item, reason: str, output: OutputOptions | None = None) -> dict:
    """The manifest row of an input refused before any read."""
    suffix = (output or OutputOptions()).suffix_guess(Path(item.path))
    return {"input": str(item.path), "input_abs": os.path.abspath(item.path), "name": item.name,
            "output": f"{item.name}{suffix}", "trace": f"{item.name}.json", "status": "failed",
            "error": f"{item.path}: {reason}", "seconds": 0.0}  # fmt: skip


@contextmanager
def interruptible() -> Iterator[list[int]]:
    """Turn SIGINT and SIGTERM into :class:`Interrupted` while the block runs; yields the signals caught so far.

    An exception raised from a signal handler can be swallowed, or turned into another one, by library code it lands
    in (numpy's C code makes it a TypeError): the list lets the caller see a signal whose exception never reached it.
    One that lands in a finaliser or a garbage-collector callback cannot propagate at all; Python would print it as
    "Exception ignored in ..." with a traceback (seen under load: Ctrl+C during a ``__instancecheck__`` run by the
    collector). While the block runs, such an :class:`Interrupted` is not printed: the signal is in the list, and
    the caller stops with its one line.
    """
    caught: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield caught
        return

    def raise_interrupted(signum, frame):
        caught.append(signum)
        raise Interrupted(signum)

    old_hook = sys.unraisablehook

    def quiet_interrupted(unraisable) -> None:
        if not isinstance(unraisable.exc_value, Interrupted):
            old_hook(unraisable)

    old_term = signal.signal(signal.SIGTERM, raise_interrupted)
    old_int = signal.signal(signal.SIGINT, raise_interrupted)
    sys.unraisablehook = quiet_interrupted
    try:
        yield caught
    finally:
        signal.signal(signal.SIGTERM, old_term)
        signal.signal(signal.SIGINT, old_int)
        sys.unraisablehook = old_hook


def run_batch(
    inputs: Sequence[str | Path],
    out: str | Path,
    *,
    backends: Backends | None = None,
    settings: Settings | None = None,
    workers: int = 1,
    resume: bool = False,
    recursive: bool = False,
    follow_symlinks: bool = False,
    max_pixels: int | None = None,
    on_row: Callable[[dict], None] | None = None,
    on_update: Callable[[str, dict], None] | None = None,
    on_warning: Callable[[str], None] | None = None,
    on_start: Callable[[Summary, int], None] | None = None,
    checkpoint: str | None = None,
    output: OutputOptions | None = None,
    on_item: Callable[[str, str], None] | None = None,
) -> Summary:
    """Restore every input into ``out``; with ``resume`` skip inputs already finished there.

    ``backends`` is the choice of reasoner, scorer, restorer and library (default: measure, measure, classical, no
    library); each worker process loads them once. ``on_update`` (live node updates) needs ``workers == 1``.
    ``checkpoint`` is a ``postgres://`` URL to keep checkpoints on that server (see the module docstring);
    ``None``: SQLite. ``max_pixels`` refuses larger images (default: what memory allows, see
    :func:`reasoner.imageio.resolve_max_pixels`). ``on_start(summary, n_todo)`` is called once the work is known.
    ``output`` chooses the restored images' container and quality (default: each input's container and depth, its
    EXIF, ICC and XMP kept). ``on_item(name, stage)`` says which image is being worked on and, in this process, which
    graph node it has reached ("diagnose", "plan", ...; "start" when a pool worker takes it is not reported).

    Raises:
        FileExistsError, NoImagesError: See :func:`plan_batch` (nothing is created then).
        RunLockedError: Another run holds ``out``.
        DiskFullError: The disk filled up; the batch stopped and resumes with ``resume``.
        Interrupted: SIGINT or SIGTERM; the batch resumes with ``resume``.

    """
    from reasoner.imageio import resolve_max_pixels

    out = Path(out)
    check_out(inputs, out)
    check_new_run(out, resume)
    limit = resolve_max_pixels(max_pixels, "restore", workers=max(workers, 1))
    scanned = scan(inputs, out, recursive=recursive, follow_symlinks=follow_symlinks)
    if not scanned[0] and not scanned[1]:
        raise NoImagesError(f"no images found in {', '.join(map(str, inputs))}" + ("" if recursive else
                            " (use --recursive for sub-folders)"))  # fmt: skip
    backends = backends or Backends()
    settings = settings or Settings()
    if on_warning is not None:
        _check_library(backends, on_warning)
    pooled = workers > 1 and len(scanned[0]) > 1
    # Backends load before anything is written, so a bad name or model fails without leaving a folder behind.
    output = output or OutputOptions()
    worker = None if pooled else Worker.load(backends, settings, limit, output)
    if pooled:
        backends.check()
    existed = out.exists()
    with interruptible() as caught, RunLock(out) as lock:
        try:
            plan = plan_batch(inputs, out, resume, recursive=recursive, follow_symlinks=follow_symlinks,
                              warn=on_warning, scanned=scanned, output=output)  # fmt: skip
        except BaseException:
            lock.release()
            if not existed:
                _remove_fresh(out)
            raise
        summary = plan.summary
        record = Recorder(out, summary, on_row, on_warning)
        if on_start is not None:
            on_start(summary, len(plan.todo) + len(plan.refused))
        try:
            for it, reason in plan.refused:
                record(refused_row(it, reason, output))
            if worker is not None:
                _run_here(worker, plan, record, caught, on_update, checkpoint, on_item)
            else:
                _run_pool(plan, backends, settings, limit, workers, checkpoint, record, output, on_item)
        except Interrupted as e:
            e.summary = summary
            raise
        except KeyboardInterrupt:
            raise Interrupted(signal.SIGINT, summary) from None
    return summary


def _check_library(backends: Backends, warn: Callable[[str], None]) -> None:
    """Say once, before any image, that a damaged library costs the run its references (not its images)."""
    if backends.index is None:
        return
    from agent.backends import open_library

    library, tag = open_library(backends.index)
    if library is None:
        warn(f"--index {backends.index}: {tag[len('none (') : -1]}; restoring without references")
    else:
        library.close()


def _run_here(
    worker: Worker, plan: BatchPlan, record: Recorder, caught: list[int], on_update, checkpoint, on_item=None
) -> None:
    """Process the plan's items one by one in this process."""
    worker.protect = plan.protect
    for it in plan.todo:
        updates = on_update
        if on_item is not None:
            on_item(it.name, "start")

            def updates(node: str, update: dict, name=it.name) -> None:
                on_item(name, node)
                if on_update is not None:
                    on_update(node, update)

        row = worker.process(it, plan.out, on_update=updates, checkpoint=checkpoint)
        if caught:  # the signal's exception was lost in library code: a failure may be that, not a fault
            if row["status"] != "failed":
                record(row)
            raise Interrupted(caught[0])
        record(row)


def _remove_fresh(out: Path) -> None:
    """Remove an output folder this run created, if it holds nothing but the run's own bookkeeping."""
    import shutil

    ours = {out / ".rnr", out / ".rnr" / "lock", out / ".rnr" / "names.jsonl"}
    if all(p in ours for p in out.rglob("*")):
        shutil.rmtree(out, ignore_errors=True)


def _run_pool(
    plan: BatchPlan,
    backends: Backends,
    settings: Settings,
    limit,
    workers: int,
    checkpoint,
    record,
    output,
    on_item=None,
) -> None:
    pool = ProcessPoolExecutor(
        workers, initializer=init_pool_worker, initargs=(backends, settings, limit, plan.protect, output)
    )
    clean = False
    try:
        futures = {pool.submit(pool_process, it, plan.out, checkpoint): it for it in plan.todo}
        for fut in as_completed(futures):
            row = fut.result()
            record(row)
            if on_item is not None:
                on_item(futures[fut].name, "done")
        clean = True
    finally:
        if not clean:  # interrupted or a full disk: stop the workers now (their images resume from checkpoints)
            _kill_workers(pool)
        pool.shutdown(wait=True, cancel_futures=True)


def _kill_workers(pool: ProcessPoolExecutor) -> None:
    kill = getattr(pool, "kill_workers", None)  # Python 3.14
    if kill is not None:
        kill()
        return
    for proc in list((getattr(pool, "_processes", None) or {}).values()):
        try:
            proc.kill()
        except (OSError, AttributeError):
            pass
