"""Nearest items on a large synthetic catalog: FAISS HNSW against exact search.

    .venv/bin/python -m benchmarks.similar_items [--items 1000000] [--factors 64] [--queries 1000]

Learned item factors are not isotropic noise: a few tastes explain most of them. The catalog
is therefore drawn like one, from 16 latent tastes mixed into 64 dimensions plus noise, then
normalised. Prints the index build time, recall@10 against exact search and per-query latency
percentiles of both (one query at a time, as the API asks them).
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch

from recsys.model.neighbors import ExactIndex, FaissIndex


def catalog(n: int, d: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    tastes = rng.standard_normal((n, 16), dtype=np.float32)
    mixing = rng.standard_normal((16, d), dtype=np.float32)
    vectors = tastes @ mixing + 0.5 * rng.standard_normal((n, d), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors


def percentiles(seconds: list[float]) -> str:
    ms = np.asarray(seconds) * 1000
    return f"p50 {np.percentile(ms, 50):.3f} ms, p99 {np.percentile(ms, 99):.3f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--factors", type=int, default=64)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--k", type=int, default=10)
    args = parser.parse_args()
    print(
        f"{platform.machine()} {torch.get_num_threads()} threads; catalog {args.items:,} x "
        f"{args.factors}; {args.queries} queries, k={args.k}"
    )
    vectors = catalog(args.items, args.factors, seed=0)
    rng = np.random.default_rng(1)
    queries = rng.choice(args.items, size=args.queries, replace=False)
    allowed = np.ones(args.items, dtype=bool)

    exact = ExactIndex(vectors)
    start = time.perf_counter()
    faiss_index = FaissIndex(vectors)
    print(f"HNSW build: {time.perf_counter() - start:.1f} s")

    recalls: list[float] = []
    times: dict[str, list[float]] = {"exact": [], "faiss": []}
    for q in queries:
        # Like the API: the item itself is excluded from its own neighbours.
        allowed[q] = False
        t0 = time.perf_counter()
        truth, _ = exact.search(vectors[q], args.k, allowed)
        t1 = time.perf_counter()
        found, _ = faiss_index.search(vectors[q], args.k, allowed)
        t2 = time.perf_counter()
        allowed[q] = True
        times["exact"].append(t1 - t0)
        times["faiss"].append(t2 - t1)
        recalls.append(len(set(truth.tolist()) & set(found.tolist())) / args.k)
    print(f"exact search: {percentiles(times['exact'])}")
    print(f"FAISS HNSW:   {percentiles(times['faiss'])}")
    print(f"recall@{args.k} of FAISS against exact: {np.mean(recalls):.4f}")


if __name__ == "__main__":
    main()
