"""Batch restoration: many inputs, one output folder, resumable, never losing or corrupting anything.

Layout of ``OUT``: ``<name>.png`` (restored image) and ``<name>.json`` (trace) per input, ``manifest.jsonl`` (one
line per finished input, written by the parent process only), ``.rnr/work/<thread>/`` (intermediate arrays and a
per-image SQLite checkpoint, removed once the image is done). Outputs are written to a temporary file and renamed,
so a final file is complete or absent; an input is done when the manifest says so and its files exist.

With ``checkpoint="postgres://..."`` the per-image checkpoints live on that PostgreSQL server instead (one thread per
image, deleted once the image is done), shared by every worker and host of the run, so a worker can resume an image
another one left half done. Checkpointed states name arrays under ``OUT/.rnr/work/<thread>/`` by the path ``OUT``
was given as, so hosts that share checkpoints must see ``OUT`` at that same path (an absolute path on a shared
filesystem); the manifest, written by the one driver, still decides what is finished.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from agent.io import write_text_atomic
from agent.state import Context, Settings

MANIFEST = "manifest.jsonl"
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class Item:
    """One input and the output stem it maps to (unique, inside the output folder)."""

    path: Path
    name: str


@dataclass
class Summary:
    """What a batch run did."""

    done: list[dict] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[dict] = field(default_factory=list)


def output_items(inputs: Sequence[str | Path], recursive: bool = False) -> list[Item]:
    """Expand inputs to image files and give each a safe, unique output stem.

    Stems are the path relative to the directory given (separators become ``__``), reduced to letters, digits,
    ``.``, ``_`` and ``-``, without leading dots, so no name can escape the output folder; clashes (``a.jpg`` and
    ``a.png``) get the extension appended.
    """
    from reasoner.imageio import iter_image_files

    items, seen = [], set()
    for inp in inputs:
        root = Path(inp)
        for f in iter_image_files([root], recursive=recursive):
            rel = f.relative_to(root) if root.is_dir() else Path(f.name)
            stem = "__".join(rel.with_suffix("").parts)
            stem = _SAFE.sub("_", stem).lstrip(".") or "image"
            if stem in seen:
                stem = f"{stem}_{f.suffix.lstrip('.').lower() or 'x'}"
            n = 2
            base = stem
            while stem in seen:
                stem, n = f"{base}_{n}", n + 1
            seen.add(stem)
            items.append(Item(f, stem))
    return items


def read_manifest(out: Path) -> dict[str, dict]:
    """Finished entries by output stem; a torn last line (killed mid-write) is ignored."""
    entries = {}
    path = out / MANIFEST
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            entries[row["name"]] = row
    return entries


def _append_manifest(out: Path, row: dict) -> None:
    with open(out / MANIFEST, "a", encoding="utf-8") as f:
        f.write(json.dumps(row, ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _is_done(out: Path, row: dict | None) -> bool:
    return (
        bool(row)
        and row["status"] in ("ok", "unchanged")
        and (out / row["output"]).exists()
        and (out / row["trace"]).exists()
    )


_CTX: Context | None = None


def _init_worker(backends: dict, settings: dict) -> None:
    global _CTX
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from agent.run import make_context

    _CTX = make_context(**backends, settings=Settings(**settings))


def process_item(
    item: Item,
    out: Path,
    ctx: Context | None = None,
    on_update: Callable[[str, dict], None] | None = None,
    checkpoint: str | None = None,
) -> dict:
    """Restore one input into ``out``; returns its manifest row (status "failed" with the error on failure).

    ``checkpoint`` is a ``postgres://`` URL for shared checkpoints; ``None`` keeps a SQLite file in the work dir.
    """
    from agent.checkpoint import is_postgres_url, open_checkpointer
    from agent.graph import final_pixels, finish_trace
    from agent.run import run_graph, thread_id
    from reasoner.imageio import ImageLoadError, save_image

    ctx = ctx or _CTX
    t0 = time.perf_counter()
    row = {"input": str(item.path), "name": item.name, "output": f"{item.name}.png", "trace": f"{item.name}.json"}
    try:
        thread = thread_id(item.path, ctx)
        work = out / ".rnr" / "work" / thread

        shared = is_postgres_url(checkpoint)
        config = {"configurable": {"thread_id": thread}}

        def attempt():
            work.mkdir(parents=True, exist_ok=True)
            saver = open_checkpointer(checkpoint, work / "checkpoint.sqlite")
            try:
                state = run_graph(item.path, ctx, work, checkpointer=saver, thread=thread, on_update=on_update)
            finally:
                saver.conn.close()
            return state, final_pixels(state)

        def forget():
            # The thread goes with the work files it refers to: a checkpoint without them cannot resume.
            if shared:
                saver = open_checkpointer(checkpoint, work / "checkpoint.sqlite")
                try:
                    saver.delete_thread(thread)
                finally:
                    saver.conn.close()
            shutil.rmtree(work, ignore_errors=True)

        if shared:
            saver = open_checkpointer(checkpoint, work / "checkpoint.sqlite")
            try:
                resuming = saver.get_tuple(config) is not None
            finally:
                saver.conn.close()
        else:
            resuming = (work / "checkpoint.sqlite").exists()
        try:
            state, pixels = attempt()
        except ImageLoadError:
            raise
        except Exception:  # noqa: BLE001 - re-raised below unless a fresh start helps
            if not resuming:
                raise
            # A run killed mid-step (or mid-cleanup) can leave a checkpoint that no longer matches its work files;
            # the graph is deterministic, so starting the image again gives what the uninterrupted run would have.
            forget()
            state, pixels = attempt()
        t_io = time.perf_counter()
        save_image(out / row["output"], pixels)
        trace = finish_trace(state.trace, row["output"], time.perf_counter() - t_io)
        write_text_atomic(out / row["trace"], trace.model_dump_json(indent=1))
        forget()
        status = "ok" if state.decision in ("accepted", "rolled_back") else "unchanged"
        row.update(status=status, decision=state.decision, overall_before=trace.overall_before,
                   overall_after=trace.overall_after, timings=trace.timings)  # fmt: skip
    except (ImageLoadError, OSError, ValueError) as e:
        row.update(status="failed", error=str(e) if isinstance(e, ImageLoadError) else f"{item.path}: {e}")
    except Exception as e:  # noqa: BLE001 - one bad input must not stop the batch; the error is recorded
        row.update(status="failed", error=f"{item.path}: {type(e).__name__}: {e}")
    row["seconds"] = round(time.perf_counter() - t0, 4)
    return row


def seal_manifest(out: Path) -> None:
    """End a torn last line (a run killed mid-write), so the next row appended starts on a line of its own."""
    path = out / MANIFEST
    if path.exists() and path.stat().st_size:
        with open(path, "rb+") as f:
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                f.write(b"\n")


def check_new_run(out: Path, resume: bool) -> None:
    """Refuse to write into a folder that already holds a run, unless resuming it."""
    if (out / MANIFEST).exists() and not resume:
        raise FileExistsError(
            f"{out}: already holds a run ({MANIFEST}); pass --resume to continue it or pick another --out"
        )


def plan_batch(items: list[Item], out: Path, resume: bool) -> tuple[list[Item], Summary]:
    """Prepare ``out`` (created, torn manifest line sealed) and split ``items`` into to-do and already finished.

    Shared by the local and Ray engines so both skip exactly the same items on ``resume``.
    """
    out.mkdir(parents=True, exist_ok=True)
    seal_manifest(out)
    finished = read_manifest(out)
    summary, todo = Summary(), []
    for it in items:
        if resume and _is_done(out, finished.get(it.name)):
            summary.skipped.append(it.name)
        else:
            todo.append(it)
    return todo, summary


def run_batch(
    inputs: Sequence[str | Path],
    out: str | Path,
    *,
    backends: dict | None = None,
    settings: Settings | None = None,
    workers: int = 1,
    resume: bool = False,
    recursive: bool = False,
    on_row: Callable[[dict], None] | None = None,
    on_update: Callable[[str, dict], None] | None = None,
    checkpoint: str | None = None,
) -> Summary:
    """Restore every input into ``out``; with ``resume`` skip inputs already finished there.

    ``backends`` holds ``reasoner``, ``scorer``, ``restorer`` and ``index`` names for :func:`agent.run.make_context`;
    each worker process loads them once. ``on_update`` (live node updates) needs ``workers == 1``. ``checkpoint``
    is a ``postgres://`` URL to keep checkpoints on that server (see the module docstring); ``None``: SQLite.
    """
    out = Path(out)
    check_new_run(out, resume)
    todo, summary = plan_batch(output_items(inputs, recursive=recursive), out, resume)
    backends = backends or {}
    settings = settings or Settings()

    def record(row: dict) -> None:
        _append_manifest(out, row)
        (summary.failed if row["status"] == "failed" else summary.done).append(row)
        if on_row is not None:
            on_row(row)

    if workers <= 1:
        _init_worker(backends, settings.model_dump())
        for it in todo:
            record(process_item(it, out, on_update=on_update, checkpoint=checkpoint))
    else:
        with ProcessPoolExecutor(
            workers, initializer=_init_worker, initargs=(backends, settings.model_dump())
        ) as pool:
            futures = [pool.submit(process_item, it, out, checkpoint=checkpoint) for it in todo]
            for fut in as_completed(futures):
                record(fut.result())
    return summary
