"""A stored model seen through the vocabularies of newer data, so it can be evaluated on a
fresh snapshot (and compared with a candidate trained on it) row for row."""

from __future__ import annotations

import numpy as np
import torch

from recsys.data.interactions import Interactions
from recsys.model.recommender import Recommender


class RemappedScorer:
    def __init__(self, rec: Recommender, data: Interactions, name: str = "model") -> None:
        self.name = name
        self.rec = rec
        self.user_map = rec.user_vocab.indices(data.user_vocab.ids)
        self.item_map = rec.item_vocab.indices(data.item_vocab.ids)

    def predict_rows(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        return self.rec.predict_rows(self.user_map[users], self.item_map[items])

    def rank_scores(self, users: np.ndarray) -> torch.Tensor:
        """Scores in the new item order; items or users the model never saw score -inf."""
        scores = torch.full((len(users), len(self.item_map)), -torch.inf)
        rows = self.user_map[users]
        known_users = np.flatnonzero(rows >= 0)
        known_items = np.flatnonzero(self.item_map >= 0)
        if len(known_users) and len(known_items):
            sub = self.rec.rank_scores(rows[known_users])
            sub = sub[:, torch.from_numpy(self.item_map[known_items])]
            ku, ki = torch.from_numpy(known_users), torch.from_numpy(known_items)
            scores[ku.unsqueeze(1), ki.unsqueeze(0)] = sub
        return scores


def remap(rec: Recommender, data: Interactions, name: str = "model") -> RemappedScorer:
    return RemappedScorer(rec, data, name)
