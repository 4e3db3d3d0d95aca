"""Nearest items by cosine similarity: exact search for small catalogs, FAISS HNSW above.

Both answer the same question through one interface, `search(query, k, allowed)`: rows of the
`k` allowed vectors with the highest inner product with `query` (vectors are unit length, so
inner product is cosine). Exact search is one matrix-vector product, a few milliseconds up to
about 10^5 items; beyond that a graph index (Malkov & Yashunin 2018, "HNSW") answers in well
under a millisecond at a recall the tests check against exact search.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np


class NeighborIndex(Protocol):
    kind: str

    def search(
        self, query: np.ndarray, k: int, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(rows, similarities) of the best `k` rows where `allowed` (a boolean mask) is True,
        best first; fewer than `k` when fewer rows are allowed."""
        ...


class ExactIndex:
    kind = "exact"

    def __init__(self, unit_vectors: np.ndarray) -> None:
        self._vectors = np.ascontiguousarray(unit_vectors, dtype=np.float32)

    def search(
        self, query: np.ndarray, k: int, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        sims = self._vectors @ np.asarray(query, dtype=np.float32)
        if allowed is not None:
            sims[~allowed] = -np.inf
        k = min(k, int(np.isfinite(sims).sum()))
        if k <= 0:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
        # The best k unordered (linear time), then those k sorted.
        rows = np.argpartition(-sims, k - 1)[:k]
        rows = rows[np.argsort(-sims[rows], kind="stable")]
        return rows.astype(np.int64), sims[rows]


class FaissIndex:
    """HNSW over inner product. Filters (the item itself, too little support) are applied
    after the search: we over-fetch, and widen the search until `k` allowed rows are found,
    falling back to exact search when the allowed rows are too sparse for a graph to find."""

    kind = "faiss-hnsw"

    def __init__(
        self,
        unit_vectors: np.ndarray,
        *,
        m: int = 32,
        ef_construction: int = 80,
        ef_search: int = 96,
    ) -> None:
        import faiss  # imported here: exact search needs no FAISS, and it is heavy to load

        vectors = np.ascontiguousarray(unit_vectors, dtype=np.float32)
        self._index = faiss.IndexHNSWFlat(vectors.shape[1], m, faiss.METRIC_INNER_PRODUCT)
        self._index.hnsw.efConstruction = ef_construction
        self._index.hnsw.efSearch = ef_search
        self._index.add(vectors)
        self._ef_search = ef_search
        self._exact = ExactIndex(vectors)
        self._n = len(vectors)

    def search(
        self, query: np.ndarray, k: int, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        q = np.asarray(query, dtype=np.float32).reshape(1, -1)
        fetch = k if allowed is None else 2 * k + 8
        while True:
            self._index.hnsw.efSearch = max(self._ef_search, fetch)
            sims, rows = self._index.search(q, min(fetch, self._n))
            rows, sims = rows[0], sims[0]
            keep = rows >= 0  # FAISS pads with -1 when it finds fewer than asked
            if allowed is not None:
                keep &= allowed[np.maximum(rows, 0)]
            if keep.sum() >= k or fetch >= self._n:
                return rows[keep][:k].astype(np.int64), sims[keep][:k]
            if fetch >= 4096:
                return self._exact.search(query, k, allowed)
            fetch *= 4


def build_index(unit_vectors: np.ndarray, *, exact_limit: int = 100_000) -> NeighborIndex:
    """Exact search up to `exact_limit` items, FAISS HNSW above."""
    if len(unit_vectors) <= exact_limit:
        return ExactIndex(unit_vectors)
    return FaissIndex(unit_vectors)
