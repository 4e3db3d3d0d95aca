"""What a model knows of an item from its genres alone: the vectors of items added to the
catalog after it was trained.

An item the model never learned has no rows of its own. From its genres it gets:
- in the ranking head, the output vector trained items have, q = v + mean_g h_g, with the
  typical item's own part v (a weighted mean over trained items) and the genre embeddings
  h_g the head learned (`ChoiceNet`); the typical item's input embedding; and a bias
  regressed on the genres;
- in the rating head, factors and a bias regressed on the genres.

The regressions are ridge regressions on each item's averaged genre membership (the rows
`ChoiceNet` uses), with an unpenalised intercept (the typical item), over the items with at
least `MIN_SUPPORT` training ratings: the row of an item rated once or twice is mostly the L2
prior's zero, and such items are most of a catalog (MovieLens: 6,800 of 9,066), so a prior
over every trained item made a new film an obscure one, ranked 285th of a horror fan's list.
A new item is placed as an established one of its genres, among which lists choose.

Such an item is "new" until the next retrain, which learns it like any other once it has
ratings.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from recsys.data.genres import Genres
    from recsys.model.ranking import RankingHead

MIN_SUPPORT = 10
"""Training ratings of the items the prior learns from: lists' least support by default
(`Settings.recommend_min_support`). Where fewer than `MIN_ITEMS` items have that many, every
trained item."""
MIN_ITEMS = 50
RIDGE = 1.0
"""L2 on the genres' coefficients, in units of item weight: a genre of a few rarely rated
items stays near the typical item."""
_CHUNK = 16_384
"""Items per block of the membership matrix while summing the normal equations."""


@dataclass(frozen=True, eq=False)
class GenrePrior:
    names: tuple[str, ...]
    """The genres the model learned, as the catalog spells them; rows of the coefficients."""
    rating: np.ndarray
    """(1 + genres) x (factors + 1): the intercept row (the typical item), then each genre's
    coefficients; columns the rating head's factors, then its item bias."""
    ranking_bias: np.ndarray | None
    """(1 + genres,): the ranking head's item bias regressed the same way (None without a
    ranking head)."""
    typical_out: np.ndarray | None
    """The typical trained item's own output vector v (genres' part excluded)."""
    typical_in: np.ndarray | None
    """The typical trained item's input embedding: what a new item adds to the vector of a
    user who rates it."""

    def __post_init__(self) -> None:
        if self.rating.ndim != 2 or self.rating.shape[0] != 1 + len(self.names):
            raise ValueError("genre prior's rating rows do not match its genres")
        if self.ranking_bias is not None and self.ranking_bias.shape != (1 + len(self.names),):
            raise ValueError("genre prior's ranking rows do not match its genres")

    @property
    def _index(self) -> dict[str, int]:
        return {name.casefold(): n for n, name in enumerate(self.names)}

    def design(self, genres: Sequence[Sequence[str]]) -> np.ndarray:
        """Rows [1, membership] for items with these genres (each row's known genres weigh
        1 / their number, as `ChoiceNet` averages them; unknown genres are ignored)."""
        index = self._index
        rows = np.zeros((len(genres), 1 + len(self.names)), dtype=np.float64)
        rows[:, 0] = 1.0
        for r, names in enumerate(genres):
            known = sorted({index[g.casefold()] for g in names if g.casefold() in index})
            if known:
                rows[r, [1 + g for g in known]] = 1.0 / len(known)
        return rows

    def known(self, genres: Sequence[str]) -> list[str]:
        """The genres of one item that the model learned, as the model spells them."""
        index = self._index
        return [self.names[index[g.casefold()]] for g in genres if g.casefold() in index]

    @classmethod
    def fit(
        cls,
        genres: Genres | None,
        counts: np.ndarray,
        item_factors: np.ndarray,
        item_bias: np.ndarray,
        ranking: RankingHead | None,
    ) -> GenrePrior | None:
        """The prior of a trained model: `genres` of its item rows, `counts` their training
        ratings; None without genres."""
        if genres is None or genres.n_genres == 0 or not (counts > 0).any():
            return None
        weights = (counts >= MIN_SUPPORT).astype(np.float64)
        if weights.sum() < MIN_ITEMS:
            weights = (counts > 0).astype(np.float64)
        targets = [item_factors, item_bias[:, None]]
        if ranking is not None:
            targets.append(ranking.item_bias[:, None])
        gram, moments = _normal_equations(genres, weights, np.hstack(targets))
        penalty = RIDGE * np.eye(len(gram))
        penalty[0, 0] = 0.0  # the intercept is the typical item, not shrunk
        coefficients = np.linalg.solve(gram + penalty, moments).astype(np.float32)
        k = item_factors.shape[1] + 1
        ranking_bias = typical_out = typical_in = None
        if ranking is not None:
            ranking_bias = coefficients[:, k].copy()
            total = weights.sum()
            own = ranking.item_out.astype(np.float64)
            if ranking.genre_out is not None:
                own = own - _membership_product(genres, ranking.genre_out)
            typical_out = (weights @ own / total).astype(np.float32)
            typical_in = (weights @ ranking.item_in.astype(np.float64) / total).astype(np.float32)
        return cls(genres.names, coefficients[:, :k].copy(), ranking_bias, typical_out, typical_in)


def _rows_of(genres: Genres, lo: int, hi: int) -> np.ndarray:
    """Items lo..hi's averaged membership rows, dense."""
    block = np.zeros((hi - lo, genres.n_genres), dtype=np.float64)
    starts = genres.indptr[lo : hi + 1]
    counts = np.diff(starts)
    rows = np.repeat(np.arange(hi - lo), counts)
    block[rows, genres.index[starts[0] : starts[-1]]] = 1.0 / counts[rows]
    return block


def _normal_equations(
    genres: Genres, weights: np.ndarray, targets: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """X'WX and X'WY of the weighted regression of `targets` on [1, membership], a block of
    items at a time (a catalog's membership matrix is never held whole)."""
    g = genres.n_genres
    gram = np.zeros((1 + g, 1 + g))
    moments = np.zeros((1 + g, targets.shape[1]))
    for lo in range(0, genres.n_items, _CHUNK):
        hi = min(lo + _CHUNK, genres.n_items)
        x = np.hstack([np.ones((hi - lo, 1)), _rows_of(genres, lo, hi)])
        wx = x * weights[lo:hi, None]
        gram += x.T @ wx
        moments += wx.T @ targets[lo:hi].astype(np.float64)
    return gram, moments


def _membership_product(genres: Genres, vectors: np.ndarray) -> np.ndarray:
    """Each item's mean of its genres' `vectors` (items x factors)."""
    out = np.zeros((genres.n_items, vectors.shape[1]))
    for lo in range(0, genres.n_items, _CHUNK):
        hi = min(lo + _CHUNK, genres.n_items)
        out[lo:hi] = _rows_of(genres, lo, hi) @ vectors.astype(np.float64)
    return out
