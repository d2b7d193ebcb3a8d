"""Reference-library scale benchmark: build time, memory, latency and recall@10 of each FAISS index type.

    python bench/retrieval_scale.py [--n 100000] [--types flat ivf hnsw ivf-pq] [--queries 300]
                                    [--out bench/out/retrieval_scale.json]

Vectors are synthetic, of the ``global`` embedder's dimensionality, and clustered like real embeddings rather than
spread uniformly (uniform points in ~1758 dims are nearly equidistant, which no real library is): a Gaussian
mixture of ``--clusters`` centres in a ``--latent``-dim subspace, mapped into the full dimension by a fixed random
basis, plus small isotropic noise, projected onto the unit sphere. Queries are fresh draws from the same mixture
(not library members). Data is generated in seeded chunks, so 1M vectors (~7 GB as float32) never exist twice:
the exact ground truth (top-10 inner products) is computed chunk by chunk without a flat index, and each index
is built through :func:`retrieval.faiss_index.grow_index` (the library's own code path), measured, and freed
before the next. Indexes build with ``--build-threads`` threads; queries run one at a time on one thread.
Memory per vector is the size of the written index file divided by ``n``. Target at 1M: p50 <= 5 ms at
recall@10 >= 0.95.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import faiss  # noqa: E402
import numpy as np  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from retrieval.faiss_index import INDEX_TYPES, check_index_params, grow_index, index_kind  # noqa: E402

TARGETS = {"p50_ms": 5.0, "recall@10": 0.95}
K = 10
CHUNK = 50_000
#: Search settings swept per type (search-only, no rebuild); the first is the library default.
SWEEPS: dict[str, list[dict[str, int]]] = {
    "flat": [{}],
    "ivf": [{"nprobe": 16}, {"nprobe": 64}],
    "hnsw": [{"ef_search": 128}, {"ef_search": 256}],
    "ivf-pq": [{"nprobe": 32, "rerank": 10}, {"nprobe": 64, "rerank": 20}],
}


class Mixture:
    """A seeded clustered distribution of unit vectors; ``chunk(i)`` is always the same rows."""

    def __init__(self, dim: int, latent: int, clusters: int, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.dim, self.latent, self.seed = dim, latent, seed
        self.basis = (rng.standard_normal((latent, dim)) / np.sqrt(latent)).astype(np.float32)
        self.centres = rng.standard_normal((clusters, latent)).astype(np.float32)
        self.weights = rng.dirichlet(np.full(clusters, 2.0))  # uneven cluster sizes, as in real collections

    def draw(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` unit vectors of the mixture."""
        which = rng.choice(len(self.centres), size=n, p=self.weights)
        z = self.centres[which] + 0.6 * rng.standard_normal((n, self.latent)).astype(np.float32)
        x = z @ self.basis + 0.1 * rng.standard_normal((n, self.dim)).astype(np.float32) / np.sqrt(self.dim / 64)
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)

    def chunk(self, i: int, n: int) -> np.ndarray:
        """Rows ``[i * CHUNK, i * CHUNK + n)`` of the library."""
        return self.draw(n, np.random.default_rng([self.seed, 1, i]))

    def chunks(self, total: int):
        """Yield the library's chunks in order."""
        for i, start in enumerate(range(0, total, CHUNK)):
            yield self.chunk(i, min(CHUNK, total - start))


def ground_truth(mix: Mixture, total: int, queries: np.ndarray) -> np.ndarray:
    """Exact top-``K`` ids by inner product, merged chunk by chunk (no flat index, so 1M fits in memory)."""
    best_s = np.full((len(queries), K), -np.inf, np.float32)
    best_i = np.zeros((len(queries), K), np.int64)
    for c, x in enumerate(mix.chunks(total)):
        s = queries @ x.T
        i = np.argpartition(-s, K - 1, axis=1)[:, :K]
        s_all = np.hstack([best_s, np.take_along_axis(s, i, axis=1)])
        i_all = np.hstack([best_i, i + c * CHUNK])
        order = np.argsort(-s_all, axis=1)[:, :K]
        best_s, best_i = np.take_along_axis(s_all, order, axis=1), np.take_along_axis(i_all, order, axis=1)
    return best_i


def build(kind: str, mix: Mixture, total: int, threads: int) -> tuple[faiss.Index, dict, float]:
    """Build ``kind`` over the library through ``grow_index``; returns (index, params, seconds)."""
    params: dict = {}
    if kind in ("ivf", "ivf-pq"):
        params["nlist"] = max(1, int(round(4 * np.sqrt(total))))  # the size it would pick for the whole library
    params = check_index_params(kind, params)
    faiss.omp_set_num_threads(threads)
    t0 = time.perf_counter()
    index = None
    for x in mix.chunks(total):
        index = grow_index(index, x, mix.dim, kind, params)
    seconds = time.perf_counter() - t0
    faiss.omp_set_num_threads(1)
    if kind != "flat" and index_kind(index) != kind:
        raise RuntimeError(f"{kind}: {total} vectors were too few to train; use a larger --n")
    return index, params, seconds


