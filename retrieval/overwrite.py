"""Replacing a library in place (``rnr index build --overwrite``) without deleting anything it did not write.

Only files a library wrote (:func:`library_files`) may be deleted: the reference photos a library was built from
often live in the same folder, and a file that merely has a library file's name is in the way, never removed.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import stat
from pathlib import Path

from retrieval.storage import (
    DB_FILES,
    FORMAT,
    IMAGE_RE,
    IMAGE_TMP_RE,
    INDEX_FILE_RE,
    META_MAX_BYTES,
    TMP_RE,
    LibraryError,
    is_regular,
    read_small,
    short,
)


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
        ours = n == "library.json" or n in DB_FILES or INDEX_FILE_RE.fullmatch(n) or TMP_RE.fullmatch(n)
        if ours and is_regular(p):
            out.append(p)
    images = root / "images"
    if images.is_dir() and not images.is_symlink():
        for p in sorted(images.iterdir()):
            m = IMAGE_RE.fullmatch(p.name)
            if not is_regular(p):
                continue
            if (m and _sha256_of(p)[:32] == m.group(1)) or IMAGE_TMP_RE.fullmatch(p.name):
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
    if not owned & {"library.json", "entries.sqlite"} and not any(INDEX_FILE_RE.fullmatch(n) for n in owned):
        raise LibraryError(f"{root}: not a reference library (no library.json); pick another folder")
    if "library.json" in owned:
        try:
            fmt = json.loads(read_small(root, root / "library.json", META_MAX_BYTES)).get("format", FORMAT)
        except (LibraryError, OSError, ValueError, RecursionError, AttributeError):
            fmt = FORMAT  # a damaged library.json of ours: exactly what an overwrite is for
        if fmt != FORMAT:
            raise LibraryError(
                f"{root / 'library.json'}: belongs to something else (format {short(fmt)}), not a reference "
                "library; pick another folder"
            )
    for p in sorted(root.iterdir()):
        reserved = p.name in ("library.json", *DB_FILES) or INDEX_FILE_RE.fullmatch(p.name)
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
