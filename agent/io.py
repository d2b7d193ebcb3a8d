"""Atomic text and JSON Lines files (on :func:`reasoner.files.write_bytes_atomic`): complete or absent, never torn."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from reasoner.files import write_bytes_atomic


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically, creating the parent folder.

    Raises:
        DiskFullError: The device is full; ``path`` is left as it was.

    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_jsonl_atomic(path: str | Path, rows: Iterable[dict]) -> Path:
    """Write ``rows`` as JSON Lines to ``path`` atomically."""
    return write_text_atomic(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
