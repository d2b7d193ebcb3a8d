"""FAISS index handling for reference libraries: exact inner product, IVF, HNSW or IVF-PQ, built and read consistently.

Vectors are L2-normalised embeddings, so inner product is cosine similarity. ``flat`` is exact; ``ivf`` trains
k-means once a category holds enough vectors (until then it stays exact); ``hnsw`` is a graph index for large
libraries; ``ivf-pq`` compresses vectors to ``m`` product-quantiser bytes for very large ones and re-ranks the
``rerank * k`` best candidates with 8-bit scalar-quantised copies (about ``m + dim`` bytes a vector instead of
``4 * dim``), trained like ``ivf``. Search parameters (``nprobe``, ``ef_search``, ``rerank``) live in the
library's metadata and are re-applied on read, since FAISS does not persist them all.
"""

from __future__ import annotations

import os
import stat
import struct
from pathlib import Path
from typing import Any

import faiss
import numpy as np

INDEX_TYPES = ("flat", "ivf", "hnsw", "ivf-pq")
#: Accepted ``**index_params`` per index type, with their defaults (``nlist=None``: about 4 sqrt(n)).
#: The search defaults are the smallest measured to give recall@10 >= 0.95 at 1M vectors fitted to real embeddings
#: (bench/retrieval_scale.py): ivf-pq nprobe 256 / rerank 40 -> 0.953 at 4.2 ms p50 (nprobe 32 / rerank 10 gave
#: 0.835); hnsw ef_search 256 -> 0.973 at 2.4 ms (128 gave 0.950). Smaller libraries are only more accurate.
INDEX_DEFAULTS: dict[str, dict[str, Any]] = {
    "flat": {},
    "ivf": {"nlist": None, "nprobe": 16},
    "hnsw": {"M": 32, "ef_construction": 80, "ef_search": 256},
    "ivf-pq": {"nlist": None, "m": 64, "nbits": 8, "nprobe": 256, "rerank": 40},
}
#: k-means needs this many training points per IVF list; with fewer vectors an "ivf" category stays exact (flat).
IVF_POINTS_PER_LIST = 39
#: Largest value of each index parameter: far above any useful setting, low enough that a hostile library.json cannot
#: make FAISS allocate without bound (M, m and ef_* size per-vector or per-query buffers).
PARAM_MAX: dict[str, int] = {
    "nlist": 1 << 20,
    "nprobe": 1 << 20,
    "M": 512,
    "ef_construction": 1 << 16,
    "ef_search": 1 << 16,
    "m": 1 << 12,
    "nbits": 1 << 10,  # checked again below, with the real bound
    "rerank": 1 << 12,
}
#: What an index file of each library type may hold: FAISS type tag (the file's first 4 bytes) -> class read back.
FILE_TYPES: dict[str, dict[bytes, str]] = {
    "flat": {b"IxFI": "IndexFlatIP"},
    "ivf": {b"IxFI": "IndexFlatIP", b"IwFl": "IndexIVFFlat"},
    "hnsw": {b"IHNf": "IndexHNSWFlat"},
    "ivf-pq": {b"IxFI": "IndexFlatIP", b"IxRF": "IndexRefine"},
}
# Every FAISS index file starts with its type tag and this header: d (int32), ntotal (int64), two unused int64,
# is_trained (bool), metric (int32). An IndexFlatIP then holds ntotal * d floats, preceded by their count (uint64).
_HEADER = struct.Struct("<4siqqq?i")
_FLAT_COUNT = struct.Struct("<Q")
_CHECK_ROWS = 1 << 16  # vectors checked for NaN/inf at a time (a bounded temporary, whatever the library's size)


class IndexParamError(ValueError):
    """An unknown index type or a bad index parameter; the message is one line."""


