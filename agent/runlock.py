"""One writer per output folder: an exclusive ``flock`` on ``OUT/.rnr/lock``.

The kernel drops the lock when its holder dies, however it dies (``kill -9`` included), so a stale lock never blocks
a later run; the file's content (pid, start time, command) is only there to name the holder in the refusal. Worker
processes close their inherited copy, so the lock lives exactly as long as the driver.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no flock; runs are not protected against each other there
    fcntl = None


#: Folders a run keeps under ``.rnr`` (checked with the lock: a symlink there would take the run's writes elsewhere).
KEPT_FOLDERS = ("work", "previews")


class RunLockedError(RuntimeError):
    """Another live process holds the folder; ``str(err)`` is one line naming it and its pid."""


class RunLock:
    """``with RunLock(out):`` holds ``out`` for this process or raises :class:`RunLockedError`."""

    def __init__(self, out: str | os.PathLike) -> None:
        self.out = Path(out)
        self.path = self.out / ".rnr" / "lock"
        self.fd: int | None = None

    def acquire(self) -> RunLock:
        """Take the lock, or raise :class:`RunLockedError` naming the holder's pid.

        Raises:
            RunLockedError: Another live run holds ``out``.
            FileExistsError: ``.rnr`` or a file or folder the run keeps in it is a symlink, or the lock is not a
                regular file: a run never writes through a link or into a FIFO planted there (one line naming it).

        """
        from reasoner.files import planted_reason

        for p in (self.path.parent, *(self.path.parent / d for d in KEPT_FOLDERS), self.path):
            why = planted_reason(p)
            if why and (p == self.path or why != "is a folder"):  # the folders may be folders, nothing else may
                raise FileExistsError(f"{p}: {why}, not what rnr keeps there; move it out of the way and run again")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)
        fd = os.open(self.path, flags, 0o644)
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _holder(fd)
                os.close(fd)
                raise RunLockedError(_refusal(self.out, holder)) from None
        info = {"pid": os.getpid(), "started": time.strftime("%Y-%m-%d %H:%M:%S"), "argv": sys.argv[:8]}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        self.fd = fd
        return self

    def release(self) -> None:
        """Drop the lock (closing the file releases the flock)."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def check_free(out: str | os.PathLike) -> None:
    """Raise :class:`RunLockedError` if a live run holds ``out`` now; creates nothing (for checks before the lock)."""
    from reasoner.files import planted_reason

    path = Path(out) / ".rnr" / "lock"
    if fcntl is None or planted_reason(path):
        return  # no lock to probe; RunLock.acquire refuses a planted one
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        raise RunLockedError(_refusal(Path(out), _holder(fd))) from None
    finally:
        os.close(fd)


def _refusal(out: Path, holder: dict) -> str:
    who = f"pid {holder.get('pid', '?')}"
    who += f", started {holder['started']}" if "started" in holder else ""
    return f"{out}: another rnr run is writing here ({who}); wait for it to finish or pick another --out"


def _holder(fd: int) -> dict:
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode("utf-8", "replace") or "{}")
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}
