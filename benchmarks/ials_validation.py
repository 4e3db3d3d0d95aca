"""The ranking head's loss against iALS, judged on validation only (issue: training at scale).

    .venv/bin/python -m benchmarks.ials_validation [--seeds 42 7]   # needs `pip install implicit`

Two ways to learn from every unobserved item at a cost that grows with the ratings: the
shipped head's softmax (exact on MovieLens; sampled with log-Q correction on large catalogs)
and the weighted least squares of implicit feedback (Hu, Koren & Volinsky 2008, as implicit's
ALS solves it through Gram matrices). On MovieLens, for each seed, the test holdout of `recsys
train`'s split is set aside unseen and the rest split again into training and validation
(random, then per-user latest 20 %). The head trains as `recsys train` trains it (default
TrainConfig, early stopping on validation NDCG@10); iALS is tuned on the same validation
ratings over factors x regularisation x alpha x iterations. Printed: each one's best
validation NDCG@10 (relevant: ratings >= 4, full ranking, training items excluded), and
its seconds per epoch or iteration.
"""

from __future__ import annotations

import argparse
import itertools
import time

import numpy as np
import torch

from benchmarks.train_movielens import movielens
from recsys import Interactions, TrainConfig
from recsys.data.split import holdout
from recsys.evaluation.report import RankingTask
from recsys.training.choice import ChoiceTrainer

GRID = {
    "factors": (64, 128, 256),
    "regularization": (1.0, 10.0, 30.0, 100.0),
    "alpha": (0.3, 1.0, 3.0, 10.0),
    "iterations": (15,),
}


class _Ials:
    name = "ials"

    def __init__(self, train: Interactions, **params: float) -> None:
        from implicit.cpu.als import AlternatingLeastSquares  # benchmarks only
        from scipy.sparse import csr_matrix

        x = csr_matrix(
            (np.ones(len(train), dtype=np.float32), (train.users, train.items)),
            shape=(train.n_users, train.n_items),
        )
        self.model = AlternatingLeastSquares(
            factors=int(params["factors"]),
            regularization=params["regularization"],
            alpha=params["alpha"],
            iterations=int(params["iterations"]),
            random_state=0,
        )
        t0 = time.perf_counter()
        self.model.fit(x, show_progress=False)
        self.seconds_per_iteration = (time.perf_counter() - t0) / params["iterations"]

    def predict_rows(self, users: np.ndarray, items: np.ndarray) -> None:
        return None

    def rank_scores(self, users: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(self.model.user_factors[users] @ self.model.item_factors.T)


def one_split(inner: Interactions, valid: Interactions, label: str) -> None:
    config = TrainConfig().sized_for(len(inner), inner.n_users)
    task = RankingTask(inner, valid, config.liked_threshold, 10, 5_000, config.seed)

    def judge(scorer: object) -> float:
        return task.evaluate(scorer)["ndcg@10"] or 0.0  # type: ignore[arg-type]

    head = ChoiceTrainer(config).fit(inner, valid, judge=judge)
    best = max(h.val_ndcg or 0.0 for h in head.history)
    per_epoch = float(np.mean([h.seconds for h in head.history]))
    print(
        f"{label}: softmax head {best:.4f} (epoch {head.best_epoch}; {per_epoch:.2f} s an "
        "epoch incl. judging)",
        flush=True,
    )
    results = []
    for values in itertools.product(*GRID.values()):
        params = dict(zip(GRID, values, strict=True))
        model = _Ials(inner, **params)
        results.append((judge(model), params, model.seconds_per_iteration))
    score, params, seconds = max(results, key=lambda r: r[0])
    print(f"{label}: iALS best {score:.4f} with {params} ({seconds:.3f} s an iteration)")
    print(f"{label}: iALS worst {min(r[0] for r in results):.4f} over {len(results)} settings")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 7])
    args = parser.parse_args()
    data = movielens()
    for seed in args.seeds:
        train, _test = holdout(data, 0.1, seed=seed)  # the test part is never looked at
        inner, valid = holdout(train, 0.1, seed=seed + 1)
        one_split(inner, valid, f"random seed {seed}")
    train, _test = holdout(data, 0.2, method="user_time")
    inner, valid = holdout(train, 0.2, method="user_time")
    one_split(inner, valid, "per-user temporal")


if __name__ == "__main__":
    main()
