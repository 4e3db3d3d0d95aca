"""Nearest items: FAISS HNSW agrees with exact search, filters included."""

from __future__ import annotations

import numpy as np

from recsys.model.neighbors import ExactIndex, FaissIndex, build_index


def unit_vectors(n: int, d: int, seed: int = 0) -> np.ndarray:
    # Few underlying tastes plus noise, like learned item factors.
    rng = np.random.default_rng(seed)
    v = rng.standard_normal((n, 8), dtype=np.float32) @ rng.standard_normal(
        (8, d), dtype=np.float32
    ) + 0.5 * rng.standard_normal((n, d), dtype=np.float32)
    unit: np.ndarray = v / np.linalg.norm(v, axis=1, keepdims=True)
    return unit


def test_faiss_recall_against_exact_search() -> None:
    vectors = unit_vectors(20_000, 32)
    exact, approx = ExactIndex(vectors), FaissIndex(vectors)
    rng = np.random.default_rng(1)
    # Half the queries with a filter that drops 30 % of the catalog and the item itself.
    recalls = []
    for n, q in enumerate(rng.choice(len(vectors), 200, replace=False)):
        allowed = rng.random(len(vectors)) > 0.3 if n % 2 else np.ones(len(vectors), bool)
        allowed[q] = False
        truth, truth_sims = exact.search(vectors[q], 10, allowed)
        found, found_sims = approx.search(vectors[q], 10, allowed)
        assert len(found) == 10 and allowed[found].all()
        assert np.all(np.diff(found_sims) <= 1e-6), "best first"
        recalls.append(len(set(truth) & set(found)) / 10)
        assert truth_sims[0] >= found_sims[0] - 1e-5
    assert np.mean(recalls) >= 0.95


def test_sparse_filters_still_return_k_rows() -> None:
    vectors = unit_vectors(5_000, 16)
    approx = FaissIndex(vectors)
    allowed = np.zeros(len(vectors), bool)
    allowed[::500] = True  # 10 allowed rows, scattered: the graph alone would miss them
    rows, _ = approx.search(vectors[1], 10, allowed)
    assert sorted(rows.tolist()) == list(range(0, 5_000, 500))


def test_build_index_switches_at_the_limit() -> None:
    vectors = unit_vectors(1_000, 8)
    assert build_index(vectors, exact_limit=1_000).kind == "exact"
    assert build_index(vectors, exact_limit=999).kind == "faiss-hnsw"
