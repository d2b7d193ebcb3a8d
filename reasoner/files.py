"""File-safety helpers shared by every package: atomic writes, special-file refusal, full disks, secret masking.

Standard library only, so the lowest layers can use them. Every error here is one line naming the path.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import shutil
import stat
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit


class DiskFullError(OSError):
    """No space left where a file was being written; ``str(err)`` names the path and the space needed."""

    def __init__(self, path: str | os.PathLike, needed: int | None = None) -> None:
        path = os.fspath(path)
        need = f"; about {_human(needed)} more needed" if needed else ""
        free = _free(path)
        have = f" ({_human(free)} free)" if free is not None else ""
        super().__init__(errno.ENOSPC, f"no space left on the device holding {path}{have}{need}; free space and "
                         "run again (--resume continues a batch)")  # fmt: skip
        self.path = path
        self.needed = needed

    def __str__(self) -> str:
        return self.strerror

    def __reduce__(self):  # pickles across worker processes
        return (DiskFullError, (self.path, self.needed))


def _human(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"  # pragma: no cover


def _free(path: str) -> int | None:
    p = Path(path)
    for q in (p, *p.parents):
        try:
            return shutil.disk_usage(q).free
        except OSError:
            continue
    return None


def is_disk_full(err: BaseException) -> bool:
    """Whether ``err`` is a full disk (or quota) error."""
    return isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary sibling and ``os.replace``: the file is complete or absent.

    Raises:
        DiskFullError: The device is full; the temporary file is removed and ``path`` is left as it was.

    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        # os.open with 0o666 lets the umask decide the final permissions, as a plain open() would (mkstemp's are 0600).
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    except OSError as e:
        if is_disk_full(e):
            raise DiskFullError(path, len(data)) from None
        raise
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if is_disk_full(e):
            raise DiskFullError(path, len(data)) from None
        raise
    return path


def special_file_reason(path: str | os.PathLike) -> str | None:
    """Why ``path`` must not be opened (a FIFO, socket or device would block or stream), or None for anything else.

    Uses ``stat`` only, which never blocks, so it is safe to call before any read.
    """
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None  # missing or unreadable: the reader reports that in its own words
    if stat.S_ISFIFO(mode):
        return "is a FIFO (named pipe), not a regular file; pass an image file"
    if stat.S_ISSOCK(mode):
        return "is a socket, not a regular file; pass an image file"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "is a device, not a regular file; pass an image file"
    return None


def planted_reason(path: str | os.PathLike) -> str | None:
    """Why ``path``, a file or folder a program keeps for itself (a manifest, a lock), is not one it made, or None.

    A symlink (writing would go through it to wherever it points, reading would leave the folder), or something
    other than a regular file: a folder, FIFO, socket or device (opening a FIFO blocks). None when it is absent or a
    regular file. Uses ``lstat`` only, so it never blocks.
    """
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        return None
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISLNK(mode):
        return f"is a symlink (to {os.readlink(path)})"
    if stat.S_ISDIR(mode):
        return "is a folder"
    return "is a FIFO, socket or device"


#: Query parameters whose values are secrets wherever a URL is shown or recorded.
_SECRET_KEYS = re.compile(r"pass|pwd|token|secret|key|auth|cred|sig", re.IGNORECASE)


def redact_url(url: str) -> str:
    """``url`` with its password (``user:password@``) and secret-looking query values replaced by ``***``.

    >>> redact_url("postgres://rnr:hunter2@db:5432/rnr?sslmode=require&password=x")
    'postgres://rnr:***@db:5432/rnr?sslmode=require&password=***'
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return "***"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        user, sep, _ = userinfo.partition(":")
        netloc = f"{user}:***@{host}" if sep else netloc
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, "***" if _SECRET_KEYS.search(k) else v) for k, v in pairs], safe="*")
    return urlunsplit(parts._replace(netloc=netloc, query=query))
