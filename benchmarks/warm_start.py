"""Warm start on MovieLens: a model trained on the older 90 % of ratings (by time) seeds the
next one, trained on all of them, against a cold start of the same run.

    .venv/bin/python -m benchmarks.warm_start

Prints per-epoch validation MSE of both, the epoch each reached its best, wall time, and the
test RMSE of both on the same hash holdout.
"""

from __future__ import annotations

import time

import numpy as np

from recsys import Interactions, Settings, TrainConfig, fit, samples
from recsys.jobs import warm_network


def main() -> None:
    frame = samples.movielens().ratings.astype({"rating": float, "timestamp": int})
    cut = np.quantile(frame["timestamp"], 0.9)
    everything = Interactions.from_frame(frame)
    older = Interactions.from_frame(frame[frame["timestamp"] <= cut])
    config = TrainConfig(patience=10)  # let both run the whole schedule to compare curves
    previous = fit(older, config).recommender
    runs = {}
    for name in ("cold", "warm"):
        network = None
        if name == "warm":
            network, copied = warm_network(previous, everything, config, Settings())
            print(f"rows copied from the previous model: {copied}")
        start = time.perf_counter()
        fitted = fit(everything, config, network=network)
        runs[name] = (fitted, time.perf_counter() - start)
    for name, (fitted, seconds) in runs.items():
        curve = " ".join(f"{h.val_loss:.4f}" for h in fitted.result.history)
        rmse = fitted.report.model["rmse"] if fitted.report else None
        print(
            f"{name}: val MSE by epoch {curve}; best epoch {fitted.result.best_epoch}; "
            f"{seconds:.1f} s; test RMSE {rmse:.4f}"
        )


if __name__ == "__main__":
    main()
