"""What a reference library folder holds, and how what is read back from it is checked before use.

Layout of a library folder::

    library.json                   format, schema version, embedder name/version/dim, index type and params,
                                   relevance threshold, created/updated (UTC, ISO 8601)
    entries.sqlite                 entries(id, path, category, sha256, width, height, added_at, row),
                                   indexes(category, file, ntotal, kind), meta(generation)
    index.<category>.<gen>.faiss   one FAISS index per category (RASR-style sub-libraries); row i of a category's
                                   index is the entry with that category and ``row = i``
    images/<sha>.png               8-bit PNGs of entries added as in-memory arrays (named by SHA-256)

A library folder may come from someone else: ``library.json`` is validated completely before any name in it is
resolved, and every library file must be a regular file inside the folder, read without blocking. Whatever fails
is a one-line :class:`LibraryError` naming the file and the fix.
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
from pathlib import Path
from typing import Any

import numpy as np

from reasoner.common import one_line
from retrieval.faiss_index import INDEX_TYPES, IndexParamError, check_index_params, not_a_file

FORMAT = "reason-restore.reference-library"
SCHEMA_VERSION = "1.0"
#: The fix named by every error about a damaged library.
REBUILD = "rebuild it with `rnr index build --overwrite`"
#: Largest embedding size a library may record (the largest vision models embed in a few thousand dimensions).
MAX_DIM = 1 << 16
META_MAX_BYTES = 1 << 20  # library.json is about 1 KB; a huge one is not ours
CATEGORY_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
DB_FILES = ("entries.sqlite", "entries.sqlite-journal", "entries.sqlite-wal", "entries.sqlite-shm")
INDEX_FILE_RE = re.compile(r"index\.[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\.[0-9]{1,18}\.faiss")
TMP_RE = re.compile(r"\.(?:library\.json|index\..+\.faiss)\.[0-9a-f]{12}\.tmp")  # write_bytes_atomic's temp names
IMAGE_RE = re.compile(r"([0-9a-f]{32})\.png")
IMAGE_TMP_RE = re.compile(r"\.[0-9a-f]{32}\.png\.[0-9a-f]{12}\.tmp")


class LibraryError(ValueError):
    """A library that cannot be created, opened or used as asked; ``str(err)`` is one line naming the fix.

    Damaged or hostile library files (``library.json``, ``entries.sqlite``, ``index.*.faiss``) raise this and
    nothing else, so a caller can catch it and carry on without references.
    """


def check_category(category: str) -> str:
    """Return ``category`` if it is a valid sub-library name (letters, digits, ``_.-``; up to 64), else raise."""
    if not isinstance(category, str) or not CATEGORY_RE.fullmatch(category):
        raise LibraryError(
            f"bad category {category!r}: use 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit"
        )
    return category


def check_threshold(value: Any) -> float:
    """``value`` as a float if it is a valid default relevance threshold (a cosine from 0 to 1), else raise."""
    ok = isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise LibraryError(
            f"threshold {short(value)} must be a cosine from 0 to 1; to keep every match of one search, "
            "pass threshold=float('-inf') to search (--threshold -1 on the command line)"
        )
    return float(value)


def short(value: Any, limit: int = 80) -> str:
    """``repr(value)``, cut to ``limit`` characters: values from a hostile file can be any size.

    >>> short("x" * 100, limit=10)
    "'xxxxxx..."
    """
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _printable(text: Any, limit: int) -> bool:
    return isinstance(text, str) and len(text) <= limit and text.isprintable()


def inside(path: str | os.PathLike, root: str | os.PathLike) -> bool:
    """Whether ``path`` resolves (symlinks followed) to ``root`` or somewhere under it."""
    real, top = os.path.realpath(path), os.path.realpath(root)
    return real == top or real.startswith(top.rstrip(os.sep) + os.sep)


def is_regular(path: Path) -> bool:
    """Whether ``path`` itself (not a symlink's target) is a regular file."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def check_own_file(root: Path, path: Path) -> None:
    """Refuse a library file that is a symlink leading out of the folder, or not a regular file; never blocks.

    Raises:
        FileNotFoundError: ``path`` (or a symlink's target) does not exist.
        LibraryError: Otherwise unusable.

    """
    try:
        mode = os.lstat(path).st_mode
        if stat.S_ISLNK(mode):
            if not inside(path, root):
                raise LibraryError(
                    f"{path}: symlink to {os.path.realpath(path)}, outside the library folder; not followed; {REBUILD}"
                )
            mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise
    except OSError as e:
        raise LibraryError(f"{path}: cannot be read ({e.strerror}); check its permissions") from None
    if not stat.S_ISREG(mode):
        raise LibraryError(f"{path}: {not_a_file(mode)}, not a library file; {REBUILD}")


def read_small(root: Path, path: Path, limit: int) -> bytes:
    """The bytes of a small library file, read without blocking and refused when larger than ``limit``."""
    check_own_file(root, path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):  # swapped since the check above
                raise LibraryError(f"{path}: {not_a_file(st.st_mode)}, not a library file; {REBUILD}")
            if st.st_size > limit:
                raise LibraryError(f"{path}: {st.st_size:,} bytes, far more than a library's metadata; {REBUILD}")
            return f.read(limit + 1)
    except OSError as e:
        raise LibraryError(f"{path}: cannot be read ({e.strerror}); check its permissions") from None


def read_meta(path: str | os.PathLike) -> dict[str, Any]:
    """The validated ``library.json`` of a library folder; nothing named in it is resolved or imported.

    Raises:
        LibraryError: No ``library.json``, or one that is not a file, not JSON, of another format or schema
            version, or with a field of the wrong type or range (one line naming the file and the fix).

    """
    root = Path(path)
    meta_path = root / "library.json"
    if not os.path.lexists(meta_path):
        raise LibraryError(f"{root}: not a reference library (no library.json); create one with `rnr index build`")
    try:
        data = read_small(root, meta_path, META_MAX_BYTES)
    except FileNotFoundError:  # a dangling symlink
        raise LibraryError(f"{meta_path}: symlink to a missing file; {REBUILD}") from None
    try:
        meta = json.loads(data)
    except (ValueError, RecursionError) as e:
        raise LibraryError(f"{meta_path}: not valid JSON ({one_line(e, 300)}); {REBUILD}") from None
    return _validate_meta(meta, meta_path)


def _validate_meta(meta: Any, where: Path) -> dict[str, Any]:
    """``meta`` checked field by field (types, ranges, known format and version), with index params completed."""

    def bad(problem: str) -> LibraryError:
        return LibraryError(f"{where}: {problem}; {REBUILD}")

    if not isinstance(meta, dict):
        raise bad(f"holds a JSON {type(meta).__name__}, not an object")
    fmt = meta.get("format")
    if fmt != FORMAT:
        raise LibraryError(
            f"{where}: not a reason-restore reference library (format {short(fmt)}); pick a library folder, or "
            f"if this one was a library, {REBUILD}"
        )
    version = meta.get("schema_version")
    cur_major, cur_minor = (int(p) for p in SCHEMA_VERSION.split("."))
    if not isinstance(version, str) or not re.fullmatch(r"[0-9]{1,6}\.[0-9]{1,6}", version):
        raise bad(f"schema_version {short(version)} is not a MAJOR.MINOR string")
    major, minor = (int(p) for p in version.split("."))
    if major != cur_major or minor > cur_minor:
        raise LibraryError(
            f"{where.parent}: library schema {version} is not readable by this version "
            f"(reads {cur_major}.0-{SCHEMA_VERSION}); upgrade reason-restore or rebuild the library"
        )
    problem = embedder_problem(meta.get("embedder"))
    if problem:
        raise bad(problem)
    index = meta.get("index")
    if not isinstance(index, dict) or set(index) != {"type", "params"} or not isinstance(index["params"], dict):
        raise bad("'index' must be an object with exactly type and params (an object)")
    if index["type"] not in INDEX_TYPES:
        raise bad(f"index type {short(index['type'])} is not one of {list(INDEX_TYPES)}")
    try:
        params = check_index_params(index["type"], index["params"])
    except IndexParamError as e:
        raise bad(str(e)) from None
    try:
        threshold = check_threshold(meta.get("threshold"))
    except LibraryError:
        raise bad(f"threshold {short(meta.get('threshold'))} is not a number from 0 to 1") from None
    for key in ("created", "updated"):
        if key in meta and not _printable(meta[key], 64):
            raise bad(f"{key} {short(meta[key])} is not a date string")
    return {**meta, "index": {"type": index["type"], "params": params}, "threshold": threshold}


def embedder_problem(emb: Any) -> str | None:
    """What is wrong with a recorded ``{"name", "version", "dim"}``, or None."""
    if not isinstance(emb, dict) or set(emb) != {"name", "version", "dim"}:
        return "'embedder' must be an object with exactly name, version and dim"
    if not _printable(emb["name"], 4096) or not emb["name"].strip():
        return f"embedder name {short(emb['name'])} is not a non-empty printable string"
    if not _printable(emb["version"], 512):
        return f"embedder version {short(emb['version'])} is not a printable string"
    dim = emb["dim"]
    if isinstance(dim, bool) or not isinstance(dim, int) or not 1 <= dim <= MAX_DIM:
        return f"embedder dim {short(dim)} is not an integer from 1 to {MAX_DIM}"
    return None
