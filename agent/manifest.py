"""The batch manifest (``OUT/manifest.jsonl``) and the output names it hands out.

One JSON line per finished input, appended by the one driver of a run. Lines are read back defensively: what a full
disk, a power cut or a hostile edit can leave (a torn line, a line cut inside a UTF-8 character, ``{}``, ``123``,
names with separators) is skipped with one warning naming the file and line, never a crash; the rest of the run
stays usable.

Inputs are identified by their absolute path and the SHA-256 of their bytes, not by output name: an input keeps the
name it was given on every resume, a new input never takes a name an earlier run used, and no name is handed out
whose files already exist in the folder without the manifest saying this run wrote them.
"""

from __future__ import annotations

import json
import os
import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from reasoner.common import one_line
from reasoner.files import DiskFullError, is_disk_full, planted_reason

MANIFEST = "manifest.jsonl"
#: Names handed out, appended before any image is processed, so a name survives a crash before its manifest row.
CLAIMS = ".rnr/names.jsonl"
#: Names the run folder itself uses: never handed out to an image.
RESERVED = frozenset({"manifest", "report", ".rnr"})
_UNSAFE = re.compile(r"[\x00-\x1f\x7f/\\]+")
_MAX_NAME_BYTES = 180  # leaves room for "_2", the extension and the temporary-file decoration under NAME_MAX 255


class ManifestRow(BaseModel):
    """One manifest line: which input, which files it produced, and how it went (more keys are kept as they are)."""

    model_config = ConfigDict(extra="allow")

    input: str = Field(min_length=1)
    name: str = Field(min_length=1, max_length=255)
    output: str = Field(min_length=1, max_length=255)
    trace: str = Field(min_length=1, max_length=255)
    status: Literal["ok", "unchanged", "failed"]
    input_abs: str | None = None
    sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")

    @field_validator("name", "output", "trace")
    @classmethod
    def _plain(cls, v: str) -> str:
        return plain_name(v)


def plain_name(v: str) -> str:
    """``v`` if it is a plain file name that stays inside the run folder (no separators, no "..", not hidden)."""
    if not isinstance(v, str) or not v or v in (".", "..") or v.startswith(".") or _UNSAFE.search(v):
        raise ValueError(f"{v!r} is not a plain file name")
    return v


@dataclass(frozen=True)
class Item:
    """One input and the output stem it maps to (unique, inside the output folder)."""

    path: Path
    name: str
    sha256: str | None = None


def read_manifest(out: Path, warn: Callable[[str], None] | None = None) -> dict[str, dict]:
    """Valid rows by output name (a later row for a name wins); bad lines are skipped with a warning.

    Args:
        out: The run folder.
        warn: Called with one line per skipped line (``"<manifest>: line N: <why>; skipped"``).

    """
    rows: dict[str, dict] = {}
    path = out / MANIFEST
    if planted_reason(path):
        if warn:
            warn(f"{not_ours(path)}; not read")
        return rows
    try:
        data = path.read_bytes() if path.is_file() else b""
    except OSError as e:
        if warn:
            warn(f"{path}: unreadable ({e.strerror or e}); treated as empty")
        return rows
    lines = data.split(b"\n")
    for n, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        why = None
        try:
            row = ManifestRow.model_validate(json.loads(raw.decode("utf-8")))
        except UnicodeDecodeError:
            why = "not UTF-8 (a torn write?)"
        except json.JSONDecodeError:
            why = "torn or not JSON" if n == len(lines) or n == len(lines) - 1 else "not JSON"
        except ValidationError as e:
            first = e.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "row"
            why = f"not a manifest row ({where}: {first['msg']})"
        if why is not None:
            if warn:
                warn(f"{path}: line {n}: {why}; skipped")
            continue
        rows[row.name] = row.model_dump(exclude_none=True)
    return rows


def append_row(out: Path, row: dict) -> None:
    """Append one row durably; a full disk raises :class:`DiskFullError` (a torn line is sealed on the next run)."""
    _append_lines(out / MANIFEST, [row])


def not_ours(path: Path) -> str:
    """The one line saying ``path`` is in the way (see :func:`check_own`)."""
    return f"{path}: {planted_reason(path)}, not a file rnr wrote; move it out of the way and run again"


def check_own(path: Path) -> None:
    """Refuse (FileExistsError) to write ``path`` when it is a symlink, folder, FIFO or device planted there."""
    if planted_reason(path):
        raise FileExistsError(not_ours(path))


def _append_lines(path: Path, rows: list[dict]) -> None:
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    check_own(path)
    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        if is_disk_full(e):
            raise DiskFullError(path, len(text.encode())) from None
        raise


