"""Exploration: a share of each list's slots goes to items the model ranks lower, drawn at random
with known probabilities, so that logged traffic can judge another policy (`recsys.offpolicy`)
and the loop does not only ever show what it already believes.

The policy, for a list of k slots with exploration share s:

- m = round(s x k) slots explore (halves round up); they sit at evenly spaced positions, the
  last slot always among them: positions (j + 1) x k // m - 1 for j < m (0-based).
- The other k - m slots hold the model's best k - m items, in order. Their propensity is 1.
- Every other candidate is dealt into one of m strata by its rank: the item ranked r-th after
  the top k - m goes to stratum r mod m, so each stratum holds items of every quality.
- Exploration slot j shows one item drawn from stratum j with probability softmax(score / T)
  within the stratum (T: `temperature`, in units of the ranking score).

Because each item belongs to the top or to exactly one stratum, the probability that an item
is shown at all, and at its position, is exact and cheap: 1 in the top, its softmax share in
its stratum, 0 nowhere else. (Sampling several slots from one pool without replacement, as a
Plackett-Luce draw does, has no closed form for the marginal of the third slot on.) Every
candidate has a positive propensity when m >= 1, which is what off-policy estimators need.

The draw is seeded per (user, day): a user who comes back the same day sees the same list.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Drawn:
    """One list drawn by the policy: candidate indices in slot order, whether each slot
    explored, and the probability that the policy shows that candidate in that slot."""

    candidates: np.ndarray
    explored: np.ndarray
    propensities: np.ndarray


@dataclass(frozen=True)
class ExplorePolicy:
    share: float = 0.0
    temperature: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.share < 1.0:
            raise ValueError("the exploration share must lie in [0, 1)")
        if self.temperature <= 0:
            raise ValueError("the exploration temperature must be positive")

    def slots(self, k: int) -> int:
        """How many of k slots explore."""
        return min(k, int(np.floor(self.share * k + 0.5)))

    def positions(self, k: int) -> np.ndarray:
        """The 0-based positions of the exploring slots in a list of k."""
        m = self.slots(k)
        return (np.arange(1, m + 1) * k) // m - 1 if m else np.empty(0, dtype=np.int64)

    def as_json(self) -> dict[str, float]:
        """As impressions log it (`policy`) and reports show it."""
        return {"explore_share": self.share, "temperature": self.temperature}

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> ExplorePolicy:
        """The policy `as_json` recorded; a list logged without one did not explore."""
        data = data or {}
        return cls(float(data.get("explore_share", 0.0)), float(data.get("temperature", 1.0)))

    # --- the policy over one user's candidates ------------------------------------------------

    def layout(self, scores: np.ndarray, k: int) -> Layout:
        """The policy for one user: `scores` holds one ranking score per candidate (-inf: may
        not be shown); lists hold k of them, or all when fewer are allowed."""
        allowed = np.flatnonzero(np.isfinite(scores))
        k = min(k, len(allowed))
        m = self.slots(k)
        if m == 0 or len(allowed) <= k:
            order = allowed[np.argsort(-scores[allowed], kind="stable")][:k]
            return Layout(order, [], [], np.empty(0, dtype=np.int64))
        if m == 1:
            # One stratum holds every candidate below the top: no need to sort them.
            top = _best(scores, allowed, k - 1)
            strata = [np.setdiff1d(allowed, top, assume_unique=True)]
        else:
            order = allowed[np.argsort(-scores[allowed], kind="stable")]
            top, rest = order[: k - m], order[k - m :]
            strata = [rest[j::m] for j in range(m)]
        shares = [self._softmax(scores[stratum]) for stratum in strata]
        return Layout(top, strata, shares, self.positions(k))

    def _softmax(self, scores: np.ndarray) -> np.ndarray:
        z = scores.astype(np.float64) / self.temperature
        z -= z.max()
        p = np.exp(z)
        out: np.ndarray = p / p.sum()
        return out


@dataclass(frozen=True)
class Layout:
    """One user's policy: the deterministic top, in order, and per exploring slot (at
    `positions`) its stratum of candidates with their probabilities."""

    top: np.ndarray
    strata: list[np.ndarray]
    shares: list[np.ndarray]
    positions: np.ndarray

    def draw(self, rng: np.random.Generator) -> Drawn:
        n = len(self.top) + len(self.strata)
        chosen = np.empty(n, dtype=np.int64)
        explored = np.zeros(n, dtype=bool)
        propensities = np.ones(n, dtype=np.float64)
        explored[self.positions] = True
        chosen[~explored] = self.top
        for slot, stratum, p in zip(self.positions, self.strata, self.shares, strict=True):
            pick = min(int(np.searchsorted(np.cumsum(p), rng.random(), side="right")), len(p) - 1)
            chosen[slot] = stratum[pick]
            propensities[slot] = p[pick]
        return Drawn(chosen, explored, propensities)

    def inclusion(self, n_candidates: int) -> np.ndarray:
        """Per candidate, the probability that the list shows it; sums to the list's length."""
        out = np.zeros(n_candidates, dtype=np.float64)
        out[self.top] = 1.0
        for stratum, p in zip(self.strata, self.shares, strict=True):
            out[stratum] = p
        return out


@dataclass(frozen=True)
class Exploring:
    """What a list is drawn with: the policy and this list's random generator."""

    policy: ExplorePolicy
    rng: np.random.Generator


def _best(scores: np.ndarray, allowed: np.ndarray, n: int) -> np.ndarray:
    """The n best of the allowed candidates, best first."""
    if n <= 0:
        return np.empty(0, dtype=np.int64)
    values = scores[allowed]
    part = np.argpartition(-values, n - 1)[:n] if n < len(values) else np.arange(len(values))
    best: np.ndarray = allowed[part[np.argsort(-values[part], kind="stable")]]
    return best


def daily_rng(user_id: str | None, day: date | None = None) -> np.random.Generator:
    """The generator of a user's explored slots today: the same list all day. A visitor with
    no id gets a fresh draw."""
    if user_id is None:
        return np.random.default_rng()
    day = day or datetime.now(UTC).date()
    digest = hashlib.blake2b(f"{user_id}\x00{day.isoformat()}".encode(), digest_size=8).digest()
    return np.random.default_rng(int.from_bytes(digest, "little"))
