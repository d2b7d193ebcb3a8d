"""A batch run folder as the report reads it: manifest rows, traces, and where each image's pictures are.

Names in the manifest and traces are user data anyone can edit: only regular files inside the run folder are read
(no ``..``, no absolute paths, no symlinks out, never a FIFO or device), and what cannot be read becomes a note
naming the file, never an error. The page itself is drawn by :mod:`agent.ui.report`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from reasoner.common import one_line

if TYPE_CHECKING:
    from agent.trace import Trace


class ReportError(ValueError):
    """A run folder that cannot be reported on; the message is one line naming the folder and the fix."""


@dataclass
class Entry:
    """One input of the run: its manifest row, its trace (if readable) and where its pictures are."""

    name: str
    row: dict
    trace: Trace | None = None
    before: Path | None = None
    after: Path | None = None
    note: str = ""


@dataclass
class Run:
    """What a run folder holds, as the report sees it."""

    root: Path
    entries: list[Entry] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _inside(root: Path, path: Path) -> Path | None:
    """``path`` if it is a regular file whose real location is inside the run folder, else None.

    Names come from the manifest and traces, which anyone can edit: the report never reads outside the run folder
    (no ``..``, no absolute paths, no symlinks out) and never opens a FIFO or device.
    """
    from reasoner.files import special_file_reason

    try:
        real, top = path.resolve(), root.resolve()
    except (OSError, RuntimeError):
        return None
    if real != top and top not in real.parents:
        return None
    if special_file_reason(real) or not real.is_file():
        return None
    return real


def load_run(run_dir: str | Path, warn: Callable[[str], None] | None = None) -> Run:
    """Read the manifest and traces of ``run_dir``; unreadable traces and manifest lines become notes, not errors.

    Only files inside ``run_dir`` are read: the inputs' previews come from ``.rnr/previews/`` (written by the batch).
    ``warn`` is called with each note as it is found (one line: the file, the line or trace, and why).

    Raises:
        ReportError: when ``run_dir`` is not a folder or holds neither a manifest nor traces.

    """
    from pydantic import ValidationError

    from agent.manifest import MANIFEST, plain_name, read_manifest
    from agent.trace import RESTORED, Trace
    from agent.worker import PREVIEWS

    root = Path(run_dir)
    if not root.is_dir():
        raise ReportError(f"{root}: not a folder; pass the --out folder of an `rnr restore` run")
    notes: list[str] = []

    def note(message: str) -> None:
        notes.append(message)
        if warn is not None:
            warn(message)

    rows = read_manifest(root, warn=note)
    if not rows:
        # A manifest lost or never written: fall back to the traces alone.
        for p in sorted(root.glob("*.json")):
            rows[p.stem] = {"name": p.stem, "input": None, "output": f"{p.stem}.png", "trace": p.name}
    if not rows:
        raise ReportError(f"{root}: no run found ({MANIFEST} or traces); run `rnr restore INPUTS --out {root}` first")
    run = Run(root, notes=notes)
    for name, row in sorted(rows.items()):
        ent = Entry(name, row)
        if row.get("status") != "failed" and row.get("trace"):
            tpath = _inside(root, root / row["trace"])
            try:
                if tpath is None:
                    raise OSError("missing, or not a file inside the run folder")
                ent.trace = Trace.model_validate_json(tpath.read_text(encoding="utf-8"))
            except (OSError, ValueError, ValidationError) as e:
                # Pydantic's first line only counts errors; the first error's message says what is wrong.
                first = e.errors()[0]["msg"] if isinstance(e, ValidationError) else one_line(e)
                note(f"{row['trace']}: unreadable trace, skipped ({first})")
        t = ent.trace
        if t is not None:
            row.setdefault("status", "ok" if t.decision in RESTORED else "unchanged")
            row.setdefault("decision", t.decision)
        if row.get("status") != "failed":
            try:
                out_name = plain_name(row.get("output", f"{name}.png"))
            except ValueError:
                out_name = f"{name}.png"
            ent.after = _inside(root, root / out_name)
            ent.before = _inside(root, root / PREVIEWS / f"{name}.jpg")
            if ent.before is None:
                ent.note = "no preview of the input in the run folder"
            if ent.after is None:
                ent.note = (ent.note + "; " if ent.note else "") + "restored image missing"
        run.entries.append(ent)
    return run
