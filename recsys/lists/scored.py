"""What lists are asked for (`ListRequest`) and made of: scored items
(`recsys.model.scored.Scored`), and a user's ranked candidates with the key they are cached
under."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

if TYPE_CHECKING:
    from recsys.exploration import Exploring


@dataclass(frozen=True, eq=False)
class ListRequest:
    """What a list is asked for, besides whom for."""

    k: int = 10
    exclude: Sequence[str] = ()
    """Item ids the list must not hold (besides what the user rated, unless
    `include_seen`)."""
    include_seen: bool = False
    min_support: int = 1
    """Items rated fewer times in training are left out: their vectors are mostly noise."""
    allowed: np.ndarray | None = None
    """A mask over item rows (a genre filter), applied before the top k is cut."""
    exploring: Exploring | None = None
    """With it, a share of the slots is drawn by its policy from every candidate."""
    demoted: Mapping[str, float] | None = None
    """Logits to subtract from these items' scores before the list is cut or drawn: the
    rotation of what the user was shown and never answered (`recsys.lists.rotation`)."""


class Ranking(NamedTuple):
    """A user's best candidates, best first: what a list is cut from."""

    rows: np.ndarray
    scores: np.ndarray
    ratings: np.ndarray
    """Predicted ratings."""
    complete: bool
    """Whether these are every item the user may get."""


class RankingKey(NamedTuple):
    """What one user's ranking is scored for: a `Ranking` of a key serves every list that asks
    for as many items or fewer, with the same support and seen items."""

    row: int
    min_support: int
    include_seen: bool
    depth: int
