"""The best k entries of score rows, best first, for one user or for many at once.

A partial partition, then a sort of the k winners only. The largest k are taken from the top
of the partition: partitioning -logits cost a copy and twice the time.
"""

from __future__ import annotations

import numpy as np


def _top(logits: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and values of the best `k` (at most len) entries of a 1-D array, best first."""
    n = len(logits)
    top = np.argpartition(logits, n - k)[n - k :] if k < n else np.arange(n)
    top = top[np.argsort(-logits[top], kind="stable")]
    return top, logits[top]


def best_of_rows(logits: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Column indices and values of the best `k` entries of each row of a 2-D array, best
    first: two arrays of shape (rows, min(k, columns)). Banned entries hold -inf and sort
    last; callers drop them (`best` does)."""
    n_rows, n = logits.shape
    k = min(k, n)
    if k <= 0:
        return np.empty((n_rows, 0), dtype=np.int64), np.empty((n_rows, 0), dtype=logits.dtype)
    if n_rows == 1:  # the 1-D calls cost half as much as the 2-D ones below
        top, values = _top(logits[0], k)
        return top[np.newaxis, :], values[np.newaxis, :]
    # Indexed through the flat array: take_along_axis builds its index grids in Python.
    flat = logits.reshape(-1)
    if k < n:
        top = np.argpartition(logits, n - k, axis=1)[:, n - k :]
    else:
        top = np.tile(np.arange(n), (n_rows, 1))
    values = flat[top + (np.arange(n_rows) * n)[:, np.newaxis]]
    order = np.argsort(-values, axis=1, kind="stable") + (np.arange(n_rows) * k)[:, np.newaxis]
    return top.reshape(-1)[order], values.reshape(-1)[order]


def best(logits: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and values of the best `k` finite entries of a 1-D array (banned entries hold
    -inf), best first; fewer when fewer are finite."""
    k = min(k, len(logits))
    if k <= 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=logits.dtype)
    top, values = _top(logits, k)
    keep = np.isfinite(values)
    return top[keep], values[keep]
