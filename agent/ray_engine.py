"""The Ray engine for batch restoration: the same outputs, traces, manifest and resume rule as :mod:`agent.batch`.

Ray Data carries the list of inputs; a pool of ``workers`` actors (each optionally holding ``gpus_per_worker`` GPUs)
loads the backends once and runs :meth:`agent.worker.Worker.process` on every image, so images, traces, checkpoints
and failure rows are exactly those of the local engine. Only the driver appends to ``manifest.jsonl``, as rows stream
back, so a killed run resumes like a local one. Ray is imported inside functions: ``import agent.ray_engine`` works
without the ``dist`` extra and a Ray run without it fails with the install hint.
"""

from __future__ import annotations

import glob
import json
import logging
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path

from agent.backends import Backends
from agent.batch import (
    NoImagesError,
    OutputOptions,
    Recorder,
    Summary,
    check_new_run,
    check_out,
    interruptible,
    plan_batch,
    refused_row,
    scan,
)
from agent.manifest import Item
from agent.runlock import RunLock
from agent.state import Settings

_HINT = "the Ray engine needs Ray Data; install with: pip install 'reason-restore[dist]'"
# At most this many images per Ray Data block: a block's rows reach the manifest when the block is done, so this
# bounds the work a killed run redoes, while a few blocks per actor keep the pool evenly loaded.
_BLOCK_ITEMS = 32
_BLOCKS_PER_WORKER = 8


def require_ray():
    """Import Ray (with Ray Data) or raise an ``ImportError`` naming the ``dist`` extra."""
    try:
        import ray
        import ray.data  # noqa: F401 - the extra is ray[data]; core Ray alone is not enough
    except ImportError as e:
        raise ImportError(_HINT) from e
    return ray


def expand_inputs(inputs: Sequence[str | Path]) -> list[str | Path]:
    """Inputs as :func:`agent.batch.plan_batch` takes them: folders and files as given, globs and lists expanded.

    A ``.parquet`` file is read with Ray Data (its ``path`` column) and a ``.txt`` file holds one path per line
    (``#`` comments allowed); relative paths in either are taken from the list's folder. A string with ``*``, ``?``
    or ``[`` that is not an existing path is a glob (``**`` descends), expanded in sorted order.

    Raises:
        ImageLoadError: For a glob that matches no file.

    """
    from reasoner.imageio import ImageLoadError

    out: list[str | Path] = []
    for inp in inputs:
        p = Path(inp)
        if p.is_file() and p.suffix.lower() == ".parquet":
            ray = require_ray()
            rows = ray.data.read_parquet(str(p)).select_columns(["path"]).take_all()
            out += [p.parent / r["path"] for r in rows]
        elif p.is_file() and p.suffix.lower() == ".txt":
            lines = (ln.strip() for ln in p.read_text(encoding="utf-8").splitlines())
            out += [p.parent / ln for ln in lines if ln and not ln.startswith("#")]
        elif not p.exists() and glob.has_magic(str(inp)):
            found = sorted(glob.glob(str(inp), recursive=True))
            if not found:
                raise ImageLoadError(str(inp), "the pattern matches no file; check the path or quote the glob")
            out += [Path(f) for f in found if Path(f).is_file()]
        else:
            out.append(inp)
    return out


class _Restorer:
    """A Ray Data actor: builds the backends once, then restores one batch of items at a time."""

    def __init__(
        self,
        backends: Backends,
        settings: Settings,
        out: str,
        cwd: str,
        checkpoint: str | None = None,
        max_pixels: int | None = None,
        protect: frozenset[str] = frozenset(),
        output: OutputOptions | None = None,
    ) -> None:
        from agent.worker import Worker

        # Relative inputs and --out mean what they meant to the driver (and manifest rows keep them as given).
        if os.path.isdir(cwd):
            os.chdir(cwd)
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        self.worker = Worker.load(backends, settings, max_pixels, output)
        self.worker.protect = protect
        self.out = Path(out)
        self.checkpoint = checkpoint

    def __call__(self, batch: dict) -> dict:
        import numpy as np

        from reasoner.files import DiskFullError

        rows = []
        for path, name, sha in zip(batch["path"], batch["name"], batch["sha256"], strict=True):
            try:
                row = self.worker.process(Item(Path(path), name, sha or None), self.out, checkpoint=self.checkpoint)
            except DiskFullError as e:  # the driver stops the batch on it (one line), as the local engine does
                row = {"disk_full": e.path, "needed": e.needed}
            rows.append(json.dumps(row, ensure_ascii=False))
        # One JSON string per item: manifest rows differ in keys (failures have "error", no "decision").
        return {"row": np.array(rows, dtype=object)}


def driver_row(row: dict) -> dict:
    """An actor's row as the driver records it; a full disk an actor hit is raised here, the space needed kept.

    Raises:
        DiskFullError: The actor's image stopped on a full disk; the batch stops, as on the local engine.

    """
    if row.get("disk_full"):
        from reasoner.files import DiskFullError

        raise DiskFullError(row["disk_full"], row.get("needed"))
    return row


def _start(ray, address: str | None, workers: int) -> bool:
    """Connect to ``address`` or start a local runtime; returns whether this call owns (and must shut) it."""
    if ray.is_initialized():
        return False
    # Actors take one logical CPU each; one more leaves room for Ray Data's own tasks (reading Parquet lists).
    kwargs = {} if address else {"num_cpus": workers + 1}
    ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=True, **kwargs)
    return True


