"""The persistent state behind a :class:`~retrieval.library.ReferenceLibrary`: rows, indexes, crash-safe writes.

Every write goes to a fresh file (temp name, fsync, ``os.replace``) and becomes visible only when the SQLite
transaction naming it commits, so a crash leaves the previous library intact; files no committed state names are
removed by the next write. Writers hold SQLite's write lock for the whole update, so concurrent ``add`` calls
from several processes serialise instead of losing entries. Readers reload the indexes whenever the committed
generation differs from the one they loaded.
"""

from __future__ import annotations

import functools
import json
import sqlite3
import threading
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from reasoner.files import write_bytes_atomic
from retrieval import entries_db
from retrieval.faiss_index import grow_index, index_kind, read_index
from retrieval.ingest import AddResult, PendingEntry
from retrieval.storage import REBUILD, LibraryError, check_own_file, read_meta


def utc_now() -> str:
    """The current UTC time as ISO 8601 to the second, as ``library.json`` and ``entries.added_at`` record it."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def guarded(method: Callable) -> Callable:
    """Turn SQLite errors (a damaged or hostile entries.sqlite) into one-line library errors."""

    @functools.wraps(method)
    def wrapper(self: LibraryStore, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except sqlite3.Error as e:
            raise entries_db.db_error(self.root, e) from None

    return wrapper


class LibraryStore:
    """A library folder's ``entries.sqlite``, ``library.json`` and loaded FAISS indexes, read and written safely.

    Args:
        root: The library folder.
        meta: Its validated ``library.json``.
        dim: Length of its vectors.

    Raises:
        sqlite3.Error: When ``entries.sqlite`` cannot be opened.

    """

    def __init__(self, root: Path, meta: dict[str, Any], dim: int) -> None:
        self.root = root
        self._dim = dim
        self._meta = meta
        self._lock = threading.RLock()
        self._db = entries_db.connect(root / "entries.sqlite")
        self._generation = -1
        self._indexes: dict[str, faiss.Index] = {}
        self._files: dict[str, str] = {}  # category -> index file name, for messages

    @property
    def index_type(self) -> str:
        """``"flat"``, ``"ivf"``, ``"hnsw"`` or ``"ivf-pq"``."""
        return self._meta["index"]["type"]

    @property
    def index_params(self) -> dict[str, Any]:
        """The index parameters recorded at creation."""
        return dict(self._meta["index"]["params"])

    def _initialise(self) -> None:
        """Write the schema and then ``library.json``, last: a folder without it is not a library yet."""
        self._db.executescript(entries_db.SCHEMA_SQL)
        self._db.execute("INSERT OR IGNORE INTO meta VALUES ('generation', '0')")
        self._write_meta()
        self._generation = 0

    @guarded
    def _load(self) -> None:
        with self._lock:
            entries_db.check_schema(self._db, self.root)
            self._refresh()

    def close(self) -> None:
        """Close the SQLite connection; the object is unusable afterwards."""
        with self._lock:
            self._db.close()

    @guarded
    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM entries").fetchone()[0])

    @guarded
    def counts(self) -> dict[str, int]:
        """Entries per category."""
        with self._lock:
            rows = self._db.execute("SELECT category, COUNT(*) FROM entries GROUP BY category ORDER BY category")
            return {c: int(n) for c, n in rows}

    @guarded
    def get(self, entry_id: str) -> dict[str, Any]:
        """The metadata row of one entry (id, path, category, sha256, width, height, added_at, row)."""
        with self._lock:
            cur = self._db.execute("SELECT * FROM entries WHERE id = ?", (entry_id,))
            row = cur.fetchone()
            if row is None:
                raise LibraryError(f"{self.root}: no entry {entry_id!r}")
            return dict(zip([c[0] for c in cur.description], row, strict=True))

    def _commit(self, category: str, pending: list[PendingEntry], vecs: np.ndarray, result: AddResult) -> list[str]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")  # the write lock: one writer at a time across processes
            try:
                self._refresh(locked=True)
                # Safe only here: no other writer can be between its write and its commit.
                entries_db.remove_stale_files(self._db, self.root)
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
                        write_bytes_atomic(self.root / p.path, p.png)
                index = self._indexes.get(category)
                start = 0 if index is None else int(index.ntotal)
                index = grow_index(index, vecs, self._dim, self.index_type, self.index_params)
                gen = self._generation + 1
                name = f"index.{category}.{gen}.faiss"
                write_bytes_atomic(self.root / name, faiss.serialize_index(index).tobytes())
                now = utc_now()
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

    def _refresh(self, locked: bool = False) -> None:
        """Reload the indexes if another writer (or a failed write) changed them since they were loaded."""
        with self._lock:
            gen = entries_db.stored_generation(self._db, self.root)
            if gen == self._generation:
                return
            for attempt in range(3):
                layout = entries_db.read_layout(self._db, self.root, self.index_type)
                try:
                    indexes = {c: self._read_index(f, n) for c, (f, n) in layout.items()}
                    break
                except FileNotFoundError as e:  # a writer replaced the file between our two reads
                    if locked or attempt == 2:
                        raise LibraryError(f"{e.filename or e}: missing, though entries.sqlite names it; {REBUILD}")
                    gen = entries_db.stored_generation(self._db, self.root)
            self._indexes, self._generation = indexes, gen
            self._files = {c: f for c, (f, _) in layout.items()}

    def _read_index(self, name: str, ntotal: int) -> faiss.Index:
        path = self.root / name
        check_own_file(self.root, path)
        try:
            return read_index(path, self._dim, ntotal, self.index_params, self.index_type)
        except ValueError as e:
            raise LibraryError(f"{e}; {REBUILD}") from None

    def _corrupt(self, problem: str) -> LibraryError:
        return entries_db.corrupt(self.root, problem)

    def _id_for_sha(self, sha: str) -> str | None:
        row = self._db.execute("SELECT id FROM entries WHERE sha256 = ?", (sha,)).fetchone()
        return None if row is None else row[0]

    def _has_id(self, entry_id: str) -> bool:
        return self._db.execute("SELECT 1 FROM entries WHERE id = ?", (entry_id,)).fetchone() is not None

    def _update_meta(self, **changes: Any) -> None:
        """Apply ``changes`` to ``library.json`` as on disk (another process may have changed it); needs the lock."""
        try:
            on_disk = read_meta(self.root)
        except LibraryError:
            on_disk = self._meta
        self._meta = {**on_disk, **changes}
        self._write_meta()

    def _write_meta(self) -> None:
        write_bytes_atomic(self.root / "library.json", (json.dumps(self._meta, indent=2) + "\n").encode())
