"""A reference library persisted as a folder: FAISS indexes per category plus SQLite metadata, never pickle.

:class:`ReferenceLibrary` is the public face: create or open a library, add images, search it, read references
back. The pieces behind it have a module each, and their public names are importable from here as well:

- :mod:`retrieval.storage`: the folder's layout, :class:`LibraryError`, ``library.json`` validation, safe reads;
- :mod:`retrieval.entries_db`: ``entries.sqlite``'s schema and the checks of its rows;
- :mod:`retrieval.library_store`: crash-safe writes serialised across processes, reloads after other writers;
- :mod:`retrieval.ingest`: what ``add`` does with its inputs (load, hash, deduplicate, embed);
- :mod:`retrieval.overwrite`: replacing a library in place (``rnr index build --overwrite``).

A library folder may come from someone else, so everything read back is checked before use: ``library.json`` is
validated completely before any name in it is resolved (embedder names resolve through the registry only, never
as import paths), the SQLite schema and the index files are checked against what this package writes, index files
must be regular files inside the folder, and stored vectors must be finite. Whatever fails is a one-line
:class:`LibraryError` naming the file and the fix.
"""

from __future__ import annotations

import math
import os
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from reasoner.common import one_line
from reasoner.imageio import ImageLoadError, LoadedImage, from_array, load_image
from retrieval.base import Embedder, Reference
from retrieval.faiss_index import INDEX_DEFAULTS, IndexParamError, check_index_params
from retrieval.ingest import AddResult, collect
from retrieval.library_store import LibraryStore, guarded, utc_now
from retrieval.overwrite import check_overwritable, library_files, replace_library
from retrieval.registry import EMBEDDERS, is_registered, load_embedder
from retrieval.storage import (
    FORMAT,
    MAX_DIM,
    REBUILD,
    SCHEMA_VERSION,
    LibraryError,
    check_category,
    check_own_file,
    check_threshold,
    embedder_problem,
    inside,
    read_meta,
    short,
)

__all__ = [
    "DEFAULT_CATEGORY",
    "FALLBACK_THRESHOLD",
    "FORMAT",
    "INDEX_DEFAULTS",
    "MAX_DIM",
    "REBUILD",
    "SCHEMA_VERSION",
    "AddResult",
    "LibraryError",
    "ReferenceLibrary",
    "check_category",
    "check_overwritable",
    "check_threshold",
    "library_files",
    "read_meta",
    "replace_library",
]

DEFAULT_CATEGORY = "default"
FALLBACK_THRESHOLD = 0.5


def _embedder_info(embedder: Embedder) -> dict[str, Any]:
    return {"name": str(embedder.name), "version": str(embedder.version), "dim": int(embedder.dim)}


def _check_index_params(index_type: str, params: dict[str, Any]) -> dict[str, Any]:
    try:
        return check_index_params(index_type, params)
    except IndexParamError as e:
        raise LibraryError(str(e)) from None


def _load_embedder(meta_path: Path, recorded: str, given: Embedder | str | None, kwargs: dict[str, Any]) -> Embedder:
    """The embedder to open a library with: ``given``, or the recorded one if its name is a registered one."""
    if given is not None and not isinstance(given, str):
        return given
    if isinstance(given, str):  # the caller's own choice: a dotted path may import code
        try:
            return load_embedder(given, **kwargs)
        except (ValueError, ImportError, OSError) as e:
            raise LibraryError(f"embedder {short(given)}: {one_line(e, 300)}") from None
    if not is_registered(recorded):
        raise LibraryError(
            f"{meta_path}: records embedder {short(recorded)}, which is neither a registered name "
            f"({sorted(EMBEDDERS)}) nor hf:<model>; nothing named in a library file is imported, so pass that "
            "embedder explicitly (ReferenceLibrary.open(path, embedder=...)) or rebuild the library"
        )
    try:
        return load_embedder(recorded, allow_path=False, **kwargs)
    except Exception as e:  # whatever the recorded model raises while loading, open() promises a LibraryError
        raise LibraryError(f"{meta_path}: cannot load its embedder {short(recorded)}: {one_line(e, 300)}") from None


