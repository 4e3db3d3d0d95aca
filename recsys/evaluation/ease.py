"""EASE (Steck 2019, "Embarrassingly shallow autoencoders for sparse data"), the reports'
strong baseline: item-item weights B = -P / diag(P) with P = (X'X + lambda I)^-1 over the
binarised ratings X, the diagonal held at zero; a user's scores are their row of X times B.

Two ways to the same scores, whichever is cheaper:

- by items (Steck's): invert the items' Gram matrix X'X, cubic in the items and quadratic in
  memory (a Cholesky inverse in float32: 0.7 s for 4,000 items on 2 cores, 6.5 s for 8,700);
- by users, where there are fewer users than items: by the Woodbury identity
  P = (I - X' M X) / lambda with M = (XX' + lambda I)^-1, so XP = MX and
  XB = X - MX / diag(P), with diag(P) = (1 - diag(X' M X)) / lambda. Cubic in the users and
  users x items in memory and time: on MovieLens (671 users, 8,700 items) EASE on every item
  in 0.1 s on one core, fit and evaluated, where by items the 4,000 most-rated took 1.4 s
  (all 8,700: 14 s). It scores the users of its training data, which is what evaluation
  asks of it; B itself (`item_weights`, for users it never saw) needs the first way.

Either way its memory is bounded by `max_items` squared floats: EASE learns every item where
that holds (the items' Gram matrix, or the users x items scores, fit in it), else the
`max_items` most-rated items, which hold most of the ratings, and ranks every other item after
them, by popularity. `description` says which.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from recsys.data.interactions import Interactions, is_sorted_by_pair


class Ease:
    """EASE as a `Scorer` (`recsys.evaluation.baselines`): it ranks, and predicts no ratings."""

    name = "ease"

    MAX_ITEMS = 4_000

    def __init__(
        self,
        train: Interactions,
        lam: float = 200.0,
        *,
        max_items: int = MAX_ITEMS,
        item_weights: bool = False,
    ) -> None:
        counts = train.item_counts()
        self.n_items = train.n_items
        n_users = train.n_users
        kept = np.arange(self.n_items)
        n_learned = self.learned_items(n_users, self.n_items, max_items, item_weights)
        if n_learned < self.n_items:
            kept = np.sort(np.argsort(-counts, kind="stable")[:n_learned])
        by_users = not item_weights and n_users < len(kept)
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
        self.indptr = _indptr(users, n_users)
        self.cols = cols.astype(np.int32)
        # B (learned items x learned items) where EASE learned by items; MX / diag(P)
        # (users x learned items) where it learned by users.
        self._weights: torch.Tensor | None = None
        self._reconstruction: torch.Tensor | None = None
        if by_users:
            self._reconstruction = self._by_users(users, len(kept), lam)
        else:
            self._weights = self._by_items(users, len(kept), lam)
        self.kept = torch.from_numpy(kept) if len(kept) < self.n_items else None
        # Items it did not learn come after every learned one (EASE's scores are a few units
        # at most), the most rated first.
        self.unlearned = torch.from_numpy(counts / max(1, counts.max()) - 1e3).float()

    @staticmethod
    def learned_items(
        n_users: int, n_items: int, max_items: int, item_weights: bool = False
    ) -> int:
        """How many (most-rated) items EASE learns: every item where one of its two ways
        holds at most `max_items` squared floats (users x items scores by users, where there
        are fewer users; items x items by items, which `item_weights` asks for), else
        `max_items`."""
        side = n_items if item_weights else min(n_users, n_items)
        return n_items if side * n_items <= max_items * max_items else max_items

    @property
    def weights(self) -> torch.Tensor:
        """B (learned items x learned items), for users it never saw; only where it learned
        by items, as `item_weights=True` asks."""
        if self._weights is None:
            raise ValueError("EASE learned by users here: ask for item_weights=True to get B")
        return self._weights

    def _by_items(self, users: np.ndarray, n_kept: int, lam: float) -> torch.Tensor:
        """B from the items' Gram matrix."""
        gram = self._gram(users, n_kept, len(self.indptr) - 1)
        gram.diagonal().add_(lam)
        factor = torch.linalg.cholesky(gram)
        del gram  # at most two dense K x K matrices at a time: 0.8 GB for 10,000 items
        p = torch.cholesky_inverse(factor)
        del factor
        p.div_(-torch.diagonal(p).clone())
        p.fill_diagonal_(0.0)
        return p

    def _by_users(self, users: np.ndarray, n_kept: int, lam: float) -> torch.Tensor:
        """MX / diag(P) from the users' Gram matrix (module docstring), with X sparse where
        it is multiplied (three times quicker than dense on MovieLens). The users' inverse in
        float64: diag(P) is a difference of numbers near 1 for the most-rated items."""
        n_users = len(self.indptr) - 1
        rows, cols = torch.from_numpy(users), torch.from_numpy(self.cols.astype(np.int64))
        dense = torch.zeros(n_users, n_kept)
        dense[rows, cols] = 1.0
        t_indptr, t_users = self._item_major(users, n_kept)
        with warnings.catch_warnings():
            # torch's sparse CSR kernels warn that they are "beta"; the result is checked
            # against the closed form in the tests.
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support")
            x = _csr(self.indptr, self.cols, (n_users, n_kept))
            gram = (x @ dense.T).double()  # exact: X's entries are 0 and 1
            del dense
            gram.diagonal().add_(lam)
            m = torch.cholesky_inverse(torch.linalg.cholesky(gram)).float()
            del gram
            mx = (_csr(t_indptr, t_users, (n_kept, n_users)) @ m).T.contiguous()
        del m
        # diag(X'MX): for each item, the sum of MX over the users who chose it.
        quadratic = torch.zeros(n_kept, dtype=torch.float64)
        quadratic.index_add_(0, cols, mx[rows, cols].double())
        return mx.div_(((1.0 - quadratic) / lam).float())

    def _gram(self, users: np.ndarray, n_kept: int, n_users: int) -> torch.Tensor:
        """X'X, a block of item rows at a time: sparse products of the item-major X' rows
        with X, each made dense into its rows of the result. In one product, the nearly
        dense Gram matrix in sparse form took 2 GB at 25M ratings; by blocks, memory is the
        dense result and one block's share."""
        t_indptr, t_users = self._item_major(users, n_kept)
        gram = torch.empty(n_kept, n_kept)
        block = 256
        with warnings.catch_warnings():
            # torch's sparse CSR kernels warn that they are "beta"; the result is checked
            # against a dense product in the tests.
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support")
            x = _csr(self.indptr, self.cols, (n_users, n_kept))
            for s in range(0, n_kept, block):
                e = min(n_kept, s + block)
                lo, hi = int(t_indptr[s]), int(t_indptr[e])
                rows = _csr(t_indptr[s : e + 1] - lo, t_users[lo:hi], (e - s, n_users))
                gram[s:e] = (rows @ x).to_dense()
        return gram

    def _item_major(self, users: np.ndarray, n_kept: int) -> tuple[np.ndarray, np.ndarray]:
        """X' as CSR rows (each learned item's users, ascending): row pointers, and the
        users as int32."""
        order = np.argsort(self.cols, kind="stable")
        return _indptr(self.cols[order], n_kept), users[order].astype(np.int32)

    def predict_rows(self, users: np.ndarray, items: np.ndarray) -> None:
        return None

    def rank_scores(self, users: np.ndarray) -> torch.Tensor:
        users = np.asarray(users, dtype=np.int64)
        starts, ends = self.indptr[users], self.indptr[users + 1]
        lengths = ends - starts
        positions = np.repeat(starts - np.cumsum(lengths) + lengths, lengths) + np.arange(
            int(lengths.sum())
        )
        n_learned = len(self.unlearned) if self.kept is None else len(self.kept)
        history = torch.zeros(len(users), n_learned)
        history[
            torch.from_numpy(np.repeat(np.arange(len(users)), lengths)),
            torch.from_numpy(self.cols[positions].astype(np.int64)),
        ] = 1.0
        if self._weights is not None:
            learned = history @ self._weights
        else:
            assert self._reconstruction is not None  # learned by users
            learned = history.sub_(self._reconstruction[torch.from_numpy(users)])
        if self.kept is None:
            return learned
        scores = self.unlearned.expand(len(users), -1).clone()
        scores[:, self.kept] = learned
        return scores


def _csr(indptr: np.ndarray, columns: np.ndarray, shape: tuple[int, int]) -> torch.Tensor:
    """A sparse CSR matrix of ones at `columns` (int32) in rows `indptr`."""
    return torch.sparse_csr_tensor(
        torch.from_numpy(indptr.astype(np.int32)),
        torch.from_numpy(columns),
        torch.ones(len(columns)),
        shape,
        check_invariants=False,  # built here, valid by construction
    )


def _indptr(rows: np.ndarray, n_rows: int) -> np.ndarray:
    """CSR row pointers of sorted `rows`."""
    indptr = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=n_rows), out=indptr[1:])
    return indptr
