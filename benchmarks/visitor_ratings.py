"""Predicted ratings for visitors (`POST /v1/recommendations`, `predicted_rating`): how far
the rating head's fold-in should pull a visitor's bias towards the typical user's.

    .venv/bin/python -m benchmarks.visitor_ratings [--users 300] [--seed 0]

300 MovieLens users with at least 30 ratings are held out of training, half to choose the
bias prior (`recsys.model.fold_in.BIAS_PRIOR`, in ratings' worth of pull towards zero) and
half to report on. Each is a visitor given 3 of their liked films, and given 10 random
ratings; the fold-in predicts their other ratings. Printed per prior: RMSE of those
predictions and the mean predicted rating of the visitor's top-10 list.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from benchmarks.train_movielens import movielens
from benchmarks.visitors import as_visitor
from recsys.config import Settings
from recsys.data.interactions import Interactions
from recsys.lists.ranker import Ranker
from recsys.lists.scored import ListRequest
from recsys.model.fold_in import fold_in
from recsys.model.recommender import Recommender
from recsys.train_config import TrainConfig
from recsys.training.pipeline import fit

PRIORS = (0.1, 1.0, 2.0, 5.0, 10.0, 20.0)


Visitor = tuple[str, np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def visitors(data: Interactions, users: np.ndarray, rng: np.random.Generator) -> list[Visitor]:
    """(protocol, given items, given ratings, other items, other ratings) per visitor."""
    out = []
    for user in users:
        for protocol in ("3 liked", "10 random"):
            drawn = as_visitor(data, int(user), protocol, rng)
            if drawn is not None:
                items, ratings, given, rest = drawn
                out.append((protocol, items[given], ratings[given], items[rest], ratings[rest]))
    return out


def judge(
    rec: Recommender, ids: np.ndarray, group: list[Visitor], prior: float
) -> dict[str, tuple[float, float]]:
    """Per protocol: (RMSE of the other ratings, mean predicted rating of the top 10)."""
    errors: dict[str, list[np.ndarray]] = {}
    listed: dict[str, list[float]] = {}
    min_support = Settings().fold_in_min_support
    for protocol, given, ratings, rest, truth in group:
        vector, bias = fold_in(rec, list(ids[given]), ratings.tolist(), bias_prior=prior)
        rows = np.array([rec.item_vocab.index(i) for i in ids[rest]])
        predicted = rec.item_ratings(vector, bias, rows)
        errors.setdefault(protocol, []).append(predicted - truth)
        top = Ranker(rec, bias_prior=prior).recommend_for_ratings(
            list(ids[given]), ratings.tolist(), ListRequest(10, min_support=min_support)
        )
        listed.setdefault(protocol, []).extend(s.predicted_rating or 0.0 for s in top)
    return {
        p: (float(np.sqrt(np.mean(np.concatenate(errors[p]) ** 2))), float(np.mean(listed[p])))
        for p in errors
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    data = movielens()
    rng = np.random.default_rng(args.seed)
    held = rng.choice(np.flatnonzero(data.user_counts() >= 30), args.users, replace=False)
    train = data.subset(np.flatnonzero(~np.isin(data.users, held)))
    t0 = time.perf_counter()
    rec = fit(train, TrainConfig()).recommender
    print(f"model trained on {len(train):,} ratings without the visitors in "
          f"{time.perf_counter() - t0:.1f} s")  # fmt: skip
    ids = np.asarray(data.item_vocab.ids)
    known = np.isin(data.items, np.flatnonzero(np.isin(ids, rec.item_vocab.ids)))
    data = data.subset(np.flatnonzero(known))  # films the model learned
    half = len(held) // 2
    choose = visitors(data, held[:half], rng)
    report = visitors(data, held[half:], rng)
    scores = {}
    for prior in PRIORS:
        found = judge(rec, ids, choose, prior)
        scores[prior] = np.mean([rmse for rmse, _ in found.values()])
        shown = "; ".join(f"{p}: RMSE {r:.4f}, top-10 mean {m:.2f}" for p, (r, m) in found.items())
        print(f"choosing half, bias prior {prior:g}: {shown}", flush=True)
    best = min(scores, key=scores.__getitem__)
    for prior in sorted({PRIORS[0], best}):
        found = judge(rec, ids, report, prior)
        shown = "; ".join(f"{p}: RMSE {r:.4f}, top-10 mean {m:.2f}" for p, (r, m) in found.items())
        print(f"reporting half, bias prior {prior:g}{' (chosen)' if prior == best else ''}: "
              f"{shown}")  # fmt: skip


if __name__ == "__main__":
    main()
