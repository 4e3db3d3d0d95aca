"""Compare TrainConfig settings on MovieLens by validation RMSE, the way the defaults were chosen.

    .venv/bin/python -m benchmarks.tune_movielens '{}' '{"adam_beta2": 0.999}' ...

Each argument is a JSON object of TrainConfig overrides. For every setting and split seed it
prints the best validation RMSE of the selection pass (the 5 % of the training part that early
stopping watches) and the test RMSE of the final model. Choose by validation: choosing by
test would tune on the ratings that the quality target is measured on.
"""

from __future__ import annotations

import argparse
import json
import math

import numpy as np

from benchmarks.train_movielens import movielens
from recsys.config import RatingScale
from recsys.train_config import TrainConfig
from recsys.training.rating_objective import mean_squared_error, tensors_of
from recsys.training.splits import split
from recsys.training.trainer import Trainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("settings", nargs="+", help="JSON objects of TrainConfig overrides")
    parser.add_argument("--seeds", type=int, nargs="*", default=[42, 7, 123, 1, 2])
    args = parser.parse_args()
    data = movielens()
    scale = RatingScale(min=0.5, max=5.0)
    print(f"seeds {args.seeds}; mean over seeds, then each seed's test RMSE")
    for setting in args.settings:
        overrides = json.loads(setting)
        valid_rmse, test_rmse = [], []
        for seed in args.seeds:
            config = TrainConfig(**{"seed": seed, "split": "random", **overrides})
            parts = split(data, config)
            result = Trainer(config, scale).fit(parts.inner, parts.valid)
            valid_rmse.append(math.sqrt(min(h.val_loss for h in result.history)))
            test = tensors_of(parts.test, next(result.network.parameters()).device)
            test_rmse.append(math.sqrt(mean_squared_error(result.network, test)))
        print(
            f"{setting:<60} valid {np.mean(valid_rmse):.4f}  test {np.mean(test_rmse):.4f}  "
            f"[{', '.join(f'{t:.4f}' for t in test_rmse)}]",
            flush=True,
        )


if __name__ == "__main__":
    main()
