"""Ranking quality of the shipped model against EASE, implicit ALS and the baselines.

    .venv/bin/python -m benchmarks.ranking_movielens [--seeds 42 7 123 1 2]
        [--temporal-seeds 42 1 2 3] [--set '{"refit": false}'] [--temporal-only]

MovieLens ml-latest-small through `recsys.fit` with the default TrainConfig (issue: ranking),
on two protocols: random 90/10 splits (one per seed) and a per-user temporal split (each
user's latest 20 % held out; one split, so `--temporal-seeds` trains on it from several
training seeds and shows their mean). Full ranking: every item a user did not rate in
training is a candidate; relevant = held-out ratings >= 4; the same candidates for every
system. EASE's lambda is tuned on a validation split carved from the training part (never on
the test split); implicit ALS (if the `implicit` package is installed) runs with its
defaults.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from benchmarks.train_movielens import movielens
from recsys import Interactions, TrainConfig, fit
from recsys.data.split import holdout
from recsys.evaluation.ease import Ease
from recsys.evaluation.report import RankingTask

METRICS = ("ndcg@10", "recall@10", "map@10", "hit_rate@10", "coverage", "gini")
EASE_LAMBDAS = (50.0, 100.0, 200.0, 400.0, 800.0)


class _Als:
    name = "implicit_als"

    def __init__(self, train: Interactions) -> None:
        import implicit
        from scipy.sparse import csr_matrix

        x = csr_matrix(
            (np.ones(len(train), dtype=np.float32), (train.users, train.items)),
            shape=(train.n_users, train.n_items),
        )
        self.model = implicit.cpu.als.AlternatingLeastSquares(random_state=0)
        self.model.fit(x, show_progress=False)

    def predict_rows(self, users: np.ndarray, items: np.ndarray) -> None:
        return None

    def rank_scores(self, users: np.ndarray):  # type: ignore[no-untyped-def]
        import torch

        return torch.from_numpy(self.model.user_factors[users] @ self.model.item_factors.T)


def tuned_ease(train: Interactions, method: str, fraction: float) -> tuple[Ease, float, float]:
    """EASE with lambda chosen by NDCG@10 on validation carved from `train`; refit on all."""
    inner, valid = holdout(train, fraction, method=method, seed=99)  # type: ignore[arg-type]
    task = RankingTask(inner, valid, 4.0, 10)
    # The whole catalog: the strongest EASE, not the default report's most-rated items.
    whole = train.n_items

    def ndcg(lam: float) -> float:
        return task.evaluate(Ease(inner, lam, max_items=whole))["ndcg@10"] or 0.0

    best = max(EASE_LAMBDAS, key=ndcg)
    t0 = time.perf_counter()
    ease = Ease(train, best, max_items=whole)
    return ease, best, time.perf_counter() - t0


def run(
    data: Interactions, config: TrainConfig, method: str, fraction: float
) -> dict[str, dict[str, float]]:
    t0 = time.perf_counter()
    fitted = fit(data, config.model_copy(update={"ease_max_items": 0}))
    train_s = time.perf_counter() - t0
    task = RankingTask(fitted.train, fitted.test, config.liked_threshold, config.top_k)
    rows: dict[str, dict[str, float]] = {}
    report = fitted.report
    assert report is not None, "a test split is evaluated"
    rows["model"] = {m: report["model"][m] or 0.0 for m in METRICS}
    rows["model"]["rmse"] = report["model"]["rmse"] or 0.0
    rows["model"]["fit_s"] = train_s
    rows["most_popular"] = {m: report["most_popular"][m] or 0.0 for m in METRICS}
    rows["biases"] = {m: report["biases"][m] or 0.0 for m in METRICS}
    ease, lam, ease_s = tuned_ease(fitted.train, method, fraction)
    rows["ease"] = {m: v or 0.0 for m, v in task.evaluate(ease).items() if m in METRICS}
    rows["ease"].update(fit_s=ease_s, lam=lam)
    try:
        t1 = time.perf_counter()
        als = _Als(fitted.train)
        als_s = time.perf_counter() - t1
        rows["implicit_als"] = {m: v or 0.0 for m, v in task.evaluate(als).items() if m in METRICS}
        rows["implicit_als"]["fit_s"] = als_s
    except ImportError:
        pass
    return rows


def show(title: str, runs: list[dict[str, dict[str, float]]]) -> None:
    print(f"\n{title} (mean of {len(runs)})")
    columns = [*METRICS, "rmse", "fit_s"]
    print(f"{'':14}" + "".join(f"{c:>12}" for c in columns))
    for name in runs[0]:
        cells = []
        for c in columns:
            values = [r[name][c] for r in runs if c in r[name]]
            cells.append(f"{np.mean(values):>12.4f}" if values else f"{'-':>12}")
        print(f"{name:14}" + "".join(cells))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 7, 123, 1, 2])
    parser.add_argument(
        "--temporal-seeds",
        type=int,
        nargs="+",
        default=None,
        help="training seeds of the temporal split (default: the config's own seed)",
    )
    parser.add_argument(
        "--set", default="{}", help="JSON TrainConfig overrides (default: the shipped config)"
    )
    parser.add_argument("--temporal-only", action="store_true", help="skip the random splits")
    args = parser.parse_args()
    overrides = json.loads(args.set)
    data = movielens()
    if not args.temporal_only:
        random_runs = []
        for seed in args.seeds:
            config = TrainConfig(**{"split": "random", "seed": seed, **overrides})
            random_runs.append(run(data, config, "random", config.val_fraction))
            print(
                f"seed {seed}: model {random_runs[-1]['model']['ndcg@10']:.4f}, "
                f"EASE {random_runs[-1]['ease']['ndcg@10']:.4f}",
                flush=True,
            )
        show("random 90/10 splits", random_runs)
    temporal = TrainConfig(**{"split": "user_time", "test_fraction": 0.2, **overrides})
    training_seeds = args.temporal_seeds or [temporal.seed]
    temporal_runs = []
    for seed in training_seeds:
        config = temporal.model_copy(update={"seed": seed})
        temporal_runs.append(run(data, config, "user_time", 0.2))
        print(f"temporal, training seed {seed}: model {temporal_runs[-1]['model']['ndcg@10']:.4f}")
    show("per-user temporal split, latest 20 %", temporal_runs)


if __name__ == "__main__":
    main()
