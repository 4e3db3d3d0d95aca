"""Baselines every model is compared against. A model that does not beat them is not shipped.

Each scorer offers `predict_rows` (ratings for (user, item) rows; None if it predicts no
ratings) and `rank_scores` (a users x items score matrix; None if it cannot rank). The matrix
is the caller's own: evaluation masks each user's training items in it, in place.
"""

from __future__ import annotations

import warnings
from typing import Protocol

import numpy as np
import torch

from recsys.data.interactions import Interactions, is_sorted_by_pair


class Scorer(Protocol):
    name: str

    def predict_rows(self, users: np.ndarray, items: np.ndarray) -> np.ndarray | None: ...

    def rank_scores(self, users: np.ndarray) -> torch.Tensor | None: ...


class GlobalMean:
    """Predicts the mean training rating for everything; it cannot rank."""

    name = "global_mean"

    def __init__(self, train: Interactions) -> None:
        self.mean = float(train.ratings.mean())

    def predict_rows(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        return np.full(len(users), self.mean)

    def rank_scores(self, users: np.ndarray) -> None:
        return None


def _chunks(n: int, size: int = 1 << 22) -> list[slice]:
    return [slice(s, s + size) for s in range(0, n, size)]


class BiasBaseline:
    """mu + b_u + b_i with damped means (Koren 2010, "Factor in the neighbors", eq. 2):
    b_i = sum(r - mu) / (lambda_i + n_i), then b_u = sum(r - mu - b_i) / (lambda_u + n_u).
    Ranks by mu + b_u + b_i, the same order for every user: the best-liked items."""

    name = "biases"

    def __init__(
        self,
        train: Interactions,
        item_damping: float = 25.0,
        user_damping: float = 10.0,
        clip: tuple[float, float] | None = None,
    ) -> None:
        self.mean = float(train.ratings.mean(dtype=np.float64))
        # Sums a few million ratings at a time: float64 copies of 25M ratings would cost
        # hundreds of MB each at the training process's peak.
        item_sum = np.zeros(train.n_items)
        user_sum = np.zeros(train.n_users)
        for part in _chunks(len(train)):
            dev = train.ratings[part].astype(np.float64) - self.mean
            item_sum += np.bincount(train.items[part], dev, train.n_items)
        self.item_bias = item_sum / (item_damping + train.item_counts())
        for part in _chunks(len(train)):
            dev = train.ratings[part] - self.mean - self.item_bias[train.items[part]]
            user_sum += np.bincount(train.users[part], dev, train.n_users)
        self.user_bias = user_sum / (user_damping + train.user_counts())
        self.clip = clip

    def predict_rows(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        users, items = np.asarray(users), np.asarray(items)
        bu = np.where(users >= 0, self.user_bias[np.maximum(users, 0)], 0.0)
        bi = np.where(items >= 0, self.item_bias[np.maximum(items, 0)], 0.0)
        pred = self.mean + bu + bi
        return np.clip(pred, *self.clip) if self.clip else pred

    def rank_scores(self, users: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(self.item_bias).float().repeat(len(users), 1)


class MostPopular:
    """Ranks items by how many ratings they have; it predicts no ratings."""

    name = "most_popular"

    def __init__(self, train: Interactions) -> None:
        self.counts = train.item_counts().astype(np.float32)

    def predict_rows(self, users: np.ndarray, items: np.ndarray) -> None:
        return None

    def rank_scores(self, users: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(self.counts).repeat(len(users), 1)


class Ease:
    """EASE (Steck 2019, "Embarrassingly shallow autoencoders for sparse data"): item-item
    weights B = -P / diag(P) with P = (X'X + lambda I)^-1 over the binarised ratings X, the
    diagonal held at zero; a user's scores are their row of X times B. It predicts no ratings.

    One regularised Gram-matrix inversion (a Cholesky inverse in float32: 6.5 s for 8.7k
    items on 2 cores, 0.7 s for 4k), cubic in the items and quadratic in memory, so on a
    catalog larger than `max_items` (RECSYS_EASE_MAX_ITEMS) it learns the `max_items`
    most-rated items, which hold most of the ratings, and ranks every other item after them,
    by popularity. On MovieLens the 4,000 most-rated rank as well as all 8,700 (see
    `Settings.ease_max_items`).
    `description` says which."""

    name = "ease"

    MAX_ITEMS = 4_000

    def __init__(
        self, train: Interactions, lam: float = 200.0, *, max_items: int = MAX_ITEMS
    ) -> None:
        counts = train.item_counts()
        self.n_items = train.n_items
        kept = np.arange(self.n_items)
        if self.n_items > max_items:
            kept = np.sort(np.argsort(-counts, kind="stable")[:max_items])
        self.description = (
            f"EASE on all {self.n_items:,} items"
            if len(kept) == self.n_items
            else f"EASE on the {len(kept):,} most-rated of {self.n_items:,} items (the rest "
            "ranked after them, by popularity)"
        )
        column = np.full(self.n_items, -1, dtype=np.int64)
        column[kept] = np.arange(len(kept))
        cols = column[train.items]
        learned = cols >= 0
        users, cols = train.users[learned].astype(np.int64), cols[learned]
        if not is_sorted_by_pair(users, cols):
            # Not sorted by (user, item) without repeats, as snapshots come: binarise (a pair
            # rated twice is still one choice) and sort.
            keys = np.unique(users * len(kept) + cols)
            users, cols = keys // len(kept), keys % len(kept)
        # X as each user's learned items (CSR rows, int32 indices: 4 bytes a rating).
        self.indptr = _indptr(users, train.n_users)
        self.cols = cols.astype(np.int32)
        gram = self._gram(users, len(kept), train.n_users)
        del users, cols
        gram.diagonal().add_(lam)
        factor = torch.linalg.cholesky(gram)
        del gram  # at most two dense K x K matrices at a time: 0.8 GB for 10,000 items
        p = torch.cholesky_inverse(factor)
        del factor
        p.div_(-torch.diagonal(p).clone())
        p.fill_diagonal_(0.0)
        self.weights = p
        self.kept = torch.from_numpy(kept) if len(kept) < self.n_items else None
        # Items it did not learn come after every learned one (EASE's scores are a few units
        # at most), the most rated first.
        self.unlearned = torch.from_numpy(counts / max(1, counts.max()) - 1e3).float()

    def _gram(self, users: np.ndarray, n_kept: int, n_users: int) -> torch.Tensor:
        """X'X, a block of item rows at a time: sparse products of the item-major X' rows
        with X, each made dense into its rows of the result. In one product, the nearly
        dense Gram matrix in sparse form took 2 GB at 25M ratings; by blocks, memory is the
        dense result and one block's share."""
        order = np.argsort(self.cols, kind="stable")  # item-major, users ascending within
        t_users = users[order].astype(np.int32)
        t_indptr = _indptr(self.cols[order], n_kept)
        del order
        gram = torch.empty(n_kept, n_kept)
        block = 256
        with warnings.catch_warnings():
            # torch's sparse CSR kernels warn that they are "beta"; the result is checked
            # against a dense product in the tests.
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support")
            x = torch.sparse_csr_tensor(
                torch.from_numpy(self.indptr.astype(np.int32)),
                torch.from_numpy(self.cols),
                torch.ones(len(self.cols)),
                (n_users, n_kept),
                check_invariants=False,  # built here, valid by construction
            )
            for s in range(0, n_kept, block):
                e = min(n_kept, s + block)
                lo, hi = int(t_indptr[s]), int(t_indptr[e])
                rows = torch.sparse_csr_tensor(
                    torch.from_numpy((t_indptr[s : e + 1] - lo).astype(np.int32)),
                    torch.from_numpy(t_users[lo:hi]),
                    torch.ones(hi - lo),
                    (e - s, n_users),
                    check_invariants=False,
                )
                gram[s:e] = (rows @ x).to_dense()
        return gram

    def predict_rows(self, users: np.ndarray, items: np.ndarray) -> None:
        return None

    def rank_scores(self, users: np.ndarray) -> torch.Tensor:
        users = np.asarray(users, dtype=np.int64)
        starts, ends = self.indptr[users], self.indptr[users + 1]
        lengths = ends - starts
        positions = np.repeat(starts - np.cumsum(lengths) + lengths, lengths) + np.arange(
            int(lengths.sum())
        )
        history = torch.zeros(len(users), self.weights.shape[0])
        history[
            torch.from_numpy(np.repeat(np.arange(len(users)), lengths)),
            torch.from_numpy(self.cols[positions].astype(np.int64)),
        ] = 1.0
        learned = history @ self.weights
        if self.kept is None:
            return learned
        scores = self.unlearned.expand(len(users), -1).clone()
        scores[:, self.kept] = learned
        return scores


def _indptr(rows: np.ndarray, n_rows: int) -> np.ndarray:
    """CSR row pointers of sorted `rows`."""
    indptr = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=n_rows), out=indptr[1:])
    return indptr