def run_batch_ray(
    inputs: Sequence[str | Path],
    out: str | Path,
    *,
    backends: Backends | None = None,
    settings: Settings | None = None,
    workers: int = 1,
    resume: bool = False,
    recursive: bool = False,
    address: str | None = None,
    gpus_per_worker: float = 0,
    on_row: Callable[[dict], None] | None = None,
    on_warning: Callable[[str], None] | None = None,
    on_start: Callable[[Summary, int], None] | None = None,
    checkpoint: str | None = None,
    follow_symlinks: bool = False,
    max_pixels: int | None = None,
    output: OutputOptions | None = None,
) -> Summary:
    """Restore every input into ``out`` on Ray; same outputs and resume rule as :func:`agent.batch.run_batch`.

    Args:
        inputs: Image files, folders, globs, or ``.parquet`` / ``.txt`` lists of paths (see :func:`expand_inputs`).
        out: Output folder: ``<name>.png``, ``<name>.json`` traces, ``manifest.jsonl``.
        backends: The reasoner, scorer, restorer and library (default: measure, measure, classical, none); each
            actor loads them once.
        settings: Decide-loop settings, recorded in every trace.
        workers: Actors in the pool.
        resume: Skip inputs already finished in ``out``; without it an existing run in ``out`` is an error.
        recursive: Descend into sub-folders of folder inputs.
        address: Ray cluster to join (``auto``, ``ray://host:10001``); ``None`` starts a local runtime for the run.
            A runtime already initialised in this process is used as it is and left running.
        gpus_per_worker: GPUs reserved by each actor (fractions share a GPU); 0 runs on CPU.
        on_row: Called with each manifest row as it is recorded.
        on_warning: Called with one line per warning (a skipped bad line of the manifest, a checkpoint that could not
            be resumed).
        on_start: Called once as ``on_start(summary, n_todo)`` when the work is known.
        checkpoint: A ``postgres://`` URL: every actor, on any host, keeps its checkpoints on that server, so an
            image whose actor died resumes on another (``out`` must then be the same absolute path on a shared
            filesystem everywhere, since checkpointed states name its work files); ``None`` keeps a SQLite file
            per image in ``out``.
        follow_symlinks: Follow symlinks that leave a folder input (refused by default).
        max_pixels: Refuse larger images (default: what each worker's memory allows).
        output: How restored images are written (default: each input's own container).

    Returns:
        The :class:`agent.batch.Summary` of the run.

    Raises:
        ImportError: Ray Data is not installed.
        FileExistsError, NoImagesError, RunLockedError, DiskFullError, Interrupted: as for the local engine.

    """
    from reasoner.imageio import resolve_max_pixels

    ray = require_ray()
    if workers < 1:
        raise ValueError(f"--workers {workers}: the Ray engine needs at least 1 worker")
    out = Path(out)
    inputs = expand_inputs(inputs)
    check_out(inputs, out)
    check_new_run(out, resume)
    limit = resolve_max_pixels(max_pixels, "restore", workers=1 if address else workers)
    scanned = scan(inputs, out, recursive=recursive, follow_symlinks=follow_symlinks)
    if not scanned[0] and not scanned[1]:
        raise NoImagesError(f"no images found in {', '.join(map(str, inputs))}")
    backends = backends or Backends()
    backends.check()
    with interruptible(), RunLock(out):
        plan = plan_batch(inputs, out, resume, recursive=recursive, follow_symlinks=follow_symlinks,
                          warn=on_warning, scanned=scanned, output=output)  # fmt: skip
        summary = plan.summary
        record = Recorder(out, summary, on_row, on_warning)
        if on_start is not None:
            on_start(summary, len(plan.todo) + len(plan.refused))
        for it, reason in plan.refused:
            record(refused_row(it, reason, output))
        if not plan.todo:
            return summary
        owned = _start(ray, address, workers)
        try:
            rows = _stream_rows(ray, plan.todo, out, backends, settings or Settings(), workers, gpus_per_worker,
                                checkpoint, limit, plan.protect, output)  # fmt: skip
            for row in rows:
                record(driver_row(row))
            return summary
        finally:
            if owned:
                ray.shutdown()


def _stream_rows(
    ray,
    todo: list[Item],
    out: Path,
    backends: Backends,
    settings: Settings,
    workers: int,
    gpus: float,
    checkpoint,
    max_pixels: int | None,
    protect: frozenset[str],
    output: OutputOptions | None = None,
):
    from ray.data import DataContext

    DataContext.get_current().enable_progress_bars = False  # the CLI draws its own; stdout stays for --json
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)  # "progress bars disabled" noise
    DataContext.get_current().print_on_execution_start = False
    blocks = min(len(todo), max(_BLOCKS_PER_WORKER * workers, math.ceil(len(todo) / _BLOCK_ITEMS)))
    ds = ray.data.from_items(
        [{"path": os.fspath(it.path), "name": it.name, "sha256": it.sha256 or ""} for it in todo],
        override_num_blocks=blocks,
    )
    kwargs = {"backends": backends, "settings": settings, "out": os.fspath(out), "cwd": os.getcwd(),
              "checkpoint": checkpoint, "max_pixels": max_pixels, "protect": protect, "output": output}  # fmt: skip
    ds = ds.map_batches(
        _Restorer,
        compute=ray.data.ActorPoolStrategy(size=workers),
        fn_constructor_kwargs=kwargs,
        batch_size=1,
        batch_format="numpy",
        num_cpus=1,
        num_gpus=gpus or None,
    )
    for batch in ds.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=0):
        for text in batch["row"]:
            yield json.loads(text)
