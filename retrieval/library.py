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
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sqlite3
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import cv2
import faiss
import numpy as np

from reasoner.imageio import ImageLoadError, LoadedImage, from_array, load_image, to_uint8, write_bytes_atomic
from retrieval.base import Embedder, Reference
from retrieval.faiss_index import (
    INDEX_DEFAULTS,  # noqa: F401  (documented here for callers)
    INDEX_TYPES,
    IndexParamError,
    check_index_params,
    grow_index,
    index_kind,
    read_index,
)

FORMAT = "reason-restore.reference-library"
SCHEMA_VERSION = "1.0"
DEFAULT_CATEGORY = "default"
FALLBACK_THRESHOLD = 0.5
_CATEGORY_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:@+/-]{0,127}")
_BATCH = 16
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
    """A library that cannot be created, opened or used as asked; ``str(err)`` is one line naming the fix."""


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
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA busy_timeout=30000")
        self._generation = -1
        self._indexes: dict[str, faiss.Index] = {}

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
            threshold: Default relevance threshold of :meth:`search`; defaults to the embedder's
                ``default_threshold`` (0.5 when it has none).
            **index_params: ``nlist``, ``nprobe`` (ivf); ``M``, ``ef_construction``, ``ef_search`` (hnsw);
                ``nlist``, ``m``, ``nbits``, ``nprobe``, ``rerank`` (ivf-pq).

        Raises:
            LibraryError: For a non-empty folder, an unknown index type or bad parameters.

        """
        if isinstance(embedder, str):
            from retrieval.registry import load_embedder

            embedder = load_embedder(embedder)
        params = _check_index_params(index_type, index_params)
        root = Path(path)
        if root.exists() and (not root.is_dir() or any(root.iterdir())):
            what = "a reference library" if (root / "library.json").exists() else "not an empty folder"
            raise LibraryError(f"{root}: already exists and is {what}; add to it, or pick a new folder")
        if threshold is None:
            threshold = float(getattr(embedder, "default_threshold", FALLBACK_THRESHOLD))
        root.mkdir(parents=True, exist_ok=True)
        now = _now()
        meta = {
            "format": FORMAT,
            "schema_version": SCHEMA_VERSION,
            "embedder": _embedder_info(embedder),
            "index": {"type": index_type, "params": params},
            "threshold": float(threshold),
            "created": now,
            "updated": now,
        }
        lib = cls(root, meta, embedder)
        lib._db.executescript(_SCHEMA_SQL)
        lib._db.execute("INSERT OR IGNORE INTO meta VALUES ('generation', '0')")
        lib._write_meta()  # library.json last: a folder without it is not a library yet
        lib._generation = 0
        return lib

    @classmethod
    def open(
        cls, path: str | os.PathLike, embedder: Embedder | None = None, **embedder_kwargs: Any
    ) -> ReferenceLibrary:
        """Open an existing library.

        Args:
            path: The library folder.
            embedder: The embedder to query with; by default the one recorded in ``library.json`` is loaded
                (``embedder_kwargs``, such as ``device`` for ``hf:`` models, are passed to it).
            **embedder_kwargs: Constructor arguments of the recorded embedder.

        Raises:
            LibraryError: If the folder is not a library, has an unknown format or major schema version, or the
                embedder's name, version or dim differs from the recorded one.

        """
        root = Path(path)
        meta_path = root / "library.json"
        if not meta_path.is_file():
            raise LibraryError(f"{root}: not a reference library (no library.json); create one with `rnr index build`")
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError) as e:
            raise LibraryError(f"{meta_path}: unreadable ({e}); rebuild the library") from e
        fmt = meta.get("format") if isinstance(meta, dict) else None
        if fmt != FORMAT:
            raise LibraryError(f"{meta_path}: not a reason-restore reference library (format {fmt!r})")
        version = str(meta.get("schema_version", ""))
        cur_major, cur_minor = (int(p) for p in SCHEMA_VERSION.split("."))
        major, _, minor = version.partition(".")
        if not (major.isdigit() and minor.isdigit()) or int(major) != cur_major or int(minor) > cur_minor:
            raise LibraryError(
                f"{root}: library schema {meta.get('schema_version')} is not readable by this version "
                f"(reads {cur_major}.0-{SCHEMA_VERSION}); upgrade reason-restore or rebuild the library"
            )
        recorded = meta.get("embedder")
        index = meta.get("index")
        if (
            not isinstance(recorded, dict)
            or set(recorded) != {"name", "version", "dim"}
            or not isinstance(index, dict)
            or index.get("type") not in INDEX_TYPES
            or not isinstance(meta.get("threshold"), int | float)
        ):
            raise LibraryError(
                f"{meta_path}: missing or malformed embedder/index/threshold fields; rebuild the library"
            )
        if embedder is None:
            from retrieval.registry import load_embedder

            embedder = load_embedder(recorded["name"], **embedder_kwargs)
        got = _embedder_info(embedder)
        if got != recorded:
            raise LibraryError(
                f"{root}: built with embedder {recorded['name']!r} version {recorded['version']!r} "
                f"(dim {recorded['dim']}), not {got['name']!r} version {got['version']!r} (dim {got['dim']}); "
                "query with the recorded embedder or rebuild the library with `rnr index build --overwrite`"
            )
        if not (root / "entries.sqlite").is_file():
            raise LibraryError(f"{root}: entries.sqlite is missing; rebuild the library")
        lib = cls(root, meta, embedder)
        lib._refresh()
        return lib

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
    def threshold(self, value: float) -> None:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._update_meta(threshold=float(value))
            finally:
                self._db.execute("COMMIT")

    @property
    def categories(self) -> list[str]:
        """Names of the non-empty sub-libraries, sorted."""
        with self._lock:
            return [r[0] for r in self._db.execute("SELECT category FROM indexes WHERE ntotal > 0 ORDER BY category")]

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM entries").fetchone()[0])

    def counts(self) -> dict[str, int]:
        """Entries per category."""
        with self._lock:
            rows = self._db.execute("SELECT category, COUNT(*) FROM entries GROUP BY category ORDER BY category")
            return {c: int(n) for c, n in rows}

    def info(self) -> dict[str, Any]:
        """``library.json`` plus entry counts, for display."""
        return {**self._meta, "root": str(self.root), "entries": len(self), "categories": self.counts()}

    # ----- adding

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
            LibraryError: For a bad category name, or ``ids`` of the wrong length.

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
        if vecs.shape != (len(images), self.embedder.dim) or not np.isfinite(vecs).all():
            raise ValueError(f"embedder {self.embedder_tag} returned {vecs.shape} or non-finite values")
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
                    self._db.execute("ROLLBACK")
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
            gen = int(self._db.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()[0])
            if gen == self._generation:
                return
            for attempt in range(3):
                rows = self._db.execute("SELECT category, file, ntotal FROM indexes").fetchall()
                try:
                    indexes = {c: self._read_index(self.root / f, n) for c, f, n in rows}
                    break
                except FileNotFoundError:  # a writer replaced the file between our two reads
                    if locked or attempt == 2:
                        raise
                    gen = int(self._db.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()[0])
            self._indexes, self._generation = indexes, gen

    def _read_index(self, path: Path, ntotal: int) -> faiss.Index:
        try:
            return read_index(path, self.embedder.dim, ntotal, self.index_params)
        except ValueError as e:
            raise LibraryError(str(e)) from None

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
                return v
            pixels = from_array(a, name="<query>").pixels
        return self._embed([pixels])[0]

    def search(
        self,
        image_or_vector: str | os.PathLike | np.ndarray | LoadedImage,
        k: int = 5,
        category: str | Sequence[str] | None = None,
        threshold: float | None = None,
    ) -> list[Reference]:
        """Return up to ``k`` references most similar to the query, best first, none scoring below the threshold.

        Args:
            image_or_vector: An image (path, ``LoadedImage``, ``HxWx3`` array) or an embedding of length ``dim``.
            k: How many references at most.
            category: Search one sub-library, several, or all (``None``); unknown names are an error.
            threshold: Minimum cosine score; default :attr:`threshold`; ``float("-inf")`` keeps every match.

        Raises:
            LibraryError: For an unknown category or a vector of the wrong length.
            ImageLoadError: For an unreadable query file.

        """
        if k < 1:
            raise LibraryError(f"k must be at least 1, got {k}")
        q = self.query_vector(image_or_vector).reshape(1, -1)
        limit = self.threshold if threshold is None else float(threshold)
        with self._lock:
            self._refresh()
            names = self._select(category)
            hits: list[tuple[float, str, int]] = []
            for cat in names:
                index = self._indexes[cat]
                if index.ntotal == 0:
                    continue
                scores, rows = index.search(q, min(k, int(index.ntotal)))
                hits += [(float(s), cat, int(r)) for s, r in zip(scores[0], rows[0], strict=True) if r >= 0]
            hits = sorted((h for h in hits if h[0] >= limit), key=lambda h: -h[0])[:k]
            out = []
            for rank, (score, cat, row) in enumerate(hits, start=1):
                entry_id, path = self._db.execute(
                    "SELECT id, path FROM entries WHERE category = ? AND row = ?", (cat, row)
                ).fetchone()
                out.append(
                    Reference(
                        id=entry_id,
                        path=str(self._absolute(path)),
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

    def get(self, entry_id: str) -> dict[str, Any]:
        """The metadata row of one entry (id, path, category, sha256, width, height, added_at, row)."""
        with self._lock:
            cur = self._db.execute("SELECT * FROM entries WHERE id = ?", (entry_id,))
            row = cur.fetchone()
            if row is None:
                raise LibraryError(f"{self.root}: no entry {entry_id!r}")
            return dict(zip([c[0] for c in cur.description], row, strict=True))

    def load_pixels(self, ref: Reference | str, *, verify: bool = True) -> np.ndarray:
        """Read a reference image: ``float32 HxWx3 RGB in [0, 1]``.

        Args:
            ref: A search result or an entry id.
            verify: Refuse a file whose SHA-256 no longer matches the indexed one (its embedding would be stale).

        Raises:
            ImageLoadError: If the file is gone, unreadable, or changed since it was indexed.

        """
        entry = self.get(ref.id if isinstance(ref, Reference) else ref)
        path = self._absolute(entry["path"])
        loaded = load_image(path)
        if verify and loaded.sha256 != entry["sha256"]:
            raise ImageLoadError(str(path), "changed since it was indexed (SHA-256 differs); add it again")
        return loaded.pixels

    # ----- persistence helpers

    def _update_meta(self, **changes: Any) -> None:
        """Apply ``changes`` to ``library.json`` as on disk (another process may have changed it); needs the lock."""
        try:
            on_disk = json.loads((self.root / "library.json").read_text())
        except (OSError, ValueError):
            on_disk = self._meta
        self._meta = {**on_disk, **changes}
        self._write_meta()

    def _write_meta(self) -> None:
        _atomic_write(self.root / "library.json", (json.dumps(self._meta, indent=2) + "\n").encode())

    def _remove_stale_files(self) -> None:
        """Delete index files no committed state names (left by a crash, or replaced); call under the write lock."""
        live = {r[0] for r in self._db.execute("SELECT file FROM indexes")}
        for p in self.root.glob("index.*.faiss"):
            if p.name not in live:
                p.unlink(missing_ok=True)
        for p in self.root.glob(".*.tmp"):
            p.unlink(missing_ok=True)
