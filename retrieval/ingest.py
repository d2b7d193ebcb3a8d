"""What :meth:`~retrieval.library.ReferenceLibrary.add` does with its inputs before writing anything.

Each input is loaded (or, for an in-memory array, encoded as the 8-bit PNG it will be stored as), hashed, given an
id, checked against the library and the rest of the call for duplicates and taken ids, and embedded in batches.
An input that cannot be used is reported as one line and skipped, so one bad photo never costs the others.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from reasoner.imageio import ImageLoadError, LoadedImage, from_array, load_image, to_uint8

ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:@+/-]{0,127}")
_BATCH = 16


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
class PendingEntry:
    """An input ready to be written: its entries row (less category and row) and what to report it as."""

    id: str
    path: str
    sha256: str
    width: int
    height: int
    shown: str
    png: bytes | None  # file to write under images/ when the input was an in-memory array


def prepare_entry(
    item: Any, i: int, given_id: str | None, max_pixels: int | None, root: Path
) -> tuple[PendingEntry, np.ndarray]:
    """The entry for input ``i`` of an add call and its ``float32 HxWx3 RGB in [0, 1]`` pixels.

    Raises:
        ImageLoadError: For an unreadable file, an unsupported input type or a bad id (one line).

    """
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
    if not isinstance(entry_id, str) or not ID_RE.fullmatch(entry_id):
        raise ImageLoadError(shown, f"bad id {entry_id!r}: use 1-128 letters, digits or '_.:@+/-'")
    path = f"images/{loaded.sha256[:32]}.png" if png is not None else _stored_path(Path(loaded.path), root)
    entry = PendingEntry(entry_id, path, loaded.sha256, loaded.width, loaded.height, shown, png)
    return entry, loaded.pixels


def _stored_path(path: Path, root: Path) -> str:
    """Relative to the library folder when inside it (the folder may move), else the resolved absolute path."""
    resolved = path.resolve()
    try:
        return resolved.relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(resolved)


def collect(
    items: Sequence[Any],
    ids: Sequence[str] | None,
    *,
    root: Path,
    embed: Callable[[list[np.ndarray]], np.ndarray],
    existing_id: Callable[[str], str | None],
    id_taken: Callable[[str], bool],
    max_pixels: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[AddResult, list[PendingEntry], np.ndarray | None]:
    """Prepare, deduplicate and embed the inputs of an add call.

    Args:
        items: The inputs, as :meth:`ReferenceLibrary.add` takes them.
        ids: One id per item, or None for ids from the SHA-256.
        root: The library folder (paths inside it are stored relative to it).
        embed: Embeds a batch of images as ``float32 (n, dim)``; a ValueError costs only the input it is about.
        existing_id: The id of the library's entry with a SHA-256, or None.
        id_taken: Whether the library already has an entry with an id.
        max_pixels: Refuse files with more pixels than this.
        progress: Called as ``progress(done, total)`` after each input.

    Returns:
        The result so far (duplicates and errors, no ids yet), the entries to write and their vectors (None when
        there are none), in input order.

    """
    result = AddResult()
    pending: list[PendingEntry] = []
    vectors: list[np.ndarray] = []
    seen: dict[str, str] = {}  # sha256 -> id, within this call
    taken: set[str] = set()
    batch: list[tuple[PendingEntry, np.ndarray]] = []

    def flush() -> None:
        try:
            good, vecs = [p for p, _ in batch], embed([px for _, px in batch])
        except ValueError:  # isolate the input the embedder refuses; keep the rest of the batch
            good, rows = [], []
            for p, px in batch:
                try:
                    rows.append(embed([px]))
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
            entry, pixels = prepare_entry(item, i, None if ids is None else ids[i], max_pixels, root)
        except ImageLoadError as e:
            result.errors.append(str(e))
        else:
            existing = seen.get(entry.sha256) or existing_id(entry.sha256)
            if existing is not None:
                result.duplicates.append((entry.shown, existing))
            elif entry.id in taken or id_taken(entry.id):
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
    return result, pending, np.concatenate(vectors) if vectors else None
