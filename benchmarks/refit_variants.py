"""The ranking head's twin refit at 25M ratings: fine-tuning the chosen head against a fresh one.

    .venv/bin/python -m benchmarks.refit_variants [--variants 0 1 2 4]

Reads the 25M synthetic ratings that `python -m benchmarks.scale_25m ingest` stored in
PostgreSQL, splits them as `recsys retrain` does (default settings, sized for the data),
selects the ranking head on validation once, then refits it on training + validation data
each way asked: `0` a fresh head for the kept epochs, `N` N epochs fine-tuning the chosen head
at `rank_refit_lr_share` of the learning rate (both forced, whatever the default rule
`recsys.training.ranking.fine_tunes` would choose). Prints each refit's test NDCG@10 as the
report computes it (the same 20,000 users), beside most-popular's, the NDCG gate's baseline
on these data, and the selected head's without a refit. The rating head is left out: at
this size validation chooses a blend of 0 with it (`scale_25m retrain`'s output).
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np

from benchmarks.scale_25m import PG
from recsys.data.interactions import Interactions
from recsys.data.snapshot import training_snapshot
from recsys.evaluation.baselines import MostPopular
from recsys.evaluation.report import RankingTask
from recsys.model.network import ChoiceNet, DotProductBias
from recsys.store.db import make_engine
from recsys.train_config import TrainConfig
from recsys.training.choice import ChoiceTrainer, Ensemble
from recsys.training.heap import keep_freed_memory
from recsys.training.ranking import _Blended, head_of, select_ranking
from recsys.training.splits import split
from recsys.training.trainer import EpochStats


def refit(chosen: Ensemble, data: Interactions, cfg: TrainConfig, epochs: int) -> ChoiceNet:
    """The twin's refit, fresh (`epochs` 0: each head for its kept epoch) or fine-tuning the
    chosen heads for `epochs`."""
    nothing = data.subset(np.arange(0))
    if not epochs:
        return ChoiceTrainer(cfg).fit_ensemble(data, nothing, epochs=chosen.epochs).network
    warm = cfg.model_copy(update={"rank_lr": cfg.rank_lr * cfg.rank_refit_lr_share})
    each = [epochs] * len(chosen.epochs)
    return ChoiceTrainer(warm).fit_ensemble(data, nothing, epochs=each, start=chosen).network


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--variants", type=int, nargs="+", default=[0, 1, 2, 4])
    args = parser.parse_args()
    keep_freed_memory()
    config = TrainConfig()
    t0 = time.perf_counter()
    data = training_snapshot(make_engine(PG), config.split)
    config = config.sized_for(len(data), data.n_users).model_copy(update={"rank_blend": 0.0})
    parts = split(data, config)
    print(f"{platform.machine()}; {data}; snapshot and split {time.perf_counter() - t0:.0f} s")
    task = RankingTask(
        parts.train, parts.test, config.liked_threshold, config.top_k, 20_000, config.seed
    )
    print(f"most-popular: test NDCG@10 {task.evaluate(MostPopular(parts.train))['ndcg@10']:.4f}")
    no_rating = DotProductBias(data.n_users, data.n_items, 1, (0.5, 5.0))

    def show(stats: EpochStats) -> None:
        print(f"  selection epoch {stats.epoch}: valid NDCG@10 {stats.val_ndcg:.4f}", flush=True)

    t0 = time.perf_counter()
    selection = select_ranking(parts.inner, parts.valid, lambda: no_rating, config, on_epoch=show)
    kept = selection.ensemble.epochs
    print(f"selection {time.perf_counter() - t0:.0f} s, kept epochs {kept}", flush=True)
    both = parts.inner.concat(parts.valid)

    def ndcg(network: ChoiceNet) -> float:
        head = head_of(network, both, config, 0.0)
        return task.evaluate(_Blended(head, no_rating, 0.0))["ndcg@10"] or 0.0

    print(f"no refit (the selected head): test NDCG@10 {ndcg(selection.ensemble.network):.4f}")
    for epochs in args.variants:
        t0 = time.perf_counter()
        network = refit(selection.ensemble, both, config, epochs)
        what = f"fresh, {kept} epochs" if not epochs else f"fine-tuned {epochs} epochs"
        print(
            f"refit {what}: {time.perf_counter() - t0:.0f} s, test NDCG@10 {ndcg(network):.4f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
