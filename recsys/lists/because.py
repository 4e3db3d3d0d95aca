"""Why an item is in a list: the user's own liked items most like it, or what else put it
there.

For each item of a list, in order of preference:
- `exploration`: the exploration policy drew it (`recsys.exploration`), whatever else holds;
- `new`: it was added to the catalog after the model was trained, and is there for its
  genres (`recsys.model.new_items`);
- `liked`: up to `AT_MOST` of the items the user liked (rated at or above the model's liked
  threshold) nearest it, each at least `MIN_SIMILARITY` (the nearest first), by the mean
  cosine of both heads' item vectors (`Recommender.reason_vectors`);
- `popular`: none of them is near enough, or the user liked nothing we know (a stranger's
  list, a visitor who only sent low ratings): the item is there because users like them
  chose it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, NamedTuple

import numpy as np

from recsys.model.lru import LruCache
from recsys.model.recommender import Recommender

AT_MOST = 2
"""Liked items a reason names at most."""

MIN_SIMILARITY = 0.4
"""Similarity (`Recommender.reason_vectors`: the mean of the two heads' cosines) below which
a liked item is not named. On MovieLens a random pair of films with at least 10 ratings is
at 0.04 +- 0.23, and 5.7 % of pairs reach 0.4; a film's nearest neighbours are at 0.6-0.85."""


Reason = Literal["liked", "popular", "exploration", "new"]


class Because(NamedTuple):
    reason: Reason
    items: tuple[str, ...] = ()
    """With `liked`: the liked items named, the nearest first."""


POPULAR = Because("popular")
EXPLORATION = Because("exploration")
NEW = Because("new")


def liked_rows(model: Recommender, item_ids: Sequence[str], ratings: Sequence[float]) -> np.ndarray:
    """The trained item rows among `item_ids` rated at or above the model's liked threshold
    (a visitor's ratings, which the model never learned), each once."""
    rows, known = model.trained_rows(item_ids)
    liked = np.asarray(ratings, dtype=np.float64) >= model.liked_threshold
    unique: np.ndarray = np.unique(rows[known & liked])
    return unique


def explain(
    model: Recommender,
    item_ids: Sequence[str],
    explored: Sequence[bool],
    liked: np.ndarray,
) -> list[Because]:
    """The reason of each item of a list (`item_ids`, with the `explored` flags of its
    slots), for a user who liked the item rows `liked` (without repeats)."""
    if not len(item_ids):
        return []
    rows = model.item_vocab.indices(item_ids)
    new = model.is_new[rows].tolist() if model.new_items else [False] * len(rows)
    if not len(liked):
        return [
            EXPLORATION if drawn else NEW if fresh else POPULAR
            for drawn, fresh in zip(explored, new, strict=True)
        ]
    unit = model.reason_vectors
    sims = unit[rows] @ unit[liked].T  # list items x liked items
    sims[rows[:, None] == liked[None, :]] = -np.inf  # an item is not its own reason
    # The AT_MOST nearest of each row, nearest first, by as many passes of argmax: reasons
    # are computed on every list served, and a partial sort and its gathers cost twice as
    # many numpy calls.
    at = np.arange(len(rows))
    named, near = [], []
    for _ in range(min(AT_MOST, len(liked))):
        best = sims.argmax(axis=1)
        near.append(sims[at, best].tolist())
        named.append(model.item_vocab.ids_of(liked[best].tolist()))
        sims[at, best] = -np.inf
    reasons = []
    for i, (drawn, fresh) in enumerate(zip(explored, new, strict=True)):
        if drawn or fresh:
            reasons.append(EXPLORATION if drawn else NEW)
            continue
        keep = tuple(
            ids[i] for ids, sim in zip(named, near, strict=True) if sim[i] >= MIN_SIMILARITY
        )
        reasons.append(Because("liked", keep) if keep else POPULAR)
    return reasons


class RememberedReasons:
    """The reasons of learned users' lists, by what the model learned they liked, kept by
    (user row, items, explored flags) for up to `users` users (about 1 KB each): a returning
    user's list is the one they were served, and its reasons cost more than finding it (a
    first visit's ~35 us against ~1 us for a returning user's, on MovieLens)."""

    def __init__(self, model: Recommender, users: int) -> None:
        self.model = model
        self._kept: LruCache[tuple[int, tuple[str, ...], tuple[bool, ...]], list[Because]]
        self._kept = LruCache(users)

    def __call__(
        self, user_id: str, item_ids: Sequence[str], explored: Sequence[bool]
    ) -> list[Because]:
        m = self.model
        row = m.user_vocab.index(user_id)
        key = (row, tuple(item_ids), tuple(explored))
        found = self._kept.get(key)
        if found is None:
            found = explain(m, item_ids, explored, m.liked(row))
            self._kept.put(key, found)
        return found
