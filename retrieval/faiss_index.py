"""FAISS index handling for reference libraries: exact inner product, IVF, HNSW or IVF-PQ, built and read consistently.

Vectors are L2-normalised embeddings, so inner product is cosine similarity. ``flat`` is exact; ``ivf`` trains
k-means once a category holds enough vectors (until then it stays exact); ``hnsw`` is a graph index for large
libraries; ``ivf-pq`` compresses vectors to ``m`` product-quantiser bytes for very large ones and re-ranks the
``rerank * k`` best candidates with 8-bit scalar-quantised copies (about ``m + dim`` bytes a vector instead of
``4 * dim``), trained like ``ivf``. Search parameters (``nprobe``, ``ef_search``, ``rerank``) live in the
library's metadata and are re-applied on read, since FAISS does not persist them all.
"""

from __future__ import annotations

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
    if index_kind(index) == "ivf-pq":
        _set_search_params(index, params)
    elif isinstance(index, faiss.IndexIVF):
        index.nprobe = min(params.get("nprobe", 16), index.nlist)
    elif isinstance(index, faiss.IndexHNSW):
        index.hnsw.efSearch = params.get("ef_search", 128)
    return index