class ReferenceLibrary(LibraryStore):
    """High-quality reference images, searchable by embedding similarity, stored in one folder.

    Create with :meth:`create`, reopen with :meth:`open`; both return an open library (use it as a context manager
    or call :meth:`close`). Scores are inner products of unit vectors (cosine similarity); :meth:`search` drops
    matches below ``threshold``, by default the library's own :attr:`threshold`.
    """

    def __init__(self, root: Path, meta: dict[str, Any], embedder: Embedder) -> None:
        super().__init__(root, meta, embedder.dim)
        self.embedder = embedder

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
        now = utc_now()
        meta = {
            "format": FORMAT,
            "schema_version": SCHEMA_VERSION,
            "embedder": _embedder_info(embedder),
            "index": {"type": index_type, "params": params},
            "threshold": threshold,
            "created": now,
            "updated": now,
        }
        problem = embedder_problem(meta["embedder"])
        if problem:  # never write a library.json that open() would refuse
            raise LibraryError(f"{problem}; a library cannot record this embedder, fix its name, version or dim")
        root.mkdir(parents=True, exist_ok=True)
        lib = cls(root, meta, embedder)
        lib._initialise()
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
                f"{root}: built with embedder {short(recorded['name'])} version {short(recorded['version'])} "
                f"(dim {recorded['dim']}), not {got['name']!r} version {got['version']!r} (dim {got['dim']}); "
                "query with the recorded embedder or rebuild the library with `rnr index build --overwrite`"
            )
        db_path = root / "entries.sqlite"
        try:
            check_own_file(root, db_path)
        except FileNotFoundError:
            raise LibraryError(f"{db_path}: missing; {REBUILD}") from None
        try:
            lib = cls(root, meta, embedder)
        except sqlite3.Error as e:
            raise LibraryError(f"{db_path}: cannot be opened ({one_line(e, 300)}); {REBUILD}") from None
        try:
            lib._load()
        except BaseException:
            lib.close()
            raise
        return lib

    def __enter__(self) -> ReferenceLibrary:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ReferenceLibrary({str(self.root)!r}, entries={len(self)}, embedder={self.embedder_tag!r})"

    @property
    def embedder_tag(self) -> str:
        """``name@version`` of the embedder, as recorded in each :class:`Reference`."""
        return f"{self.embedder.name}@{self.embedder.version}"

    @property
    def threshold(self) -> float:
        """Default relevance threshold of :meth:`search` (cosine); persisted when set."""
        return float(self._meta["threshold"])

    @threshold.setter
    @guarded
    def threshold(self, value: float) -> None:
        value = check_threshold(value)
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._update_meta(threshold=value)
            finally:
                self._db.execute("COMMIT")

    @property
    @guarded
    def categories(self) -> list[str]:
        """Names of the non-empty sub-libraries, sorted."""
        with self._lock:
            self._refresh()
            return sorted(c for c, index in self._indexes.items() if index.ntotal > 0)

    def info(self) -> dict[str, Any]:
        """``library.json`` plus entry counts, for display."""
        return {**self._meta, "root": str(self.root), "entries": len(self), "categories": self.counts()}

    @guarded
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
        result, pending, vectors = collect(
            items,
            ids,
            root=self.root,
            embed=self._embed,
            existing_id=self._id_for_sha,
            id_taken=self._has_id,
            max_pixels=max_pixels,
            progress=progress,
        )
        if pending:
            result.extend(self._commit(category, pending, vectors, result))
        return result

    def _embed(self, images: list[np.ndarray]) -> np.ndarray:
        vecs = np.asarray(self.embedder.embed(images), dtype=np.float32)
        if vecs.shape != (len(images), self.embedder.dim):
            raise LibraryError(f"embedder {self.embedder_tag} returned shape {vecs.shape}, not {len(images)} x dim")
        if not np.isfinite(vecs).all():
            raise LibraryError(f"embedder {self.embedder_tag} returned non-finite (NaN or infinite) values")
        return np.ascontiguousarray(vecs)

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

    @guarded
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
                    problem = f"search failed ({one_line(e, 300)})"
                    raise LibraryError(f"{self.root / self._files[cat]}: {problem}; {REBUILD}")
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

    @guarded
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
            problem = f"entry {short(entry['id'])} has no usable path; {REBUILD}"
            raise ImageLoadError(str(self.root / "entries.sqlite"), problem)
        path = self._absolute(stored)
        real = os.path.realpath(path)
        if not Path(stored).is_absolute():
            if not inside(path, self.root):
                problem = f"leads to {real}, outside the library folder; not followed (add the image again)"
                raise ImageLoadError(str(path), problem)
        elif real != os.path.normpath(stored):  # stored paths are resolved when added: a symlink appeared since
            raise ImageLoadError(str(path), f"is now a symlink to {real}; not followed (add the image again)")
        loaded = load_image(path)
        if verify and loaded.sha256 != entry["sha256"]:
            raise ImageLoadError(str(path), "changed since it was indexed (SHA-256 differs); add it again")
        return loaded.pixels
