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


class RunLockedError(RuntimeError):
    """Another live process holds the folder; ``str(err)`` is one line naming it and its pid."""


class RunLock:
    """``with RunLock(out):`` holds ``out`` for this process or raises :class:`RunLockedError`."""

    def __init__(self, out: str | os.PathLike) -> None:
        self.out = Path(out)
        self.path = self.out / ".rnr" / "lock"
        self.fd: int | None = None

    def acquire(self) -> RunLock:
        """Take the lock, or raise :class:`RunLockedError` naming the holder's pid."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _holder(fd)
                os.close(fd)
                who = f"pid {holder.get('pid', '?')}"
                who += f", started {holder['started']}" if "started" in holder else ""
                raise RunLockedError(
                    f"{self.out}: another rnr run is writing here ({who}); wait for it to finish or pick another --out"
                ) from None
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


def _holder(fd: int) -> dict:
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode("utf-8", "replace") or "{}")
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}
