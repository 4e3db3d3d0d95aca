"""Compare ranking settings on MovieLens by validation NDCG@10, never by the test split.

    .venv/bin/python -m benchmarks.tune_ranking '{}' '{"rank_l2": 0.2}' ... [--seeds 42 7 123]

Each argument is a JSON object of TrainConfig overrides. For every split seed, the test
ratings of that seed's random 90/10 split are set aside untouched; `recsys.fit` then runs on
the remaining 90 % with its own random 10 % "test" carved out of it, which is the validation
figure printed here (the served ranking's NDCG@10 against most-popular's and EASE's).
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from benchmarks.train_movielens import movielens
from recsys.data.split import holdout
from recsys.train_config import TrainConfig
from recsys.training.pipeline import fit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("settings", nargs="+", help="JSON objects of TrainConfig overrides")
    parser.add_argument("--seeds", type=int, nargs="*", default=[42, 7, 123])
    args = parser.parse_args()
    data = movielens()
    parts = {seed: holdout(data, 0.1, seed=seed)[0] for seed in args.seeds}
    print(f"seeds {args.seeds}; validation NDCG@10 (mean, then per seed), EASE beside it")
    for setting in args.settings:
        overrides = json.loads(setting)
        model, ease, seconds = [], [], []
        for seed, train in parts.items():
            config = TrainConfig(**{"seed": seed + 1000, "split": "random", **overrides})
            fitted = fit(train, config)
            report = fitted.report
            assert report is not None, "a test split is evaluated"
            model.append(report["model"]["ndcg@10"] or 0.0)
            ease.append((report["ease"]["ndcg@10"] or 0.0) if "ease" in report else float("nan"))
            seconds.append(fitted.timings["train_s"])
        print(
            f"{setting:<50} model {np.mean(model):.4f} ease {np.mean(ease):.4f} "
            f"[{', '.join(f'{m:.4f}' for m in model)}] train {np.mean(seconds):.1f} s",
            flush=True,
        )


if __name__ == "__main__":
    main()
