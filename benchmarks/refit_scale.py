"""The ranking head's refits at scale: fine-tuning the chosen head against training it afresh.

    .venv/bin/python -m benchmarks.refit_scale [--users 40000 --items 20000 --ratings 2500000]

Synthetic ratings from `recsys generate-synthetic`'s generator (written once under
var/bench/), of a shape that takes the paths MovieLens-25M takes: more than 4 x 4,096 items
(the sampled softmax), more users than 64 batches of 64 (batches grow, epochs cut to about
512 steps). `recsys.fit` with the default TrainConfig (`rank_refit_epochs` 4, each refit
fine-tuning the chosen head) and with `rank_refit_epochs` 0 (each refit a fresh head for the
kept epoch), on the same split: prints the seconds of the twin's ranking refit and of the
serving refit, the whole fit, and test NDCG@10 of the model beside most-popular and EASE (the
NDCG gate's baselines).
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd

from recsys import Interactions, TrainConfig, fit
from recsys.data.samples import generate_synthetic

FOLDER = Path("var/bench")


def ratings(users: int, items: int, n: int) -> Interactions:
    path = FOLDER / f"refit-{users}-{items}-{n}.csv"
    if not path.exists():
        FOLDER.mkdir(parents=True, exist_ok=True)
        generate_synthetic(path, n_users=users, n_items=items, n_ratings=n, seed=0)
    frame = pd.read_csv(path, dtype={"user_id": str, "item_id": str})
    return Interactions.from_frame(frame.astype({"rating": np.float32}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=40_000)
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--ratings", type=int, default=2_500_000)
    args = parser.parse_args()
    data = ratings(args.users, args.items, args.ratings)
    print(f"{platform.machine()}; {data}", flush=True)
    for name, epochs in (("fine-tuned (default)", None), ("afresh", 0)):
        update = {} if epochs is None else {"rank_refit_epochs": epochs}
        t0 = time.perf_counter()
        fitted = fit(data, TrainConfig(**update))
        seconds = time.perf_counter() - t0
        ranking = fitted.recommender.card.ranking
        report = fitted.report
        assert ranking is not None and report is not None
        served = fitted.timings.get("serve_refit_s", float("nan"))
        ndcg = {k: report[k]["ndcg@10"] for k in ("model", "most_popular", "ease")}
        print(
            f"{name}: kept epoch {ranking.best_epoch} of {len(ranking.history)}; refit epochs "
            f"{ranking.refit_epochs}; twin's ranking refit {ranking.refit_s or 0:.1f} s, serving "
            f"refit {served:.1f} s, fit {seconds:.1f} s; NDCG@10 model {ndcg['model']:.4f}, "
            f"most-popular {ndcg['most_popular']:.4f}, EASE {ndcg['ease']:.4f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
