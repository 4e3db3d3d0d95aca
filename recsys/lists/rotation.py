"""Rotation: an item a user keeps being shown and never answers moves down their list.

The rule, for one user and one item: count the days on which the item was in a list served
to the user since their last answer on it (any feedback on the item: a rating, a click, a
skip...). From `after` such days on, the item's ranking logit is lowered by

    penalty = STEP x sum over those days of 0.5 ** (age in days / half_life_days)

so each unanswered day halves the item's odds against the others (STEP = ln 2), and the
penalty fades by half every `half_life_days`: an item ignored for three days running drops
by about 2 logits (an eighth of its odds), and is back near its place a few weeks later.
Days, not lists: a user who opens the page five times in a minute has seen one list.

The penalty is part of the policy: it is applied to the candidates' logits before the top k
and the exploration draw (`Ranker._finish`), so logged propensities are those of the lists
actually drawn, and the impression records the penalties (`as_json`) for off-policy
evaluation to apply them again.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from recsys.model.recommender import Recommender

DAY_S = 86_400.0


@dataclass(frozen=True)
class Rotation:
    after: int = 3
    """Unanswered days from which an item is demoted."""
    half_life_days: float = 7.0
    """Days over which a showing's weight in the penalty halves."""
    step: float = math.log(2)
    """Logits per unanswered day (at its full weight)."""

    @property
    def horizon_days(self) -> float:
        """Showings older than this weigh less than 1/16 and are forgotten."""
        return 4 * self.half_life_days

    def demotions(self, shown: Mapping[str, Sequence[float]], now: float) -> dict[str, float]:
        """The penalty of each item (logits to subtract) from `shown`: by item id, the days
        (seconds since the epoch, one per day) it was shown to the user since their last
        answer on it; items below `after` days are not demoted."""
        out = {}
        for item, days in shown.items():
            recent = [d for d in days if now - d <= self.horizon_days * DAY_S]
            if len(recent) >= self.after:
                decay = sum(
                    0.5 ** (max(0.0, now - d) / DAY_S / self.half_life_days) for d in recent
                )
                # Rounded as the impression records it: off-policy evaluation applies exactly
                # the penalty that drew the list.
                out[item] = round(self.step * decay, 6)
        return out

    def as_json(self, demoted: Mapping[str, float]) -> dict[str, Any]:
        """What an impression's policy records of the rotation that drew it, under its
        "rotation" key (read back by `recsys.store.logged`)."""
        return {
            "after": self.after,
            "half_life_days": self.half_life_days,
            "demoted": dict(demoted),
        }


def demoted_rows(
    model: Recommender, demoted: Mapping[str, float] | None
) -> tuple[np.ndarray, np.ndarray] | None:
    """The item rows of `model` that `demoted` names and their penalties as float32 (the
    ranking logits' type); None when it names none."""
    if not demoted:
        return None
    rows = model.item_vocab.indices(list(demoted))
    amounts = np.fromiter(demoted.values(), dtype=np.float64, count=len(rows))
    known = rows >= 0
    return rows[known], amounts[known].astype(np.float32)
