"""A model's items by themselves: nearest items by cosine similarity of the item factors
(through `recsys.model.neighbors`), and the items liked or disliked beyond taste (biases).

An item added after training (`recsys.model.new_items`) is matched by both heads' vectors
(`Recommender.reason_vectors`), not the rating head's alone: its rating factors are a
regression on its genres, which mostly says how well films of those genres are rated, so a
new horror film's nearest by them were flops of any genre (Showgirls, Speed 2); by both
heads, whose ranking half holds the genres' learned embeddings, all ten were horror. Its
neighbours are trained items only: new items of the same genres share one vector, and would
fill each other's lists at similarity 1."""

from __future__ import annotations

import numpy as np

from recsys.data.vocab import UNKNOWN
from recsys.model.neighbors import ExactIndex, NeighborIndex, build_index
from recsys.model.recommender import Recommender
from recsys.model.scored import Scored
from recsys.model.topk import best


class SimilarItems:
    def __init__(self, model: Recommender, *, exact_limit: int = 100_000) -> None:
        self.model = model
        self.exact_limit = exact_limit
        self._index: NeighborIndex | None = None
        self._new_index: ExactIndex | None = None

    def index(self) -> NeighborIndex:
        """The nearest-item index, built on first use; a service builds it when it loads a
        model so that the first request does not pay for it."""
        if self._index is None:
            self._index = build_index(self.model.unit_items, exact_limit=self.exact_limit)
        return self._index

    def similar(
        self,
        item_id: str,
        k: int = 10,
        *,
        min_support: int = 1,
        allowed: np.ndarray | None = None,
    ) -> list[Scored]:
        """Nearest items by cosine similarity of the item factors, the item itself excluded.

        `min_support` drops items rated fewer times: an item with one rating has a vector that
        says little, yet can land anywhere."""
        m = self.model
        row = m.item_vocab.index(item_id)
        if row == UNKNOWN or not m.is_known_item(item_id):
            return []
        eligible = m.eligible(min_support)
        if allowed is not None:
            eligible &= allowed
        eligible[row] = False
        if m.is_new[row]:
            eligible &= ~m.is_new
            if self._new_index is None:
                self._new_index = ExactIndex(m.reason_vectors)
            rows, sims = self._new_index.search(m.reason_vectors[row], k, eligible)
        else:
            rows, sims = self.index().search(m.unit_items[row], k, eligible)
        ids = m.item_vocab.ids_of(rows.tolist())
        return [Scored(i, float(v)) for i, v in zip(ids, sims.tolist(), strict=True)]

    def by_bias(self, n: int = 10, *, min_support: int = 20, lowest: bool = False) -> list[Scored]:
        """Items with the highest (or lowest) learned bias: liked (or disliked) beyond what
        their fans' tastes explain (fastai book, ch. 8)."""
        m = self.model
        bias = -m.item_bias if lowest else m.item_bias
        # Items added after training have a bias from their genres, not from their ratings.
        learned = m.eligible(min_support) & ~m.is_new
        rows, values = best(np.where(learned, bias, -np.inf), n)
        ids = m.item_vocab.ids_of(rows.tolist())
        return [Scored(i, -v if lowest else v) for i, v in zip(ids, values.tolist(), strict=True)]
