"""FAISS index handling for reference libraries: exact inner product, IVF or HNSW, built and read consistently.

Vectors are L2-normalised embeddings, so inner product is cosine similarity. ``flat`` is exact; ``ivf`` trains
k-means once a category holds enough vectors (until then it stays exact); ``hnsw`` is a graph index for large
libraries. Search parameters (``nprobe``, ``ef_search``) live in the library's metadata and are re-applied on read,
since FAISS does not persist them all.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import faiss
import numpy as np

INDEX_TYPES = ("flat", "ivf", "hnsw")
#: Accepted ``**index_params`` per index type, with their defaults (``nlist=None``: about 4 sqrt(n)).
INDEX_DEFAULTS: dict[str, dict[str, Any]] = {
    "flat": {},
    "ivf": {"nlist": None, "nprobe": 16},
    "hnsw": {"M": 32, "ef_construction": 80, "ef_search": 128},
}
#: k-means needs this many training points per IVF list; with fewer vectors an "ivf" category stays exact (flat).
IVF_POINTS_PER_LIST = 39


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
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise IndexParamError(f"index parameter {key}={value!r} must be a positive integer")
        out[key] = int(value)
    return out


def index_kind(index: faiss.Index) -> str:
    """``"ivf"``, ``"hnsw"`` or ``"flat"`` for a FAISS index."""
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
    index.add(vecs)
    return index


def read_index(path: Path, dim: int, ntotal: int, params: dict[str, Any]) -> faiss.Index:
    """Read an index file, check it holds ``ntotal`` vectors of ``dim``, and re-apply the search parameters.

    Raises:
        FileNotFoundError: ``path`` is missing (a concurrent writer may have replaced it).
        ValueError: The file does not hold what the metadata says (one line; rebuild the library).

    """
    if not path.is_file():
        raise FileNotFoundError(path)
    index = faiss.read_index(str(path))
    if index.d != dim or index.ntotal != ntotal:
        raise ValueError(f"{path}: holds {index.ntotal} vectors of dim {index.d}, expected {ntotal}; rebuild")
    if isinstance(index, faiss.IndexIVF):
        index.nprobe = min(params.get("nprobe", 16), index.nlist)
    elif isinstance(index, faiss.IndexHNSW):
        index.hnsw.efSearch = params.get("ef_search", 128)
    return index