def read_claims(out: Path, warn: Callable[[str], None] | None = None) -> dict[str, str]:
    """Output names handed out in ``out`` so far, by absolute input path (bad lines skipped with a warning)."""
    path = out / CLAIMS
    claims: dict[str, str] = {}
    if planted_reason(path):
        if warn:
            warn(f"{not_ours(path)}; not read")
        return claims
    try:
        data = path.read_bytes() if path.is_file() else b""
    except OSError:
        return claims
    for n, raw in enumerate(data.split(b"\n"), start=1):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw.decode("utf-8"))
            key, name = row["input_abs"], row["name"]
            plain_name(name)
            if not isinstance(key, str) or not key:
                raise ValueError("no input")
        except (ValueError, KeyError, TypeError) as e:
            if warn:
                warn(f"{path}: line {n}: not a name record ({one_line(e)[:80]}); skipped")
            continue
        claims.setdefault(key, name)
    return claims


def append_claims(out: Path, items: list[Item]) -> None:
    """Record the names of ``items`` before any of them is processed (see :data:`CLAIMS`)."""
    if items:
        (out / CLAIMS).parent.mkdir(parents=True, exist_ok=True)
        seal_file(out / CLAIMS)
        _append_lines(out / CLAIMS, [{"input_abs": os.path.abspath(it.path), "name": it.name} for it in items])


def seal_manifest(out: Path) -> None:
    """End a torn last line (a run killed mid-write), so the next row appended starts on a line of its own."""
    seal_file(out / MANIFEST)


def seal_file(path: Path) -> None:
    """End a torn last line of a JSON Lines file."""
    check_own(path)
    if path.is_file() and path.stat().st_size:
        with open(path, "rb+") as f:
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                f.write(b"\n")


def safe_stem(rel: Path) -> str:
    """An output stem for an input at ``rel`` (relative to the folder given): readable, and inside the folder.

    Letters of any script, digits, spaces and punctuation stay; path separators become ``__`` and control
    characters ``_``; leading dots and spaces go (no hidden files), the result is NFC and at most 180 UTF-8 bytes.

    >>> safe_stem(Path("trip/spaced name ünïcode.png"))
    'trip__spaced name ünïcode'
    >>> safe_stem(Path("東京.jpg"))
    '東京'
    """
    parts = [unicodedata.normalize("NFC", p) for p in rel.with_suffix("").parts]
    stem = "__".join(_UNSAFE.sub("_", p) for p in parts).lstrip(". ").rstrip(" .")
    while len(stem.encode("utf-8")) > _MAX_NAME_BYTES:
        stem = stem[:-1]
    return stem or "image"


def assign_names(
    files: Iterable[tuple[Path, Path, str | None]], out: Path, previous: dict[str, dict], claims: dict[str, str]
) -> list[Item]:
    """Give each input ``(path, relative path, sha256)`` an output stem that is stable across resumes and new.

    An input the manifest or the claims already name (same absolute path) keeps that name; any other input gets its
    own stem, or that stem with the extension or a number appended, never one handed out to another input and never
    one whose image or trace already exists in ``out`` (a file no run here wrote).
    """
    # A name belongs to one input: the manifest's, else the first to claim it. A damaged or edited file naming a
    # second input with it must not make the two share outputs (one would replace the other's).
    owner: dict[str, str] = {}
    for row in previous.values():
        owner.setdefault(row["name"].lower(), row.get("input_abs") or os.path.abspath(row["input"]))
    for key, name in claims.items():
        owner.setdefault(name.lower(), key)
    by_input = {key: name for key, name in claims.items() if owner[name.lower()] == key}
    for row in previous.values():
        key = row.get("input_abs") or os.path.abspath(row["input"])
        if owner[row["name"].lower()] == key:
            by_input.setdefault(key, row["name"])
    # Case-insensitive file systems fold a.png and A.png: names are compared folded.
    taken = {n.lower() for n in (*previous, *claims.values(), *RESERVED)} | {p.stem.lower() for p in _listing(out)}
    items = []
    for path, rel, sha in files:
        key = os.path.abspath(path)
        name = by_input.get(key)
        if name is None:
            base = safe_stem(rel)
            name, n = base, 2
            for candidate in (base, f"{base}_{path.suffix.lstrip('.').lower() or 'x'}"):
                if candidate.lower() not in taken:
                    name = candidate
                    break
            else:
                while f"{base}_{n}".lower() in taken:
                    n += 1
                name = f"{base}_{n}"
            by_input[key] = name
        taken.add(name.lower())
        items.append(Item(path, name, sha))
    return items


def _listing(out: Path) -> list[Path]:
    try:
        return list(out.iterdir())
    except OSError:
        return []