def apply_search(index: faiss.Index, kind: str, setting: dict[str, int]) -> None:
    """Set the search parameters of one sweep point."""
    if kind == "ivf":
        index.nprobe = min(setting["nprobe"], index.nlist)
    elif kind == "hnsw":
        index.hnsw.efSearch = setting["ef_search"]
    elif kind == "ivf-pq":
        ivf = faiss.extract_index_ivf(index)
        ivf.nprobe = min(setting["nprobe"], ivf.nlist)
        index.k_factor = float(setting["rerank"])


def measure(index: faiss.Index, queries: np.ndarray, truth: np.ndarray) -> dict:
    """Single-query latency percentiles (ms) and recall@K against ``truth``."""
    index.search(queries[:5], K)  # warm caches
    times, found = [], []
    for q in queries:
        t0 = time.perf_counter()
        _, ids = index.search(q[None], K)
        times.append(time.perf_counter() - t0)
        found.append(ids[0])
    recall = float(np.mean([len(set(f) & set(t)) / K for f, t in zip(found, truth, strict=True)]))
    ms = np.asarray(times) * 1000
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)), "recall@10": recall}


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; exit 0 (targets are reported, not enforced, since they are set for 1M vectors)."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000, help="library size (1000000 needs ~16 GB free)")
    ap.add_argument("--types", nargs="+", default=["flat", "ivf", "hnsw", "ivf-pq"], choices=INDEX_TYPES)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--dim", type=int, default=None, help="default: the global embedder's dimensionality")
    ap.add_argument("--latent", type=int, default=48, help="intrinsic dimensionality of the mixture")
    ap.add_argument("--clusters", type=int, default=200)
    ap.add_argument("--build-threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "out" / "retrieval_scale.json")
    args = ap.parse_args(argv)
    if args.dim is None:
        from retrieval.embedders import GlobalDescriptorEmbedder

        args.dim = GlobalDescriptorEmbedder().dim
    console = Console(width=None if sys.stdout.isatty() else 120)  # keep logged tables readable
    mix = Mixture(args.dim, args.latent, args.clusters, args.seed)
    queries = mix.draw(args.queries, np.random.default_rng([args.seed, 2]))
    t0 = time.perf_counter()
    truth = ground_truth(mix, args.n, queries)
    console.print(
        f"ground truth for {args.queries} queries over {args.n} x {args.dim}: {time.perf_counter() - t0:.1f}s"
    )

    rows = []
    for kind in args.types:
        index, params, build_s = build(kind, mix, args.n, args.build_threads)
        with tempfile.TemporaryDirectory() as tmp:
            faiss.write_index(index, str(Path(tmp) / "i.faiss"))
            bytes_per_vector = (Path(tmp) / "i.faiss").stat().st_size / args.n
        for setting in SWEEPS[kind]:
            apply_search(index, kind, setting)
            row = {"type": kind, "build_s": build_s, "bytes_per_vector": bytes_per_vector, "params": params}
            row |= {"search": setting} | measure(index, queries, truth)
            row["meets_target"] = row["p50_ms"] <= TARGETS["p50_ms"] and row["recall@10"] >= TARGETS["recall@10"]
            rows.append(row)
            console.print(f"{kind} {setting}: p50 {row['p50_ms']:.2f} ms, recall@10 {row['recall@10']:.3f}")
        del index
        gc.collect()

    table = Table(title=f"{args.n:,} vectors x {args.dim} dims, {args.queries} single queries, 1 thread")
    for col in ("index", "search", "build s", "bytes/vec", "p50 ms", "p99 ms", "recall@10", "target"):
        table.add_column(col, justify="left" if col in ("index", "search") else "right")
    for r in rows:
        table.add_row(
            r["type"],
            " ".join(f"{k}={v}" for k, v in r["search"].items()) or "exact",
            f"{r['build_s']:.1f}",
            f"{r['bytes_per_vector']:.0f}",
            f"{r['p50_ms']:.2f}",
            f"{r['p99_ms']:.2f}",
            f"{r['recall@10']:.3f}",
            "yes" if r["meets_target"] else "no",
        )
    console.print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    setup = {k: getattr(args, k) for k in ("n", "dim", "latent", "clusters", "queries", "build_threads", "seed")}
    args.out.write_text(json.dumps({"setup": setup, "targets": TARGETS, "rows": rows}, indent=2) + "\n")
    console.print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
