"""Lists for visitors (`POST /v1/recommendations`): users the model never saw, known by a few
ratings, against EASE and most-popular on the same visitors and candidates.

    .venv/bin/python -m benchmarks.visitors [--users 150] [--seed 0]
        [--fold-in-l2 0.1 0.5 2.0] [--config '{"rank_genres": false}']

150 MovieLens users with at least 30 ratings are held out of training entirely. Each becomes
a visitor twice: given 3 of their liked films (rated >= 4), and given 10 random ratings
(liked or not). The rest of their liked films are the relevant items; NDCG@10 over the
candidates a visitor's list may hold (films with at least `fold_in_min_support` training
ratings, the service's default). Then the genre visitors of issue 16, read as titles.
`--fold-in-l2` repeats the visitors for each L2 of the ranking head's fold-in (one training);
`--config` trains with TrainConfig overrides.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from benchmarks.train_movielens import movielens
from recsys.config import Settings
from recsys.data import samples
from recsys.data.interactions import Interactions
from recsys.evaluation.ease import Ease
from recsys.lists.ranker import Ranker
from recsys.lists.scored import ListRequest
from recsys.model.ranking import RankingHead
from recsys.model.recommender import Recommender
from recsys.train_config import TrainConfig
from recsys.training.pipeline import fit

K = 10
GENRE_VISITORS = {
    "horror (Shining 5, Exorcist 5, Scream 4.5)": (["1258", "1997", "1407"], "Horror"),
    "Pixar (Toy Story 5, Finding Nemo 5, Monsters Inc. 4.5)": (["1", "6377", "4886"], "Animation"),
}


def ndcg(top: np.ndarray, relevant: np.ndarray) -> float:
    gains = np.isin(top, relevant) / np.log2(np.arange(2, len(top) + 2))
    ideal = (1 / np.log2(np.arange(2, min(len(top), len(relevant)) + 2))).sum()
    return float(gains.sum() / ideal)


class Lists:
    """Top-k item rows for a visitor from the model, EASE and most-popular."""

    def __init__(self, train: Interactions, rec: Recommender, min_support: int) -> None:
        self.rec, self.min_support = rec, min_support
        counts = np.bincount(train.items, minlength=train.n_items)
        self.eligible = counts >= min_support
        self.popularity = counts.astype(np.float32)
        # EASE on every item: a visitor's history indexes the whole catalog.
        self.ease = Ease(train, max_items=train.n_items, item_weights=True).weights.numpy()
        self.ids = np.asarray(train.item_vocab.ids)
        self.row = {item: n for n, item in enumerate(self.ids)}

    def _top(self, scores: np.ndarray, given: np.ndarray) -> np.ndarray:
        scores = np.where(self.eligible, scores, -np.inf)
        scores[given] = -np.inf
        return np.argsort(-scores, kind="stable")[:K]

    def all(self, given: np.ndarray, ratings: np.ndarray) -> dict[str, np.ndarray]:
        out = Ranker(self.rec).recommend_for_ratings(
            list(self.ids[given]), ratings.tolist(), ListRequest(K, min_support=self.min_support)
        )
        history = np.zeros(len(self.ids), dtype=np.float32)
        history[given] = 1.0  # EASE's input is binary: every rated film counts
        return {
            "model": np.array([self.row[s.item_id] for s in out]),
            "ease": self._top(history @ self.ease, given),
            "most-popular": self._top(self.popularity.copy(), given),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=150)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fold-in-l2", type=float, nargs="*", default=[RankingHead.FOLD_IN_L2])
    parser.add_argument("--config", default="{}", help="JSON TrainConfig overrides")
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    data = movielens()
    rng = np.random.default_rng(args.seed)
    counts = data.user_counts()
    held = rng.choice(np.flatnonzero(counts >= 30), args.users, replace=False)
    train = data.subset(np.flatnonzero(~np.isin(data.users, held)))
    t0 = time.perf_counter()
    rec = fit(train, TrainConfig(**json.loads(args.config))).recommender
    seconds = time.perf_counter() - t0
    print(f"model trained on {len(train):,} ratings without the visitors in {seconds:.1f} s")
    lists = Lists(train, rec, Settings().fold_in_min_support)
    for l2 in args.fold_in_l2:
        RankingHead.FOLD_IN_L2 = l2
        print(f"\nfold-in L2 {l2}")
        visit(data, held, lists, np.random.default_rng(args.seed))


def as_visitor(
    data: Interactions, user: int, protocol: str, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """A held-out user as a visitor: (their items, their ratings, positions given, positions
    left to judge by), given 3 of their liked films ("3 liked"; None with fewer than 6) or
    10 random ratings ("10 random")."""
    rows = np.flatnonzero(data.users == user)
    items, ratings = data.items[rows], data.ratings[rows]
    liked = np.flatnonzero(ratings >= 4)
    if protocol == "3 liked":
        if len(liked) < 6:
            return None
        given = rng.choice(liked, 3, replace=False)
    else:
        given = rng.choice(len(rows), 10, replace=False)
    return items, ratings, given, np.setdiff1d(np.arange(len(rows)), given)


def visit(data: Interactions, held: np.ndarray, lists: Lists, rng: np.random.Generator) -> None:
    """NDCG@10 of held-out users as visitors, and the genre visitors' lists."""
    for protocol in ("3 liked", "10 random"):
        scores: dict[str, list[float]] = {}
        for user in held:
            drawn = as_visitor(data, user, protocol, rng)
            if drawn is None:
                continue
            items, ratings, given, rest = drawn
            relevant = items[rest][ratings[rest] >= 4]
            if len(relevant) == 0:
                continue
            for name, top in lists.all(items[given], ratings[given]).items():
                scores.setdefault(name, []).append(ndcg(top, relevant))
        n = len(next(iter(scores.values())))
        shown = ", ".join(f"{name} {np.mean(v):.4f}" for name, v in scores.items())
        print(f"visitors given {protocol} ({n} users), NDCG@{K}: {shown}")
    titles = samples.movielens().items.set_index("item_id")
    for who, (given_ids, genre) in GENRE_VISITORS.items():
        given = np.array([lists.row[i] for i in given_ids])
        for name, top in lists.all(given, np.array([5.0, 5.0, 4.5])).items():
            if name == "most-popular":
                continue
            films = titles.loc[lists.ids[top]]
            hits = int(films.genres.str.contains(genre).sum())
            print(f"{who} via {name}: {hits} {genre} in top {K}: {'; '.join(films.title)}")


if __name__ == "__main__":
    main()
