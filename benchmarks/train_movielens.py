"""Quality and speed of training on the real MovieLens sample (issue: core targets).

    .venv/bin/python -m benchmarks.train_movielens [--recipe] [--set key=value ...]

Random 90/10 split (seeded) of ml-latest-small; the default TrainConfig unless --set
overrides fields. Prints test RMSE, wall time to the end of early stopping, samples/s and
the ranking comparison with the most-popular baseline. --recipe also runs the textbook
fastai recipe (batch 64, 5 epochs one-cycle, weight decay 0.1) with plain PyTorch for scale.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import torch

from recsys import Interactions, TrainConfig, fit, format_report, samples
from recsys.config import RatingScale
from recsys.data.split import holdout
from recsys.model.network import DotProductBias


def movielens() -> Interactions:
    sample = samples.movielens()
    frame = sample.ratings.astype({"rating": float, "timestamp": int})
    # With the catalog's genres, as a snapshot of the database has them.
    genres = dict(zip(sample.items["item_id"].astype(str), sample.items["genres"], strict=True))
    return Interactions.from_frame(frame).with_genres(genres)


def textbook_recipe(data: Interactions, seed: int) -> tuple[float, float]:
    """fastai book ch. 8: AdamW, weight decay 0.1 on whole matrices, lr 5e-3, batch 64."""
    train, test = holdout(data, 0.1, seed=seed)
    gen = torch.Generator().manual_seed(seed)
    net = DotProductBias(data.n_users, data.n_items, 50, (0.0, 5.5), generator=gen)
    u, i, r = (
        torch.from_numpy(a.astype(np.int64 if a.dtype != np.float32 else np.float32))
        for a in (train.users, train.items, train.ratings)
    )
    epochs, bs = 5, 64
    opt = torch.optim.AdamW(net.parameters(), lr=5e-3, weight_decay=0.1)
    steps = epochs * ((len(u) + bs - 1) // bs)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=5e-3, total_steps=steps)
    t0 = time.perf_counter()
    for _ in range(epochs):
        order = torch.randperm(len(u), generator=gen)
        for s in range(0, len(u), bs):
            idx = order[s : s + bs]
            loss = ((net(u[idx], i[idx]) - r[idx]) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    seconds = time.perf_counter() - t0
    with torch.no_grad():
        tu = torch.from_numpy(test.users.astype(np.int64))
        pred = net(tu, torch.from_numpy(test.items.astype(np.int64)))
        rmse = float(((pred - torch.from_numpy(test.ratings)) ** 2).mean().sqrt())
    return rmse, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--recipe", action="store_true", help="also run the textbook recipe")
    parser.add_argument("--set", nargs="*", default=[], help="TrainConfig overrides, key=value")
    parser.add_argument("--seeds", type=int, nargs="*", default=[42], help="split/training seeds")
    args = parser.parse_args()
    overrides = {k: json.loads(v) for k, v in (s.split("=", 1) for s in args.set)}
    data = movielens()
    test_rmse: list[float] = []
    threads = torch.get_num_threads()
    print(
        f"machine: {platform.node()} {platform.machine()}, {threads} torch threads, "
        f"torch {torch.__version__}"
    )
    print(data)
    for seed in args.seeds:
        cfg = TrainConfig(**{"seed": seed, "split": "random", **overrides})
        t0 = time.perf_counter()
        fitted = fit(data, cfg, RatingScale(min=0.5, max=5.0))
        wall = time.perf_counter() - t0
        res, rep = fitted.result, fitted.report
        assert rep is not None
        test_rmse.append(float(rep["model"]["rmse"] or "nan"))
        print(f"\nseed {seed}: {cfg.model_dump()}")
        print(
            f"epochs run {len(res.history)}, best {res.best_epoch}, "
            f"stopped early: {res.stopped_early}"
            + (f"; refit on train+valid for {res.refit.epochs} epochs" if res.refit else "")
        )
        print(
            f"training (selection to early stop, then refit): {res.seconds:.2f} s "
            f"({res.samples_per_second:,.0f} samples/s); fit incl. split+eval: {wall:.2f} s"
        )
        print(
            f"TEST RMSE {rep['model']['rmse']:.4f}  (biases {rep['biases']['rmse']:.4f}, "
            f"global mean {rep['global_mean']['rmse']:.4f})"
        )
        k = cfg.top_k
        print(
            f"NDCG@{k}: model {rep['model'][f'ndcg@{k}']:.4f} vs most popular "
            f"{rep['most_popular'][f'ndcg@{k}']:.4f}"
        )
        print(format_report(rep))
    print(f"\nmean test RMSE over {len(test_rmse)} split seeds: {np.mean(test_rmse):.4f}")
    if args.recipe:
        rmse, seconds = textbook_recipe(data, args.seeds[0])
        print(
            f"\ntextbook recipe (bs 64, 5 epochs, wd 0.1): test RMSE {rmse:.4f} in {seconds:.1f} s"
        )


if __name__ == "__main__":
    main()
