"""Baselines every model is compared against. A model that does not beat them is not shipped.

Each scorer offers `predict_rows` (ratings for (user, item) rows; None if it predicts no
ratings) and `rank_scores` (a users x items score matrix; None if it cannot rank). The matrix
is the caller's own: evaluation masks each user's training items in it, in place.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch

from recsys.data.interactions import Interactions


class Scorer(Protocol):
    name: str

    def predict_rows(self, users: np.ndarray, items: np.ndarray) -> np.ndarray | None: ...

    def rank_scores(self, users: np.ndarray) -> torch.Tensor | None: ...


class GlobalMean:
    """Predicts the mean training rating for everything; it cannot rank."""

    name = "global_mean"

    def __init__(self, train: Interactions) -> None:
        self.mean = float(train.ratings.mean())

    def predict_rows(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        return np.full(len(users), self.mean)

    def rank_scores(self, users: np.ndarray) -> None:
        return None


def _chunks(n: int, size: int = 1 << 22) -> list[slice]:
    return [slice(s, s + size) for s in range(0, n, size)]


class BiasBaseline:
    """mu + b_u + b_i with damped means (Koren 2010, "Factor in the neighbors", eq. 2):
    b_i = sum(r - mu) / (lambda_i + n_i), then b_u = sum(r - mu - b_i) / (lambda_u + n_u).
    Ranks by mu + b_u + b_i, the same order for every user: the best-liked items."""

    name = "biases"

    def __init__(
        self,
        train: Interactions,
        item_damping: float = 25.0,
        user_damping: float = 10.0,
        clip: tuple[float, float] | None = None,
    ) -> None:
        self.mean = float(train.ratings.mean(dtype=np.float64))
        # Sums a few million ratings at a time: float64 copies of 25M ratings would cost
        # hundreds of MB each at the training process's peak.
        item_sum = np.zeros(train.n_items)
        user_sum = np.zeros(train.n_users)
        for part in _chunks(len(train)):
            dev = train.ratings[part].astype(np.float64) - self.mean
            item_sum += np.bincount(train.items[part], dev, train.n_items)
        self.item_bias = item_sum / (item_damping + train.item_counts())
        for part in _chunks(len(train)):
            dev = train.ratings[part] - self.mean - self.item_bias[train.items[part]]
            user_sum += np.bincount(train.users[part], dev, train.n_users)
        self.user_bias = user_sum / (user_damping + train.user_counts())
        self.clip = clip

    def predict_rows(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        users, items = np.asarray(users), np.asarray(items)
        bu = np.where(users >= 0, self.user_bias[np.maximum(users, 0)], 0.0)
        bi = np.where(items >= 0, self.item_bias[np.maximum(items, 0)], 0.0)
        pred = self.mean + bu + bi
        return np.clip(pred, *self.clip) if self.clip else pred

    def rank_scores(self, users: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(self.item_bias).float().repeat(len(users), 1)


class MostPopular:
    """Ranks items by how many ratings they have; it predicts no ratings."""

    name = "most_popular"

    def __init__(self, train: Interactions) -> None:
        self.counts = train.item_counts().astype(np.float32)

    def predict_rows(self, users: np.ndarray, items: np.ndarray) -> None:
        return None

    def rank_scores(self, users: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(self.counts).repeat(len(users), 1)
