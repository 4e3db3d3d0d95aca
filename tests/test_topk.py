"""Top-k of score rows: the floor found among the first columns gives what a full sort gives."""

from __future__ import annotations

import numpy as np
import pytest

from recsys.model.topk import best, best_of_rows


def sorted_best(logits: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The reference: a stable sort of whole rows, best first, ties by column."""
    top = np.argsort(-logits, axis=1, kind="stable")[:, :k]
    return top, np.take_along_axis(logits, top, axis=1)


@pytest.mark.parametrize("seed", range(6))
def test_best_of_rows_is_a_full_sort_cut_to_k(seed: int) -> None:
    rng = np.random.default_rng(seed)
    for _ in range(60):
        n_rows, n, k = (
            int(rng.integers(1, 20)),
            int(rng.integers(1, 3000)),
            int(rng.integers(1, 120)),
        )
        logits = rng.standard_normal((n_rows, n)).astype(np.float32)
        if seed % 2:  # ties, which a floor must keep in column order
            logits = np.round(logits, 1)
        if seed >= 3:  # banned entries, and a row with every entry banned
            logits[rng.random(logits.shape) < rng.random()] = -np.inf
            logits[int(rng.integers(0, n_rows))] = -np.inf
        cols, values = best_of_rows(logits, k)
        want_cols, want_values = sorted_best(logits, k)
        assert values.shape == (n_rows, min(k, n))
        assert np.array_equal(values, want_values)
        assert np.array_equal(np.take_along_axis(logits, cols, axis=1), values)
        assert all(len(set(row)) == len(row) for row in cols.tolist())
        if 32 * k <= n:  # the floor's path: the same columns as the sort, ties included
            finite = np.isfinite(want_values)
            assert np.array_equal(cols[finite], want_cols[finite])


def test_a_row_with_nan_falls_back_to_partitioning_whole_rows() -> None:
    logits = np.random.default_rng(0).standard_normal((3, 2000)).astype(np.float32)
    logits[1, 7] = np.nan
    cols, values = best_of_rows(logits, 10)
    assert cols.shape == (3, 10)
    assert np.array_equal(values[0], sorted_best(logits[[0]], 10)[1][0])


def test_best_drops_banned_entries_and_keeps_the_order() -> None:
    logits = np.array([0.5, -np.inf, 2.0, 1.0, -np.inf], dtype=np.float32)
    rows, values = best(logits, 4)
    assert rows.tolist() == [2, 3, 0]
    assert values.tolist() == [2.0, 1.0, 0.5]