def check_index_params(index_type: str, params: dict[str, Any]) -> dict[str, Any]:
    """``params`` completed with the defaults of ``index_type``; :class:`IndexParamError` when invalid."""
    if index_type not in INDEX_TYPES:
        raise IndexParamError(f"unknown index type {index_type!r}; choose one of {list(INDEX_TYPES)}")
    defaults = INDEX_DEFAULTS[index_type]
    unknown = sorted(set(params) - set(defaults))
    if unknown:
        raise IndexParamError(f"index type {index_type!r} takes {sorted(defaults) or 'no parameters'}, not {unknown}")
    out = {**defaults, **params}
    for key, value in out.items():
        if value is None and key == "nlist":
            continue
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or not 1 <= value <= PARAM_MAX[key]:
            raise IndexParamError(f"index parameter {key}={value!r} must be an integer from 1 to {PARAM_MAX[key]}")
        out[key] = int(value)
    if out.get("nbits", 1) > 16:
        raise IndexParamError(f"index parameter nbits={out['nbits']} must be at most 16 (8 is usual)")
    return out


def index_kind(index: faiss.Index) -> str:
    """``"ivf"``, ``"hnsw"``, ``"ivf-pq"`` or ``"flat"`` for a FAISS index."""
    if isinstance(index, faiss.IndexRefine | faiss.IndexPreTransform):
        return "ivf-pq"
    if isinstance(index, faiss.IndexIVF):
        return "ivf"
    if isinstance(index, faiss.IndexHNSW):
        return "hnsw"
    return "flat"


