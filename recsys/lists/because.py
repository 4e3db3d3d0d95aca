"""Why an item is in a list: the user's own liked items most like it, or what else put it
there.

For each item of a list, in order of preference:
- `exploration`: the exploration policy drew it (`recsys.exploration`), whatever else holds;
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

from recsys.model.recommender import Recommender

AT_MOST = 2
"""Liked items a reason names at most."""

MIN_SIMILARITY = 0.4
"""Similarity (`Recommender.reason_vectors`: the mean of the two heads' cosines) below which
a liked item is not named. On MovieLens a random pair of films with at least 10 ratings is
at 0.04 +- 0.23, and 5.7 % of pairs reach 0.4; a film's nearest neighbours are at 0.6-0.85."""


Reason = Literal["liked", "popular", "exploration"]


class Because(NamedTuple):
    reason: Reason
    items: tuple[str, ...] = ()
    """With `liked`: the liked items named, the nearest first."""


POPULAR = Because("popular")
EXPLORATION = Because("exploration")


def liked_rows(model: Recommender, item_ids: Sequence[str], ratings: Sequence[float]) -> np.ndarray:
    """The trained item rows among `item_ids` rated at or above the model's liked threshold
    (a visitor's ratings, which the model never learned)."""
    rows, known = model.trained_rows(item_ids)
    liked = np.asarray(ratings, dtype=np.float64) >= model.liked_threshold
    return rows[known & liked]


def explain(
    model: Recommender,
    item_ids: Sequence[str],
    explored: Sequence[bool],
    liked: np.ndarray,
) -> list[Because]:
    """The reason of each item of a list (`item_ids`, with the `explored` flags of its
    slots), for a user who liked the item rows `liked`."""
    if not len(item_ids):
        return []
    rows = model.item_vocab.indices(item_ids)
    liked = np.unique(liked)
    unit = model.reason_vectors
    sims = unit[rows] @ unit[liked].T  # list items x liked items
    order = np.argsort(-sims, axis=1, kind="stable")[:, :AT_MOST]
    reasons = []
    for i, drawn in enumerate(explored):
        if drawn:
            reasons.append(EXPLORATION)
            continue
        near = [j for j in order[i] if sims[i, j] >= MIN_SIMILARITY and liked[j] != rows[i]]
        if not near:
            reasons.append(POPULAR)
            continue
        named = model.item_vocab.ids_of([int(liked[j]) for j in near])
        reasons.append(Because("liked", tuple(named)))
    return reasons
