"""Simulated users with a known truth, driving a running service through its public API
(`recsys simulate-traffic --truth VERSION`).

The truth is a model (for a demo, one trained on all ratings): a user answers a film shown in
a list positively with probability

    P(choose) x P(like | chosen) = sigmoid(s - s10 + shift) x sigmoid(2 (rhat - liked))

where s is the truth's ranking score of the film for the user, s10 the user's tenth best score
(so a film at the edge of the truth's own top ten is chosen about half the time, whatever the
scale of a user's scores), and rhat its predicted rating. A positive answer is a rating
(the predicted one rounded to half stars, at least the liked threshold), sent with the list's
recommendation id; otherwise the user skips the film now and then. Because the truth is
known, the true rate of any policy can be compared with what off-policy estimates say.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx
import numpy as np

from recsys.lists.ranker import Ranker
from recsys.model.recommender import Recommender
from recsys.simulate import refused


@dataclass
class TruthReport:
    lists: int = 0
    slots: int = 0
    positives: int = 0
    expected_positives: float = 0.0
    """The sum of the truth's probabilities over every slot shown: the rate without noise."""
    errors: int = 0


class Truth:
    def __init__(self, model: Recommender, liked_threshold: float, shift: float = 0.0) -> None:
        self.model, self.liked, self.shift = model, liked_threshold, shift
        self.lists = Ranker(model)

    def users(self) -> list[str]:
        """The users the truth knows (and can answer for)."""
        ids = self.model.user_vocab.ids
        return [u for u in ids if self.model.is_known_user(u)]

    def probabilities(self, user_id: str, item_ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(P(positive), predicted rating) of shown items; unknown items are never chosen."""
        ranked = self.lists.candidate_logits(user_id, min_support=1, exclude=())
        if ranked is None:
            return np.zeros(len(item_ids)), np.zeros(len(item_ids))
        rows, logits, ratings = ranked
        finite = np.sort(logits[np.isfinite(logits)])[::-1]
        edge = finite[min(9, len(finite) - 1)]
        position = np.full(len(self.model.item_vocab), -1, dtype=np.int64)
        position[rows] = np.arange(len(rows))
        wanted = self.model.item_vocab.indices(item_ids)
        local = np.where(wanted >= 0, position[np.maximum(wanted, 0)], -1)
        score = np.where(local >= 0, logits[np.maximum(local, 0)], -np.inf)
        rating = np.where(local >= 0, ratings[np.maximum(local, 0)], 0.0)
        chosen = 1.0 / (1.0 + np.exp(-(score - edge + self.shift)))
        liked = 1.0 / (1.0 + np.exp(-2.0 * (rating - self.liked)))
        return chosen * liked, rating


def simulate_truth(
    client: httpx.Client,
    truth: Truth,
    *,
    rounds: int = 1,
    users_per_round: int = 150,
    k: int = 10,
    seed: int = 0,
) -> TruthReport:
    rng = np.random.default_rng(seed)
    people = truth.users()
    report = TruthReport()
    for _ in range(rounds):
        for user in rng.choice(people, size=min(users_per_round, len(people)), replace=False):
            _one(client, truth, str(user), k, rng, report)
    return report


def _one(
    client: httpx.Client,
    truth: Truth,
    user: str,
    k: int,
    rng: np.random.Generator,
    report: TruthReport,
) -> None:
    r = client.get(f"/v1/users/{user}/recommendations", params={"k": k})
    refused(r.status_code)
    if r.status_code != 200:
        report.errors += 1
        return
    listed = r.json()
    shown = [item["item_id"] for item in listed["items"]]
    p, rating = truth.probabilities(user, shown)
    report.lists += 1
    report.slots += len(shown)
    report.expected_positives += float(p.sum())
    events = []
    for item, chance, value in zip(shown, p, rating, strict=True):
        common = {
            "user_id": user,
            "item_id": item,
            "recommendation_id": listed["recommendation_id"],
        }
        if rng.random() < chance:
            stars = max(truth.liked, min(5.0, round(float(value) * 2) / 2))
            events.append({**common, "kind": "rating", "value": stars})
            report.positives += 1
        elif rng.random() < 0.3:
            events.append({**common, "kind": "skip"})
    if events:
        sent = client.post("/v1/feedback", json={"events": events})
        refused(sent.status_code)
        report.errors += sent.status_code != 201