def grow_index(
    index: faiss.Index | None, vecs: np.ndarray, dim: int, index_type: str, params: dict[str, Any]
) -> faiss.Index:
    """Return ``index`` (or a new one) with ``vecs`` appended; an "ivf" category is trained once big enough."""
    if index is None:
        if index_type == "hnsw":
            index = faiss.IndexHNSWFlat(dim, params["M"], faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = params["ef_construction"]
            index.hnsw.efSearch = params["ef_search"]
        else:
            index = faiss.IndexFlatIP(dim)
    if index_type == "ivf" and index_kind(index) == "flat":
        total = int(index.ntotal) + len(vecs)
        nlist = params["nlist"] or max(1, int(round(4 * np.sqrt(total))))
        if total >= IVF_POINTS_PER_LIST * nlist:
            everything = np.concatenate([index.reconstruct_n(0, index.ntotal), vecs]) if index.ntotal else vecs
            ivf = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
            ivf.cp.seed = 1234  # deterministic k-means
            ivf.train(everything)
            ivf.add(everything)
            ivf.nprobe = min(params["nprobe"], nlist)
            return ivf
    if index_type == "ivf-pq" and index_kind(index) == "flat":
        total = int(index.ntotal) + len(vecs)
        nlist = params["nlist"] or max(1, int(round(4 * np.sqrt(total))))
        if total >= IVF_POINTS_PER_LIST * max(nlist, 2 ** params["nbits"]):
            everything = np.concatenate([index.reconstruct_n(0, index.ntotal), vecs]) if index.ntotal else vecs
            ivfpq = _new_ivf_pq(dim, nlist, params)
            ivfpq.train(everything)
            ivfpq.add(everything)
            _set_search_params(ivfpq, params)
            return ivfpq
    index.add(vecs)
    return index


def _new_ivf_pq(dim: int, nlist: int, params: dict[str, Any]) -> faiss.Index:
    """An untrained IVF-PQ index with SQ8 re-ranking, zero-padding vectors when ``m`` does not divide ``dim``."""
    m, nbits = params["m"], params["nbits"]
    padded = -(-dim // m) * m  # zero padding changes no inner product, and lets any m fit any dim
    pad = f"Pad{padded}," if padded != dim else ""
    index = faiss.index_factory(dim, f"{pad}IVF{nlist},PQ{m}x{nbits},Refine(SQ8)", faiss.METRIC_INNER_PRODUCT)
    ivf = faiss.downcast_index(faiss.extract_index_ivf(index))
    ivf.cp.seed = 1234  # deterministic k-means, as for "ivf"
    ivf.pq.cp.seed = 1234
    # The factory turns on polysemous training (a code reordering used only by polysemous search, which we never
    # run); it took ~3/4 of the training time at 20k vectors of 1758 dims.
    ivf.do_polysemous_training = False
    return index


def _set_search_params(index: faiss.Index, params: dict[str, Any]) -> None:
    # FAISS persists neither nprobe through the wrappers nor the re-ranking factor, so both are set on every read.
    ivf = faiss.extract_index_ivf(index)
    ivf.nprobe = min(params.get("nprobe", 32), ivf.nlist)
    if isinstance(index, faiss.IndexRefine):
        index.k_factor = float(params.get("rerank", 10))


def read_index(
    path: Path, dim: int, ntotal: int, params: dict[str, Any], index_type: str | None = None
) -> faiss.Index:
    """Read an index file, check it holds ``ntotal`` finite vectors of ``dim``, and re-apply the search parameters.

    The file is opened without blocking and refused unless it is a regular file; its header is checked against
    ``dim``, ``ntotal`` and the inner-product metric before FAISS parses the rest, so random bytes, a FIFO or a
    directory give a one-line error instead of a FAISS traceback or a hang.

    Args:
        path: The index file.
        dim: Vector length the library records.
        ntotal: Number of vectors the library's metadata says the file holds.
        params: The library's index parameters (search settings are re-applied).
        index_type: The library's index type; when given, the file must hold an index that type builds.

    Raises:
        FileNotFoundError: ``path`` is missing (a concurrent writer may have replaced it).
        ValueError: The file is not what the metadata says (one line naming the file; rebuild the library).

    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except FileNotFoundError:
        raise
    except OSError as e:
        raise ValueError(f"{path}: cannot be read ({e.strerror})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ValueError(f"{path}: {not_a_file(st.st_mode)}, not an index file")
        f = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with f:
        try:
            _check_header(path, f.read(_HEADER.size + _FLAT_COUNT.size), st.st_size, dim, ntotal, index_type)
            f.seek(0)
            index = faiss.read_index(faiss.PyCallbackIOReader(f.read))
        except (RuntimeError, MemoryError, OverflowError, OSError) as e:
            reason = str(e).strip().splitlines()[-1][:200] if str(e).strip() else type(e).__name__
            raise ValueError(f"{path}: not a readable FAISS index ({reason})") from None
    if index.d != dim or index.ntotal != ntotal:
        raise ValueError(f"{path}: holds {index.ntotal} vectors of dim {index.d}, expected {ntotal} of dim {dim}")
    if index_type is not None and type(index).__name__ not in FILE_TYPES[index_type].values():
        raise ValueError(f"{path}: holds a {type(index).__name__}, which a {index_type!r} library never writes")
    if index.metric_type != faiss.METRIC_INNER_PRODUCT:
        raise ValueError(f"{path}: does not use the inner-product metric")
    if index_kind(index) in ("ivf", "ivf-pq") and not _lists_consistent(faiss.extract_index_ivf(index)):
        raise ValueError(f"{path}: its inverted lists do not hold rows 0-{ntotal - 1} once each")
    if not vectors_finite(index):
        raise ValueError(f"{path}: holds non-finite (NaN or infinite) vectors")
    if index_kind(index) == "ivf-pq":
        _set_search_params(index, params)
    elif isinstance(index, faiss.IndexIVF):
        index.nprobe = min(params.get("nprobe", 16), index.nlist)
    elif isinstance(index, faiss.IndexHNSW):
        index.hnsw.efSearch = params.get("ef_search", 128)
    return index


def not_a_file(mode: int) -> str:
    """What a ``st_mode`` that is not a regular file is, for messages: "is a directory", "is a FIFO (named pipe)"."""
    if stat.S_ISDIR(mode):
        return "is a directory"
    if stat.S_ISFIFO(mode):
        return "is a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "is a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "is a device"
    return "is not a regular file"


def _check_header(path: Path, head: bytes, size: int, dim: int, ntotal: int, index_type: str | None) -> None:
    """Refuse a file whose type tag, dim, count or metric is not what the library expects, before FAISS reads it."""
    if len(head) < _HEADER.size:
        raise ValueError(f"{path}: truncated ({size} bytes), not a FAISS index")
    tag, d, n, _, _, _, metric = _HEADER.unpack_from(head)
    allowed = FILE_TYPES[index_type] if index_type is not None else {t for v in FILE_TYPES.values() for t in v}
    if tag not in allowed:
        raise ValueError(f"{path}: not a FAISS index this library writes (type tag {tag!r})")
    if d != dim or n != ntotal or metric != faiss.METRIC_INNER_PRODUCT:
        raise ValueError(f"{path}: header says {n} vectors of dim {d} (metric {metric}), not {ntotal} of dim {dim}")
    if tag == b"IxFI":  # an exact layout: a wrong size means truncation or tampering, and FAISS would allocate it
        want = _HEADER.size + _FLAT_COUNT.size + 4 * dim * ntotal
        if size != want or _FLAT_COUNT.unpack_from(head, _HEADER.size)[0] != dim * ntotal:
            raise ValueError(f"{path}: is {size} bytes, not the {want} of {ntotal} vectors of dim {dim} (truncated?)")


def vectors_finite(index: faiss.Index) -> bool:
    """Whether every number the index scores with is finite (NaN or inf vectors would give garbage scores).

    Flat and HNSW indexes are checked vector by vector, IVF-flat through its inverted lists plus the centroids,
    IVF-PQ through its trained tables (its codes are bytes, finite whenever the tables are).
    """
    if isinstance(index, faiss.IndexRefine):
        base = faiss.downcast_index(index.base_index)
        if isinstance(base, faiss.IndexPreTransform):
            base = faiss.downcast_index(base.index)
        refine = faiss.downcast_index(index.refine_index)
        tables = [faiss.vector_to_array(base.pq.centroids)]
        if isinstance(refine, faiss.IndexScalarQuantizer):
            tables.append(faiss.vector_to_array(refine.sq.trained))
        return all(np.isfinite(t).all() for t in tables) and vectors_finite(faiss.downcast_index(base.quantizer))
    if isinstance(index, faiss.IndexHNSW):
        return vectors_finite(faiss.downcast_index(index.storage))
    if isinstance(index, faiss.IndexIVFFlat):
        if not vectors_finite(faiss.downcast_index(index.quantizer)):
            return False
        lists = index.invlists
        for i in range(index.nlist):
            n = lists.list_size(i)
            if n and not _finite(faiss.rev_swig_ptr(lists.get_codes(i), n * index.code_size).view(np.float32)):
                return False
        return True
    if isinstance(index, faiss.IndexFlat):
        if index.ntotal == 0:
            return True
        xb = faiss.rev_swig_ptr(index.get_xb(), index.ntotal * index.d)  # a view: no copy of a large library
        step = _CHECK_ROWS * index.d
        return all(_finite(xb[i : i + step]) for i in range(0, xb.size, step))
    return False  # an index type this project never writes


def _lists_consistent(ivf: faiss.IndexIVF) -> bool:
    """Whether the inverted lists hold each row id ``0..ntotal-1`` once: search returns these ids as rows."""
    lists = ivf.invlists
    ids = [faiss.rev_swig_ptr(lists.get_ids(i), n).copy() for i in range(ivf.nlist) if (n := lists.list_size(i))]
    ids = np.concatenate(ids) if ids else np.zeros(0, np.int64)
    if len(ids) != ivf.ntotal or (len(ids) and (ids.min() < 0 or ids.max() >= ivf.ntotal)):
        return False
    return bool(np.bincount(ids, minlength=ivf.ntotal).max(initial=0) <= 1)


def _finite(x: np.ndarray) -> bool:
    # A sum is non-finite iff some term is (or the terms overflow, which unit vectors never do): no temporary mask.
    return bool(np.isfinite(np.sum(x, dtype=np.float32)))
