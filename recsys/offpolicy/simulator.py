"""A world with known truth, to test the off-policy estimators: every user has a probability of
answering each shown item positively, so the true rate of any policy can be computed exactly,
and logged traffic drawn from it.

`World.from_recommender` takes the truth from a model (for the benchmark: one fitted on all of
MovieLens): a user answers a shown film positively with probability
    P(choose) x P(like | chosen) = sigmoid(s - c) x sigmoid(2 (rhat - liked))
where s is the model's ranking score, c an offset that sets how often people act on a list,
and rhat its predicted rating. Policies are score matrices (users x candidates) with an
`ExplorePolicy`; the truth never sees which policy showed an item, nor where: the item-level
assumption of `recsys.offpolicy.estimators` holds here by construction.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recsys.exploration import ExplorePolicy, Layout
from recsys.offpolicy.estimators import Slots


@dataclass(frozen=True)
class Logged:
    """Lists shown by a logging policy and the answers they got, one entry per slot."""

    users: np.ndarray
    """Per list."""
    lists: np.ndarray
    items: np.ndarray
    propensities: np.ndarray
    explored: np.ndarray
    rewards: np.ndarray
    size: np.ndarray
    """Per list: its number of slots."""


class World:
    def __init__(self, truth: np.ndarray) -> None:
        """`truth[u, i]`: the probability that user u answers a shown item i positively; every
        policy's scores are over the same columns."""
        if truth.ndim != 2 or np.any((truth < 0) | (truth > 1)):
            raise ValueError("truth must be a matrix of probabilities")
        self.truth = truth

    @property
    def n_users(self) -> int:
        return int(self.truth.shape[0])

    @staticmethod
    def from_scores(choice: np.ndarray, liked: np.ndarray, offset: float) -> World:
        """Truth from a model's ranking scores and P(like) per (user, item)."""
        chosen = 1.0 / (1.0 + np.exp(-(choice - offset)))
        return World(np.where(np.isfinite(choice), chosen * liked, 0.0))

    def layouts(self, policy: ExplorePolicy, scores: np.ndarray, k: int) -> list[Layout]:
        return [policy.layout(scores[u], k) for u in range(self.n_users)]

    def inclusion(self, layouts: list[Layout]) -> np.ndarray:
        """users x items: the probability that each user's list shows each item."""
        n_items = self.truth.shape[1]
        return np.stack([layout.inclusion(n_items) for layout in layouts])

    def value(self, inclusion: np.ndarray) -> float:
        """The true positive rate per slot of a policy, for users drawn uniformly."""
        per_user = (inclusion * self.truth).sum(axis=1) / inclusion.sum(axis=1)
        return float(per_user.mean())

    def log(self, layouts: list[Layout], n_lists: int, rng: np.random.Generator) -> Logged:
        """`n_lists` lists for users drawn uniformly, each drawn by its user's layout, and
        Bernoulli answers from the truth."""
        users = rng.integers(0, self.n_users, size=n_lists)
        drawn = [layouts[u].draw(rng) for u in users]
        size = np.array([len(d.candidates) for d in drawn])
        items = np.concatenate([d.candidates for d in drawn])
        lists = np.repeat(np.arange(n_lists), size)
        p = self.truth[users[lists], items]
        return Logged(
            users=users,
            lists=lists,
            items=items,
            propensities=np.concatenate([d.propensities for d in drawn]),
            explored=np.concatenate([d.explored for d in drawn]),
            rewards=(rng.random(len(p)) < p).astype(np.float64),
            size=size,
        )


def judged(
    logged: Logged,
    target: np.ndarray,
    logging: np.ndarray,
    predicted: np.ndarray | None = None,
) -> Slots:
    """The estimators' input for a target policy given as its inclusion matrix (users x
    items), with the logging policy's (for support) and an optional reward model `predicted`
    (users x items) for DR."""
    users = logged.users[logged.lists]
    at = target[users, logged.items]
    direct = None
    rhat = None
    if predicted is not None:
        rhat = predicted[users, logged.items]
        direct = (target * predicted).sum(axis=1)[logged.users]
    unsupported = (target * (logging == 0)).sum(axis=1) / target.sum(axis=1)
    return Slots(
        lists=logged.lists,
        size=logged.size,
        logging=logged.propensities,
        target=at,
        reward=logged.rewards,
        predicted=rhat,
        direct=direct,
        unsupported=unsupported[logged.users],
    )
