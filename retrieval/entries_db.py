"""A library's ``entries.sqlite``: its schema, how it is opened, and checks of its rows before they are trusted.

The file may come from someone else, so its schema must be exactly the one written here, every category's rows
must match its index file (rows ``0..ntotal-1``, once each, an index kind the library type builds), and SQLite
errors become one-line :class:`~retrieval.storage.LibraryError` messages naming the fix for their cause.
"""

from __future__ import annotations

import functools
import re
import sqlite3
from pathlib import Path

from reasoner.common import one_line
from reasoner.files import DiskFullError
from retrieval.storage import CATEGORY_RE, INDEX_FILE_RE, REBUILD, TMP_RE, LibraryError, is_regular, short

SCHEMA_SQL = """
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
#: Per library index type, what ``indexes.kind`` a category may have (ivf and ivf-pq start exact).
KINDS = {"flat": {"flat"}, "ivf": {"flat", "ivf"}, "hnsw": {"hnsw"}, "ivf-pq": {"flat", "ivf-pq"}}
_MAX_ROWS = 1 << 40  # FAISS's own bound on a vector's length


def connect(path: Path) -> sqlite3.Connection:
    """An autocommit connection to ``path`` that a hostile schema cannot use for side effects."""
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        # A hostile file's views and triggers must not reach functions with side effects.
        db.execute("PRAGMA trusted_schema=OFF")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("PRAGMA busy_timeout=30000")
    except BaseException:
        db.close()
        raise
    return db


def corrupt(root: Path, problem: str) -> LibraryError:
    """The error for a damaged ``entries.sqlite`` in the library folder ``root``."""
    return LibraryError(f"{root / 'entries.sqlite'}: {problem}; {REBUILD}")


@functools.cache
def _expected_schema() -> frozenset[tuple[str, str, str, str | None]]:
    db = sqlite3.connect(":memory:")
    try:
        db.executescript(SCHEMA_SQL)
        return frozenset(_schema_of(db))
    finally:
        db.close()


def _schema_of(db: sqlite3.Connection) -> set[tuple[str, str, str, str | None]]:
    rows = db.execute("SELECT type, name, tbl_name, sql FROM sqlite_master").fetchall()
    return {(t, n, tb, " ".join(sql.split()) if isinstance(sql, str) else sql) for t, n, tb, sql in rows}


def check_schema(db: sqlite3.Connection, root: Path) -> None:
    """Refuse an ``entries.sqlite`` whose tables, indexes, views or triggers are not exactly those written here."""
    found = _schema_of(db)
    want = _expected_schema()
    if found != want:
        odd = [f"unexpected {t} {n}" for t, n, _, _ in sorted(found - want)]
        odd += [f"missing or altered table {n}" for t, n, _, _ in sorted(want - found) if t == "table"]
        raise corrupt(root, f"its schema is not the one reason-restore writes ({', '.join(odd[:3])})")


def stored_generation(db: sqlite3.Connection, root: Path) -> int:
    """The committed generation, which every write increments (and names its index file after)."""
    row = db.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
    if row is None or not isinstance(row[0], str) or not re.fullmatch(r"[0-9]{1,18}", row[0]):
        raise corrupt(root, "its meta table has no valid generation")
    return int(row[0])


def read_layout(db: sqlite3.Connection, root: Path, index_type: str) -> dict[str, tuple[str, int]]:
    """Category -> (index file, ntotal), checked against the entries: rows ``0..ntotal-1``, once each."""
    rows = db.execute("SELECT category, file, ntotal, kind FROM indexes").fetchall()
    stats = {
        r[0]: r[1:]
        for r in db.execute(
            "SELECT category, COUNT(*), MIN(row), MAX(row), SUM(typeof(row) != 'integer') FROM entries "
            "GROUP BY category"
        )
    }
    out = {}
    for cat, file, ntotal, kind in rows:
        if not isinstance(cat, str) or not CATEGORY_RE.fullmatch(cat):
            raise corrupt(root, f"its indexes table names a bad category {short(cat)}")
        if not isinstance(file, str) or not re.fullmatch(rf"index\.{re.escape(cat)}\.[0-9]{{1,18}}\.faiss", file):
            raise corrupt(root, f"category {cat!r} names index file {short(file)}, not index.{cat}.<n>.faiss")
        if isinstance(ntotal, bool) or not isinstance(ntotal, int) or not 0 <= ntotal <= _MAX_ROWS:
            raise corrupt(root, f"category {cat!r} has a bad vector count {short(ntotal)}")
        if kind not in KINDS[index_type]:
            built = f"a {index_type!r} library never builds"
            raise corrupt(root, f"category {cat!r} has index kind {short(kind)}, which {built}")
        n, lo, hi, odd = stats.pop(cat, (0, None, None, 0))
        if n != ntotal or (n and (odd or lo != 0 or hi != n - 1)):
            rows_seen = f" (rows {short(lo)}-{short(hi)})" if n else ""
            raise corrupt(
                root, f"category {cat!r} has {n} entries{rows_seen} but its index {file} holds {ntotal} vectors"
            )
        out[cat] = (file, ntotal)
    if stats:
        raise corrupt(root, f"entries of category {short(next(iter(stats)))} have no index")
    return out


def db_error(root: Path, err: sqlite3.Error) -> Exception:
    """The one-line error for a SQLite failure on the library in ``root``, naming the fix for its cause."""
    path = root / "entries.sqlite"
    text = one_line(err, 300)
    low = text.lower()
    if "disk is full" in low:
        return DiskFullError(path)
    if "locked" in low or "busy" in low:
        return LibraryError(f"{path}: {text}; another process is writing to the library, try again")
    if "readonly" in low or "read-only" in low or "unable to open" in low:
        return LibraryError(f"{path}: {text}; check the permissions of the library folder")
    if "closed database" in low:
        return LibraryError(f"{root}: the library was closed; open it again")
    return LibraryError(f"{path}: {text}; {REBUILD}")


def remove_stale_files(db: sqlite3.Connection, root: Path) -> None:
    """Delete index files no committed state names (left by a crash, or replaced); call under the write lock.

    Only regular files with the names a library writes go; anything else in the folder is someone else's.
    """
    live = {r[0] for r in db.execute("SELECT file FROM indexes")}
    for p in root.iterdir():
        stale = (INDEX_FILE_RE.fullmatch(p.name) and p.name not in live) or TMP_RE.fullmatch(p.name)
        if stale and is_regular(p):
            p.unlink(missing_ok=True)
