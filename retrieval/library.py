"""A reference library persisted as a folder: FAISS indexes per category plus SQLite metadata, never pickle.

Layout of a library folder::

    library.json                   format, schema version, embedder name/version/dim, index type and params,
                                   relevance threshold, created/updated (UTC, ISO 8601)
    entries.sqlite                 entries(id, path, category, sha256, width, height, added_at, row),
                                   indexes(category, file, ntotal, kind), meta(generation)
    index.<category>.<gen>.faiss   one FAISS index per category (RASR-style sub-libraries); row i of a category's
                                   index is the entry with that category and ``row = i``
    images/<sha>.png               8-bit PNGs of entries added as in-memory arrays (named by SHA-256)

Every write goes to a fresh file (temp name, fsync, ``os.replace``) and becomes visible only when the SQLite
transaction naming it commits, so a crash leaves the previous library intact; files no committed state names are
removed by the next write. Writers hold SQLite's write lock for the whole update, so concurrent ``add`` calls
from several processes serialise instead of losing entries.

A library folder may come from someone else, so everything read back is checked before use: ``library.json`` is
validated completely before any name in it is resolved (embedder names resolve through the registry only, never
as import paths), the SQLite schema and the index files are checked against what this module writes, index files
must be regular files inside the folder, and stored vectors must be finite. Whatever fails is a one-line
:class:`LibraryError` naming the file and the fix.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import re
import sqlite3
import stat
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import cv2
import faiss
import numpy as np

from reasoner.files import DiskFullError
from reasoner.imageio import ImageLoadError, LoadedImage, from_array, load_image, to_uint8, write_bytes_atomic
from retrieval.base import Embedder, Reference
from retrieval.faiss_index import (
    INDEX_DEFAULTS,  # noqa: F401  (documented here for callers)
    INDEX_TYPES,
    IndexParamError,
    check_index_params,
    grow_index,
    index_kind,
    not_a_file,
    read_index,
)
from retrieval.registry import EMBEDDERS, is_registered, load_embedder

FORMAT = "reason-restore.reference-library"
SCHEMA_VERSION = "1.0"
DEFAULT_CATEGORY = "default"
FALLBACK_THRESHOLD = 0.5
_CATEGORY_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:@+/-]{0,127}")
_BATCH = 16
#: The fix named by every error about a damaged library.
REBUILD = "rebuild it with `rnr index build --overwrite`"
#: Largest embedding size a library may record (the largest vision models embed in a few thousand dimensions).
MAX_DIM = 1 << 16
_MAX_ROWS = 1 << 40  # FAISS's own bound on a vector's length
_META_MAX_BYTES = 1 << 20  # library.json is about 1 KB; a huge one is not ours
_DB_FILES = ("entries.sqlite", "entries.sqlite-journal", "entries.sqlite-wal", "entries.sqlite-shm")
_INDEX_FILE_RE = re.compile(r"index\.[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\.[0-9]{1,18}\.faiss")
_TMP_RE = re.compile(r"\.(?:library\.json|index\..+\.faiss)\.[0-9a-f]{12}\.tmp")  # write_bytes_atomic's temp names
_IMAGE_RE = re.compile(r"([0-9a-f]{32})\.png")
_IMAGE_TMP_RE = re.compile(r"\.[0-9a-f]{32}\.png\.[0-9a-f]{12}\.tmp")
#: Per library index type, what ``indexes.kind`` a category may have (ivf and ivf-pq start exact).
_KINDS = {"flat": {"flat"}, "ivf": {"flat", "ivf"}, "hnsw": {"hnsw"}, "ivf-pq": {"flat", "ivf-pq"}}
_SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS entries (
    id TEXT PRIMARY KEY,
    path TEXT NOT NULL,
    category TEXT NOT NULL,
    sha256 TEXT NOT NULL UNIQUE,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    added_at TEXT NOT NULL,
    row INTEGER NOT NULL,
    UNIQUE (category, row)
);
CREATE TABLE IF NOT EXISTS indexes (
    category TEXT PRIMARY KEY,
    file TEXT NOT NULL,
    ntotal INTEGER NOT NULL,
    kind TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class LibraryError(ValueError):
    """A library that cannot be created, opened or used as asked; ``str(err)`` is one line naming the fix.

    Damaged or hostile library files (``library.json``, ``entries.sqlite``, ``index.*.faiss``) raise this and
    nothing else, so a caller can catch it and carry on without references.
    """


class AddResult(list):
    """Ids of the entries an :meth:`ReferenceLibrary.add` call created, in input order (a plain ``list[str]``).

    Attributes:
        duplicates: ``(input, existing id)`` for inputs skipped because the same image (by SHA-256 of the file, or
            of the 8-bit PNG an array is stored as) is already in the library, or earlier in the same call.
        errors: One line per input that could not be used (``"<input>: <reason>"``); those are skipped, not fatal.

    """

    def __init__(self, ids: Iterable[str] = (), duplicates=None, errors=None) -> None:
        super().__init__(ids)
        self.duplicates: list[tuple[str, str]] = list(duplicates or [])
        self.errors: list[str] = list(errors or [])


@dataclass(frozen=True)
class _Pending:
    id: str
    path: str
    sha256: str
    width: int
    height: int
    shown: str
    png: bytes | None  # file to write under images/ when the input was an in-memory array


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _atomic_write(path: Path, data: bytes) -> None:
    write_bytes_atomic(path, data)


def check_category(category: str) -> str:
    """Return ``category`` if it is a valid sub-library name (letters, digits, ``_.-``; up to 64), else raise."""
    if not isinstance(category, str) or not _CATEGORY_RE.fullmatch(category):
        raise LibraryError(
            f"bad category {category!r}: use 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit"
        )
    return category


def _embedder_info(embedder: Embedder) -> dict[str, Any]:
    return {"name": str(embedder.name), "version": str(embedder.version), "dim": int(embedder.dim)}


def _check_index_params(index_type: str, params: dict[str, Any]) -> dict[str, Any]:
    try:
        return check_index_params(index_type, params)
    except IndexParamError as e:
        raise LibraryError(str(e)) from None


def check_threshold(value: Any) -> float:
    """``value`` as a float if it is a valid default relevance threshold (a cosine from 0 to 1), else raise."""
    ok = isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise LibraryError(
            f"threshold {_short(value)} must be a cosine from 0 to 1; to keep every match of one search, "
            "pass threshold=float('-inf') to search (--threshold -1 on the command line)"
        )
    return float(value)


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return (text[:300] + "...") if len(text) > 300 else (text or type(err).__name__)


def _printable(text: Any, limit: int) -> bool:
    return isinstance(text, str) and len(text) <= limit and text.isprintable()


def _inside(path: str | os.PathLike, root: str | os.PathLike) -> bool:
    """Whether ``path`` resolves (symlinks followed) to ``root`` or somewhere under it."""
    real, top = os.path.realpath(path), os.path.realpath(root)
    return real == top or real.startswith(top.rstrip(os.sep) + os.sep)


def _is_regular(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def _check_own_file(root: Path, path: Path) -> None:
    """Refuse a library file that is a symlink leading out of the folder, or not a regular file; never blocks.

    Raises:
        FileNotFoundError: ``path`` (or a symlink's target) does not exist.
        LibraryError: Otherwise unusable.

    """
    try:
        mode = os.lstat(path).st_mode
        if stat.S_ISLNK(mode):
            if not _inside(path, root):
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


def _read_small(root: Path, path: Path, limit: int) -> bytes:
    """The bytes of a small library file, read without blocking and refused when larger than ``limit``."""
    _check_own_file(root, path)
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
        data = _read_small(root, meta_path, _META_MAX_BYTES)
    except FileNotFoundError:  # a dangling symlink
        raise LibraryError(f"{meta_path}: symlink to a missing file; {REBUILD}") from None
    try:
        meta = json.loads(data)
    except (ValueError, RecursionError) as e:
        raise LibraryError(f"{meta_path}: not valid JSON ({_one_line(e)}); {REBUILD}") from None
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
            f"{where}: not a reason-restore reference library (format {_short(fmt)}); pick a library folder, or "
            f"if this one was a library, {REBUILD}"
        )
    version = meta.get("schema_version")
    cur_major, cur_minor = (int(p) for p in SCHEMA_VERSION.split("."))
    if not isinstance(version, str) or not re.fullmatch(r"[0-9]{1,6}\.[0-9]{1,6}", version):
        raise bad(f"schema_version {_short(version)} is not a MAJOR.MINOR string")
    major, minor = (int(p) for p in version.split("."))
    if major != cur_major or minor > cur_minor:
        raise LibraryError(
            f"{where.parent}: library schema {version} is not readable by this version "
            f"(reads {cur_major}.0-{SCHEMA_VERSION}); upgrade reason-restore or rebuild the library"
        )
    problem = _embedder_problem(meta.get("embedder"))
    if problem:
        raise bad(problem)
    index = meta.get("index")
    if not isinstance(index, dict) or set(index) != {"type", "params"} or not isinstance(index["params"], dict):
        raise bad("'index' must be an object with exactly type and params (an object)")
    if index["type"] not in INDEX_TYPES:
        raise bad(f"index type {_short(index['type'])} is not one of {list(INDEX_TYPES)}")
    try:
        params = check_index_params(index["type"], index["params"])
    except IndexParamError as e:
        raise bad(str(e)) from None
    try:
        threshold = check_threshold(meta.get("threshold"))
    except LibraryError:
        raise bad(f"threshold {_short(meta.get('threshold'))} is not a number from 0 to 1") from None
    for key in ("created", "updated"):
        if key in meta and not _printable(meta[key], 64):
            raise bad(f"{key} {_short(meta[key])} is not a date string")
    return {**meta, "index": {"type": index["type"], "params": params}, "threshold": threshold}


def _embedder_problem(emb: Any) -> str | None:
    """What is wrong with a recorded ``{"name", "version", "dim"}``, or None."""
    if not isinstance(emb, dict) or set(emb) != {"name", "version", "dim"}:
        return "'embedder' must be an object with exactly name, version and dim"
    if not _printable(emb["name"], 4096) or not emb["name"].strip():
        return f"embedder name {_short(emb['name'])} is not a non-empty printable string"
    if not _printable(emb["version"], 512):
        return f"embedder version {_short(emb['version'])} is not a printable string"
    dim = emb["dim"]
    if isinstance(dim, bool) or not isinstance(dim, int) or not 1 <= dim <= MAX_DIM:
        return f"embedder dim {_short(dim)} is not an integer from 1 to {MAX_DIM}"
    return None


def library_files(path: str | os.PathLike) -> list[Path]:
    """The files in a library folder that this project wrote, and that only it may delete.

    ``library.json``, ``entries.sqlite`` and its journals, ``index.*.faiss``, the temporary files of an interrupted
    write, and ``images/<sha>.png`` whose content hashes to its name: regular files only (a symlink, folder or
    FIFO with one of those names was not written here). Anything else in the folder, such as reference photos kept
    inside it, is someone else's.
    """
    root = Path(path)
    out: list[Path] = []
    if not root.is_dir():
        return out
    for p in sorted(root.iterdir()):
        n = p.name
        ours = n == "library.json" or n in _DB_FILES or _INDEX_FILE_RE.fullmatch(n) or _TMP_RE.fullmatch(n)
        if ours and _is_regular(p):
            out.append(p)
    images = root / "images"
    if images.is_dir() and not images.is_symlink():
        for p in sorted(images.iterdir()):
            m = _IMAGE_RE.fullmatch(p.name)
            if not _is_regular(p):
                continue
            if (m and _sha256_of(p)[:32] == m.group(1)) or _IMAGE_TMP_RE.fullmatch(p.name):
                out.append(p)
    return out


def _sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                return ""
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    except OSError:
        return ""
    return h.hexdigest()


def check_overwritable(path: str | os.PathLike) -> None:
    """Raise unless ``path`` holds a library, or what an interrupted overwrite left of one, that may be replaced.

    Raises:
        LibraryError: ``path`` is not a folder, holds no library files (it is not a library at all), its
            ``library.json`` belongs to another program, or something this project did not write has the name of
            a library file (it would be in the way; it is never deleted).

    """
    root = Path(path)
    if not root.is_dir():
        raise LibraryError(f"{root}: not a folder holding a reference library; pick another folder")
    owned = {p.name for p in library_files(root) if p.parent == root}
    if not owned & {"library.json", "entries.sqlite"} and not any(_INDEX_FILE_RE.fullmatch(n) for n in owned):
        raise LibraryError(f"{root}: not a reference library (no library.json); pick another folder")
    if "library.json" in owned:
        try:
            fmt = json.loads(_read_small(root, root / "library.json", _META_MAX_BYTES)).get("format", FORMAT)
        except (LibraryError, OSError, ValueError, RecursionError, AttributeError):
            fmt = FORMAT  # a damaged library.json of ours: exactly what an overwrite is for
        if fmt != FORMAT:
            raise LibraryError(
                f"{root / 'library.json'}: belongs to something else (format {_short(fmt)}), not a reference "
                "library; pick another folder"
            )
    for p in sorted(root.iterdir()):
        reserved = p.name in ("library.json", *_DB_FILES) or _INDEX_FILE_RE.fullmatch(p.name)
        in_way = (reserved and p.name not in owned) or (p.name == "images" and (p.is_symlink() or not p.is_dir()))
        if in_way:
            raise LibraryError(
                f"{p}: has the name of a library file but was not written by reason-restore; move it away, then "
                "run again"
            )


def replace_library(built: str | os.PathLike, path: str | os.PathLike) -> None:
    """Move the (closed) library in ``built`` into ``path``, replacing the library there.

    Deletes only what the old library wrote (:func:`library_files`) and the new one does not refer to; everything
    else in ``path``, such as the reference photos the new library was built from, stays where it is. The old
    ``library.json`` goes first and the new one arrives last, so a crash in between leaves a folder that is not a
    library, which ``rnr index build --overwrite`` accepts again.

    Raises:
        LibraryError: As :func:`check_overwritable`, or when a new file's name is taken by something else.

    """
    src, root = Path(built), Path(path)
    check_overwritable(root)
    new = [p.relative_to(src) for p in library_files(src)]
    old = library_files(root)
    blocked = [root / r for r in new if os.path.lexists(root / r) and root / r not in old]
    if blocked:
        raise LibraryError(f"{blocked[0]}: not written by reason-restore, but the new library needs its name; move it")
    with sqlite3.connect(src / "entries.sqlite") as db:
        stored = [r[0] for r in db.execute("SELECT path FROM entries")]
    db.close()
    keep = {os.path.realpath(p) for p in stored if os.path.isabs(p)}  # inputs that were already inside the folder
    meta = root / "library.json"
    if meta in old:
        meta.unlink()
    for p in old:
        if p != meta and os.path.realpath(p) not in keep:
            p.unlink(missing_ok=True)
    for rel in sorted(new, key=lambda r: r.as_posix() == "library.json"):  # library.json last
        (root / rel).parent.mkdir(exist_ok=True)
        os.replace(src / rel, root / rel)
    images = root / "images"
    if images.is_dir() and not images.is_symlink() and not any(images.iterdir()):
        images.rmdir()


def _load_embedder(meta_path: Path, recorded: str, given: Embedder | str | None, kwargs: dict[str, Any]) -> Embedder:
    """The embedder to open a library with: ``given``, or the recorded one if its name is a registered one."""
    if given is not None and not isinstance(given, str):
        return given
    if isinstance(given, str):  # the caller's own choice: a dotted path may import code
        try:
            return load_embedder(given, **kwargs)
        except (ValueError, ImportError, OSError) as e:
            raise LibraryError(f"embedder {_short(given)}: {_one_line(e)}") from None
    if not is_registered(recorded):
        raise LibraryError(
            f"{meta_path}: records embedder {_short(recorded)}, which is neither a registered name "
            f"({sorted(EMBEDDERS)}) nor hf:<model>; nothing named in a library file is imported, so pass that "
            "embedder explicitly (ReferenceLibrary.open(path, embedder=...)) or rebuild the library"
        )
    try:
        return load_embedder(recorded, allow_path=False, **kwargs)
    except Exception as e:  # whatever the recorded model raises while loading, open() promises a LibraryError
        raise LibraryError(f"{meta_path}: cannot load its embedder {_short(recorded)}: {_one_line(e)}") from None


def _guarded(method: Callable) -> Callable:
    """Turn SQLite errors (a damaged or hostile entries.sqlite) into one-line library errors."""

    @functools.wraps(method)
    def wrapper(self: ReferenceLibrary, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except sqlite3.Error as e:
            raise self._db_error(e) from None

    return wrapper


@functools.cache
def _expected_schema() -> frozenset[tuple[str, str, str, str | None]]:
    db = sqlite3.connect(":memory:")
    try:
        db.executescript(_SCHEMA_SQL)
        return frozenset(_schema_of(db))
    finally:
        db.close()


def _schema_of(db: sqlite3.Connection) -> set[tuple[str, str, str, str | None]]:
    rows = db.execute("SELECT type, name, tbl_name, sql FROM sqlite_master").fetchall()
    return {(t, n, tb, " ".join(sql.split()) if isinstance(sql, str) else sql) for t, n, tb, sql in rows}


class ReferenceLibrary:
    """High-quality reference images, searchable by embedding similarity, stored in one folder.

    Create with :meth:`create`, reopen with :meth:`open`; both return an open library (use it as a context manager
    or call :meth:`close`). Scores are inner products of unit vectors (cosine similarity); :meth:`search` drops
    matches below ``threshold``, by default the library's own :attr:`threshold`.
    """

    def __init__(self, root: Path, meta: dict[str, Any], embedder: Embedder) -> None:
        self.root = root
        self.embedder = embedder
        self._meta = meta
        self._lock = threading.RLock()
        self._db = sqlite3.connect(root / "entries.sqlite", isolation_level=None, check_same_thread=False)
        try:
            # A hostile file's views and triggers must not reach functions with side effects.
            self._db.execute("PRAGMA trusted_schema=OFF")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA busy_timeout=30000")
        except BaseException:
            self._db.close()
            raise
        self._generation = -1
        self._indexes: dict[str, faiss.Index] = {}
        self._files: dict[str, str] = {}  # category -> index file name, for messages

    # ----- lifecycle

    @classmethod
    def create(
        cls,
        path: str | os.PathLike,
        embedder: Embedder | str = "global",
        index_type: str = "flat",
        *,
        threshold: float | None = None,
        **index_params: Any,
    ) -> ReferenceLibrary:
        """Create an empty library in ``path`` (a new or empty folder).

        Args:
            path: The library folder.
            embedder: An embedder, or a name for :func:`retrieval.registry.load_embedder`.
            index_type: ``"flat"`` (exact inner product, the default), ``"ivf"`` (``IndexIVFFlat``, trained per
                category once it holds ``39 * nlist`` vectors, exact flat until then), ``"hnsw"``
                (``IndexHNSWFlat`` with inner product) or ``"ivf-pq"`` (product-quantised IVF with 8-bit
                re-ranking, ~4x smaller; for millions of references); see :data:`INDEX_DEFAULTS`.
            threshold: Default relevance threshold of :meth:`search`, a cosine from 0 to 1; defaults to the
                embedder's ``default_threshold`` (0.5 when it has none).
            **index_params: ``nlist``, ``nprobe`` (ivf); ``M``, ``ef_construction``, ``ef_search`` (hnsw);
                ``nlist``, ``m``, ``nbits``, ``nprobe``, ``rerank`` (ivf-pq).

        Raises:
            LibraryError: For a non-empty folder, an unknown index type, bad parameters or threshold, or an
                embedder whose name or dim a library cannot record.

        """
        if isinstance(embedder, str):
            embedder = load_embedder(embedder)  # a name the person gave: "pkg.module:Class" is allowed here
        params = _check_index_params(index_type, index_params)
        root = Path(path)
        if root.exists() and (not root.is_dir() or any(root.iterdir())):
            what = "a reference library" if (root / "library.json").exists() else "not an empty folder"
            raise LibraryError(f"{root}: already exists and is {what}; add to it, or pick a new folder")
        if threshold is None:
            threshold = float(getattr(embedder, "default_threshold", FALLBACK_THRESHOLD))
        threshold = check_threshold(threshold)
        now = _now()
        meta = {
            "format": FORMAT,
            "schema_version": SCHEMA_VERSION,
            "embedder": _embedder_info(embedder),
            "index": {"type": index_type, "params": params},
            "threshold": threshold,
            "created": now,
            "updated": now,
        }
        problem = _embedder_problem(meta["embedder"])
        if problem:  # never write a library.json that open() would refuse
            raise LibraryError(f"{problem}; a library cannot record this embedder, fix its name, version or dim")
        root.mkdir(parents=True, exist_ok=True)
        lib = cls(root, meta, embedder)
        lib._db.executescript(_SCHEMA_SQL)
        lib._db.execute("INSERT OR IGNORE INTO meta VALUES ('generation', '0')")
        lib._write_meta()  # library.json last: a folder without it is not a library yet
        lib._generation = 0
        return lib

    @classmethod
    def open(
        cls, path: str | os.PathLike, embedder: Embedder | str | None = None, **embedder_kwargs: Any
    ) -> ReferenceLibrary:
        """Open an existing library.

        ``library.json`` is validated completely before anything named in it is resolved, and the embedder it
        records is loaded only if it is a registered name or ``hf:<model>``; a ``"pkg.module:Class"`` embedder
        must be passed explicitly. Then the SQLite schema, the index files and their vectors are checked.

        Args:
            path: The library folder.
            embedder: The embedder to query with: an embedder, or a name for
                :func:`retrieval.registry.load_embedder` (``"pkg.module:Class"`` allowed, since the caller chose
                it); by default the one recorded in ``library.json`` is loaded (``embedder_kwargs``, such as
                ``device`` for ``hf:`` models, are passed to it).
            **embedder_kwargs: Constructor arguments of the recorded or named embedder.

        Raises:
            LibraryError: If the folder is not a library, has an unknown format or major schema version, the
                embedder cannot be loaded or its name, version or dim differs from the recorded one, or any
                library file is damaged or hostile. Opening raises this and no other exception type for anything
                found in the folder (not sqlite3, FAISS or JSON errors), so a caller can catch it and carry on
                without references.

        """
        root = Path(path)
        meta = read_meta(root)
        recorded = meta["embedder"]
        embedder = _load_embedder(root / "library.json", recorded["name"], embedder, embedder_kwargs)
        got = _embedder_info(embedder)
        if got != recorded:
            raise LibraryError(
                f"{root}: built with embedder {_short(recorded['name'])} version {_short(recorded['version'])} "
                f"(dim {recorded['dim']}), not {got['name']!r} version {got['version']!r} (dim {got['dim']}); "
                "query with the recorded embedder or rebuild the library with `rnr index build --overwrite`"
            )
        db_path = root / "entries.sqlite"
        try:
            _check_own_file(root, db_path)
        except FileNotFoundError:
            raise LibraryError(f"{db_path}: missing; {REBUILD}") from None
        try:
            lib = cls(root, meta, embedder)
        except sqlite3.Error as e:
            raise LibraryError(f"{db_path}: cannot be opened ({_one_line(e)}); {REBUILD}") from None
        try:
            lib._load()
        except BaseException:
            lib.close()
            raise
        return lib

    @_guarded
    def _load(self) -> None:
        with self._lock:
            found = _schema_of(self._db)
            want = _expected_schema()
            if found != want:
                odd = [f"unexpected {t} {n}" for t, n, _, _ in sorted(found - want)]
                odd += [f"missing or altered table {n}" for t, n, _, _ in sorted(want - found) if t == "table"]
                raise self._corrupt(f"its schema is not the one reason-restore writes ({', '.join(odd[:3])})")
            self._refresh()

    def close(self) -> None:
        """Close the SQLite connection; the object is unusable afterwards."""
        with self._lock:
            self._db.close()

    def __enter__(self) -> ReferenceLibrary:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ReferenceLibrary({str(self.root)!r}, entries={len(self)}, embedder={self.embedder_tag!r})"

    # ----- properties

    @property
    def index_type(self) -> str:
        """``"flat"``, ``"ivf"`` or ``"hnsw"``."""
        return self._meta["index"]["type"]

    @property
    def index_params(self) -> dict[str, Any]:
        """The index parameters recorded at creation."""
        return dict(self._meta["index"]["params"])

    @property
    def embedder_tag(self) -> str:
        """``name@version`` of the embedder, as recorded in each :class:`Reference`."""
        return f"{self.embedder.name}@{self.embedder.version}"

    @property
    def threshold(self) -> float:
        """Default relevance threshold of :meth:`search` (cosine); persisted when set."""
        return float(self._meta["threshold"])

    @threshold.setter
    @_guarded
    def threshold(self, value: float) -> None:
        value = check_threshold(value)
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._update_meta(threshold=value)
            finally:
                self._db.execute("COMMIT")

    @property
    @_guarded
    def categories(self) -> list[str]:
        """Names of the non-empty sub-libraries, sorted."""
        with self._lock:
            self._refresh()
            return sorted(c for c, index in self._indexes.items() if index.ntotal > 0)

    @_guarded
    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM entries").fetchone()[0])

    @_guarded
    def counts(self) -> dict[str, int]:
        """Entries per category."""
        with self._lock:
            rows = self._db.execute("SELECT category, COUNT(*) FROM entries GROUP BY category ORDER BY category")
            return {c: int(n) for c, n in rows}

    def info(self) -> dict[str, Any]:
        """``library.json`` plus entry counts, for display."""
        return {**self._meta, "root": str(self.root), "entries": len(self), "categories": self.counts()}

    # ----- adding

    @_guarded
    def add(
        self,
        items: Sequence[str | os.PathLike | np.ndarray | LoadedImage],
        category: str = DEFAULT_CATEGORY,
        ids: Sequence[str] | None = None,
        *,
        max_pixels: int | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> AddResult:
        """Embed and add images to a sub-library; bad inputs and duplicates are reported, not fatal.

        Args:
            items: Image files, ``LoadedImage``s, or arrays (``float32 HxWx3 RGB in [0, 1]``, or what
                :func:`reasoner.imageio.from_array` accepts); arrays are stored as 8-bit PNGs under ``images/``.
            category: Sub-library to add to (created on first use).
            ids: One id per item; default: the first 16 hex digits of the image's SHA-256.
            max_pixels: Refuse files with more pixels than this (see :func:`reasoner.imageio.load_image`).
            progress: Called as ``progress(done, total)`` after each input.

        Returns:
            The ids added, in input order, with ``.duplicates`` (skipped: same SHA-256 already present, in any
            category) and ``.errors`` (one line per unusable input, e.g. a corrupt file or a taken id).

        Raises:
            LibraryError: For a bad category name, ``ids`` of the wrong length, or a damaged library.
            DiskFullError: The disk filled up; the library is left as it was.

        """
        check_category(category)
        if ids is not None and len(ids) != len(items):
            raise LibraryError(f"got {len(ids)} ids for {len(items)} items; give one id per item or none")
        result = AddResult()
        pending: list[_Pending] = []
        vectors: list[np.ndarray] = []
        seen: dict[str, str] = {}  # sha256 -> id, within this call
        taken: set[str] = set()
        batch: list[tuple[_Pending, np.ndarray]] = []

        def flush() -> None:
            try:
                good, vecs = [p for p, _ in batch], self._embed([px for _, px in batch])
            except ValueError:  # isolate the input the embedder refuses; keep the rest of the batch
                good, rows = [], []
                for p, px in batch:
                    try:
                        rows.append(self._embed([px]))
                        good.append(p)
                    except ValueError as e:
                        result.errors.append(f"{p.shown}: cannot embed ({e})")
                        seen.pop(p.sha256, None)
                        taken.discard(p.id)
                vecs = np.concatenate(rows) if rows else None
            if good:
                pending.extend(good)
                vectors.append(vecs)
            batch.clear()

        for i, item in enumerate(items):
            try:
                entry, pixels = self._prepare(item, i, None if ids is None else ids[i], max_pixels)
            except ImageLoadError as e:
                result.errors.append(str(e))
            else:
                existing = seen.get(entry.sha256) or self._id_for_sha(entry.sha256)
                if existing is not None:
                    result.duplicates.append((entry.shown, existing))
                elif entry.id in taken or self._has_id(entry.id):
                    result.errors.append(f"{entry.shown}: id {entry.id!r} is already taken; pass another id")
                else:
                    seen[entry.sha256] = entry.id
                    taken.add(entry.id)
                    batch.append((entry, pixels))
                    if len(batch) >= _BATCH:
                        flush()
            if progress is not None:
                progress(i + 1, len(items))
        if batch:
            flush()
        if pending:
            added = self._commit(category, pending, np.concatenate(vectors), result)
            result.extend(added)
        return result

    def _prepare(self, item: Any, i: int, given_id: str | None, max_pixels: int | None) -> tuple[_Pending, np.ndarray]:
        png = None
        if isinstance(item, str | os.PathLike):
            loaded = load_image(item, max_pixels=max_pixels)
        elif isinstance(item, LoadedImage) and item.path is not None and Path(item.path).is_file():
            loaded = item
        elif isinstance(item, LoadedImage | np.ndarray):
            # Stored as an 8-bit PNG; the entry is that file (its hash, its pixels), as if it had been added as one.
            pixels = item.pixels if isinstance(item, LoadedImage) else from_array(item, name=f"<array {i}>").pixels
            rgb8 = to_uint8(pixels)
            ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb8, cv2.COLOR_RGB2BGR))
            if not ok:
                raise ImageLoadError(f"<array {i}>", "PNG encoding failed")
            png = buf.tobytes()
            sha = hashlib.sha256(png).hexdigest()
            loaded = LoadedImage(rgb8.astype(np.float32) / np.float32(255.0), None, sha, "RGB", 8, False)
        else:
            raise ImageLoadError(f"<item {i}>", f"unsupported input type {type(item).__name__}; pass a path or array")
        shown = loaded.path or f"<array {i}>"
        entry_id = given_id if given_id is not None else loaded.sha256[:16]
        if not isinstance(entry_id, str) or not _ID_RE.fullmatch(entry_id):
            raise ImageLoadError(shown, f"bad id {entry_id!r}: use 1-128 letters, digits or '_.:@+/-'")
        path = f"images/{loaded.sha256[:32]}.png" if png is not None else self._stored_path(Path(loaded.path))
        entry = _Pending(entry_id, path, loaded.sha256, loaded.width, loaded.height, shown, png)
        return entry, loaded.pixels

    def _stored_path(self, path: Path) -> str:
        resolved = path.resolve()
        try:
            return resolved.relative_to(self.root.resolve()).as_posix()
        except ValueError:
            return str(resolved)

    def _embed(self, images: list[np.ndarray]) -> np.ndarray:
        vecs = np.asarray(self.embedder.embed(images), dtype=np.float32)
        if vecs.shape != (len(images), self.embedder.dim):
            raise LibraryError(f"embedder {self.embedder_tag} returned shape {vecs.shape}, not {len(images)} x dim")
        if not np.isfinite(vecs).all():
            raise LibraryError(f"embedder {self.embedder_tag} returned non-finite (NaN or infinite) values")
        return np.ascontiguousarray(vecs)

    def _commit(self, category: str, pending: list[_Pending], vecs: np.ndarray, result: AddResult) -> list[str]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")  # the write lock: one writer at a time across processes
            try:
                self._refresh(locked=True)
                self._remove_stale_files()  # safe only here: no other writer can be between write and commit
                keep = []
                for j, p in enumerate(pending):  # another process may have added the same image meanwhile
                    existing = self._id_for_sha(p.sha256)
                    if existing is not None:
                        result.duplicates.append((p.shown, existing))
                    elif self._has_id(p.id):
                        result.errors.append(f"{p.shown}: id {p.id!r} is already taken; pass another id")
                    else:
                        keep.append(j)
                if not keep:
                    self._db.execute("ROLLBACK")
                    return []
                pending, vecs = [pending[j] for j in keep], vecs[keep]
                for p in pending:
                    if p.png is not None:
                        (self.root / "images").mkdir(exist_ok=True)
                        _atomic_write(self.root / p.path, p.png)
                index = self._indexes.get(category)
                start = 0 if index is None else int(index.ntotal)
                index = self._grow(index, vecs)
                gen = self._generation + 1
                name = f"index.{category}.{gen}.faiss"
                _atomic_write(self.root / name, faiss.serialize_index(index).tobytes())
                now = _now()
                self._db.executemany(
                    "INSERT INTO entries VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        (p.id, p.path, category, p.sha256, p.width, p.height, now, start + j)
                        for j, p in enumerate(pending)
                    ],
                )
                self._db.execute(
                    "INSERT OR REPLACE INTO indexes VALUES (?, ?, ?, ?)",
                    (category, name, int(index.ntotal), index_kind(index)),
                )
                self._db.execute("UPDATE meta SET value = ? WHERE key = 'generation'", (str(gen),))
                self._update_meta(updated=now)
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    try:
                        self._db.execute("ROLLBACK")
                    except sqlite3.Error:
                        pass  # a damaged file fails the rollback too; the original error says more
                self._generation = -1  # reload from disk next time; the in-memory index may hold rolled-back rows
                raise
            self._indexes[category] = index
            self._generation = gen
            return [p.id for p in pending]

    def _grow(self, index: faiss.Index | None, vecs: np.ndarray) -> faiss.Index:
        return grow_index(index, vecs, self.embedder.dim, self.index_type, self.index_params)

    # ----- reading

    def _refresh(self, locked: bool = False) -> None:
        """Reload the indexes if another writer (or a failed write) changed them since they were loaded."""
        with self._lock:
            gen = self._stored_generation()
            if gen == self._generation:
                return
            for attempt in range(3):
                layout = self._layout()
                try:
                    indexes = {c: self._read_index(f, n) for c, (f, n) in layout.items()}
                    break
                except FileNotFoundError as e:  # a writer replaced the file between our two reads
                    if locked or attempt == 2:
                        raise LibraryError(f"{e.filename or e}: missing, though entries.sqlite names it; {REBUILD}")
                    gen = self._stored_generation()
            self._indexes, self._generation = indexes, gen
            self._files = {c: f for c, (f, _) in layout.items()}

    def _stored_generation(self) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
        if row is None or not isinstance(row[0], str) or not re.fullmatch(r"[0-9]{1,18}", row[0]):
            raise self._corrupt("its meta table has no valid generation")
        return int(row[0])

    def _layout(self) -> dict[str, tuple[str, int]]:
        """Category -> (index file, ntotal), checked against the entries: rows ``0..ntotal-1``, once each."""
        rows = self._db.execute("SELECT category, file, ntotal, kind FROM indexes").fetchall()
        stats = {
            r[0]: r[1:]
            for r in self._db.execute(
                "SELECT category, COUNT(*), MIN(row), MAX(row), SUM(typeof(row) != 'integer') FROM entries "
                "GROUP BY category"
            )
        }
        out = {}
        for cat, file, ntotal, kind in rows:
            if not isinstance(cat, str) or not _CATEGORY_RE.fullmatch(cat):
                raise self._corrupt(f"its indexes table names a bad category {_short(cat)}")
            if not isinstance(file, str) or not re.fullmatch(rf"index\.{re.escape(cat)}\.[0-9]{{1,18}}\.faiss", file):
                raise self._corrupt(f"category {cat!r} names index file {_short(file)}, not index.{cat}.<n>.faiss")
            if isinstance(ntotal, bool) or not isinstance(ntotal, int) or not 0 <= ntotal <= _MAX_ROWS:
                raise self._corrupt(f"category {cat!r} has a bad vector count {_short(ntotal)}")
            if kind not in _KINDS[self.index_type]:
                built = f"a {self.index_type!r} library never builds"
                raise self._corrupt(f"category {cat!r} has index kind {_short(kind)}, which {built}")
            n, lo, hi, odd = stats.pop(cat, (0, None, None, 0))
            if n != ntotal or (n and (odd or lo != 0 or hi != n - 1)):
                rows_seen = f" (rows {_short(lo)}-{_short(hi)})" if n else ""
                raise self._corrupt(
                    f"category {cat!r} has {n} entries{rows_seen} but its index {file} holds {ntotal} vectors"
                )
            out[cat] = (file, ntotal)
        if stats:
            raise self._corrupt(f"entries of category {_short(next(iter(stats)))} have no index")
        return out

    def _read_index(self, name: str, ntotal: int) -> faiss.Index:
        path = self.root / name
        _check_own_file(self.root, path)
        try:
            return read_index(path, self.embedder.dim, ntotal, self.index_params, self.index_type)
        except ValueError as e:
            raise LibraryError(f"{e}; {REBUILD}") from None

    def _corrupt(self, problem: str) -> LibraryError:
        return LibraryError(f"{self.root / 'entries.sqlite'}: {problem}; {REBUILD}")

    def _db_error(self, err: sqlite3.Error) -> Exception:
        """The one-line error for a SQLite failure, naming the fix for its cause."""
        path = self.root / "entries.sqlite"
        text = _one_line(err)
        low = text.lower()
        if "disk is full" in low:
            return DiskFullError(path)
        if "locked" in low or "busy" in low:
            return LibraryError(f"{path}: {text}; another process is writing to the library, try again")
        if "readonly" in low or "read-only" in low or "unable to open" in low:
            return LibraryError(f"{path}: {text}; check the permissions of the library folder")
        if "closed database" in low:
            return LibraryError(f"{self.root}: the library was closed; open it again")
        return LibraryError(f"{path}: {text}; {REBUILD}")

    def _id_for_sha(self, sha: str) -> str | None:
        row = self._db.execute("SELECT id FROM entries WHERE sha256 = ?", (sha,)).fetchone()
        return None if row is None else row[0]

    def _has_id(self, entry_id: str) -> bool:
        return self._db.execute("SELECT 1 FROM entries WHERE id = ?", (entry_id,)).fetchone() is not None

    def query_vector(self, image: str | os.PathLike | np.ndarray | LoadedImage) -> np.ndarray:
        """The ``float32 (dim,)`` embedding of an image (path, LoadedImage or ``HxWx3`` array) or a vector."""
        if isinstance(image, LoadedImage):
            pixels = image.pixels
        elif isinstance(image, str | os.PathLike):
            pixels = load_image(image).pixels
        else:
            a = np.asarray(image)
            if a.ndim == 1 or (a.ndim == 2 and a.shape[0] == 1 and a.shape[1] == self.embedder.dim):
                v = a.reshape(-1).astype(np.float32)
                if v.size != self.embedder.dim:
                    raise LibraryError(
                        f"query vector has {v.size} values; this library's vectors have {self.embedder.dim}"
                    )
                if not np.isfinite(v).all():
                    raise LibraryError("query vector has non-finite (NaN or infinite) values; pass a finite embedding")
                return v
            pixels = from_array(a, name="<query>").pixels
        return self._embed([pixels])[0]

    @_guarded
    def search(
        self,
        image_or_vector: str | os.PathLike | np.ndarray | LoadedImage,
        k: int = 5,
        category: str | Sequence[str] | None = None,
        threshold: float | None = None,
    ) -> list[Reference]:
        """Return up to ``k`` references most similar to the query, best first, none scoring below the threshold.

        Every score returned is finite: an index that yields NaN or infinite scores is refused, not ranked.

        Args:
            image_or_vector: An image (path, ``LoadedImage``, ``HxWx3`` array) or an embedding of length ``dim``.
            k: How many references at most.
            category: Search one sub-library, several, or all (``None``); unknown names are an error.
            threshold: Minimum cosine score; default :attr:`threshold`; ``float("-inf")`` keeps every match.

        Raises:
            LibraryError: For an unknown category, a vector of the wrong length or not finite, an embedder that
                returns non-finite values, or library files damaged since :meth:`open` (never a sqlite3 or FAISS
                error), so a caller can catch it and carry on without references.
            ImageLoadError: For an unreadable query file.

        """
        if k < 1:
            raise LibraryError(f"k must be at least 1, got {k}")
        limit = self.threshold if threshold is None else float(threshold)
        if math.isnan(limit):
            raise LibraryError("threshold is NaN; pass a number (float('-inf') keeps every match)")
        q = self.query_vector(image_or_vector).reshape(1, -1)
        with self._lock:
            self._refresh()
            names = self._select(category)
            hits: list[tuple[float, str, int]] = []
            for cat in names:
                index = self._indexes[cat]
                if index.ntotal == 0:
                    continue
                try:
                    scores, rows = index.search(q, min(k, int(index.ntotal)))
                except RuntimeError as e:
                    raise LibraryError(f"{self.root / self._files[cat]}: search failed ({_one_line(e)}); {REBUILD}")
                found = rows[0] >= 0
                if not np.isfinite(scores[0][found]).all():
                    raise LibraryError(
                        f"{self.root / self._files[cat]}: gave non-finite scores (NaN or infinite vectors); {REBUILD}"
                    )
                hits += [(float(s), cat, int(r)) for s, r in zip(scores[0], rows[0], strict=True) if r >= 0]
            hits = sorted((h for h in hits if h[0] >= limit), key=lambda h: -h[0])[:k]
            out = []
            for rank, (score, cat, row) in enumerate(hits, start=1):
                entry = self._db.execute(
                    "SELECT id, path FROM entries WHERE category = ? AND row = ?", (cat, row)
                ).fetchone()
                if entry is None or not all(isinstance(v, str) and v for v in entry):
                    raise self._corrupt(f"row {row} of category {cat!r} has no usable entry (id and path)")
                out.append(
                    Reference(
                        id=entry[0],
                        path=str(self._absolute(entry[1])),
                        score=score,
                        rank=rank,
                        category=cat,
                        embedder=self.embedder_tag,
                    )
                )
            return out

    def _select(self, category: str | Sequence[str] | None) -> list[str]:
        if category is None:
            return sorted(self._indexes)
        names = [category] if isinstance(category, str) else list(category)
        unknown = [c for c in names if c not in self._indexes]
        if unknown:
            have = sorted(self._indexes) or "none yet"
            raise LibraryError(f"{self.root}: no category {unknown[0]!r}; categories: {have}")
        return names

    def _absolute(self, stored: str) -> Path:
        p = Path(stored)
        return p if p.is_absolute() else self.root / p

    @_guarded
    def get(self, entry_id: str) -> dict[str, Any]:
        """The metadata row of one entry (id, path, category, sha256, width, height, added_at, row)."""
        with self._lock:
            cur = self._db.execute("SELECT * FROM entries WHERE id = ?", (entry_id,))
            row = cur.fetchone()
            if row is None:
                raise LibraryError(f"{self.root}: no entry {entry_id!r}")
            return dict(zip([c[0] for c in cur.description], row, strict=True))

    @_guarded
    def load_pixels(self, ref: Reference | str, *, verify: bool = True) -> np.ndarray:
        """Read a reference image: ``float32 HxWx3 RGB in [0, 1]``.

        A stored path inside the library folder must stay inside it (a symlink leading out is refused), and one
        outside must still be the real path it was indexed at; FIFOs and devices are refused without being opened.

        Args:
            ref: A search result or an entry id.
            verify: Refuse a file whose SHA-256 no longer matches the indexed one (its embedding would be stale).

        Raises:
            ImageLoadError: If the file is gone, unreadable, not a regular file, led elsewhere by a symlink, or
                changed since it was indexed (one line).

        """
        entry = self.get(ref.id if isinstance(ref, Reference) else ref)
        stored = entry["path"]
        if not isinstance(stored, str) or not stored or "\x00" in stored:
            problem = f"entry {_short(entry['id'])} has no usable path; {REBUILD}"
            raise ImageLoadError(str(self.root / "entries.sqlite"), problem)
        path = self._absolute(stored)
        real = os.path.realpath(path)
        if not Path(stored).is_absolute():
            if not _inside(path, self.root):
                problem = f"leads to {real}, outside the library folder; not followed (add the image again)"
                raise ImageLoadError(str(path), problem)
        elif real != os.path.normpath(stored):  # stored paths are resolved when added: a symlink appeared since
            raise ImageLoadError(str(path), f"is now a symlink to {real}; not followed (add the image again)")
        loaded = load_image(path)
        if verify and loaded.sha256 != entry["sha256"]:
            raise ImageLoadError(str(path), "changed since it was indexed (SHA-256 differs); add it again")
        return loaded.pixels

    # ----- persistence helpers

    def _update_meta(self, **changes: Any) -> None:
        """Apply ``changes`` to ``library.json`` as on disk (another process may have changed it); needs the lock."""
        try:
            on_disk = read_meta(self.root)
        except LibraryError:
            on_disk = self._meta
        self._meta = {**on_disk, **changes}
        self._write_meta()

    def _write_meta(self) -> None:
        _atomic_write(self.root / "library.json", (json.dumps(self._meta, indent=2) + "\n").encode())

    def _remove_stale_files(self) -> None:
        """Delete index files no committed state names (left by a crash, or replaced); call under the write lock.

        Only regular files with the names this module writes go; anything else in the folder is someone else's.
        """
        live = {r[0] for r in self._db.execute("SELECT file FROM indexes")}
        for p in self.root.iterdir():
            stale = (_INDEX_FILE_RE.fullmatch(p.name) and p.name not in live) or _TMP_RE.fullmatch(p.name)
            if stale and _is_regular(p):
                p.unlink(missing_ok=True)
