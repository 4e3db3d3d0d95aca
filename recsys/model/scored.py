"""`Scored`: an item with what orders it in an answer (a list, a neighbour list, a bias
ranking). It sits with the model, which nearest items and bias rankings are made from, so that
`recsys.lists` depends on `recsys.model` and never the reverse."""

from __future__ import annotations

from typing import NamedTuple


class Scored(NamedTuple):
    # A named tuple, not a frozen dataclass: a served list makes ten of these per request,
    # and a frozen dataclass costs ~0.6 us each to build.
    item_id: str
    score: float
    """What a list is ordered by: the ranking score (see `recsys.model.ranking`); a
    similarity or a bias elsewhere. Comparable within one answer only."""
    predicted_rating: float | None = None
    """The rating head's prediction, inside the rating scale."""
    explored: bool = False
    """The slot was filled by the exploration policy (`recsys.exploration`)."""
    propensity: float = 1.0
    """The probability that the serving policy shows this item in this slot."""
