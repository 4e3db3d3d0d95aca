"""The ranking head at MovieLens-25M size: seconds per epoch and peak memory.

    .venv/bin/python -m benchmarks.ranking_scale [--ratings 25000000] [--epochs 1] [--device auto]
        [--genres 20] [--growth]

Synthetic ratings in memory with 25M's shape (162,541 users, 59,047 items, Zipf item
popularity, log-normal user activity); one or more epochs of `ChoiceTrainer` (the default
TrainConfig, sized for the data as `recsys train` sizes it), nothing held out. Items get 1-3
of `--genres` random genres, as a catalog with genres gives the shipped head (0: none).
Prints the seconds of each epoch, the median of those after the first (steady state), the
process's peak resident memory, and the GPU's peak memory when it ran on one.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import time

import numpy as np
import torch

from recsys.data.genres import Genres
from recsys.data.interactions import Interactions
from recsys.data.vocab import Vocabulary
from recsys.train_config import TrainConfig
from recsys.training.choice import ChoiceTrainer
from recsys.training.choice_parts import normaliser_for


def synthetic(
    n_users: int, n_items: int, n_ratings: int, n_genres: int = 0, seed: int = 0
) -> Interactions:
    rng = np.random.default_rng(seed)
    item_p = 1.0 / np.arange(1, n_items + 1)
    user_p = rng.lognormal(0.0, 1.0, n_users)
    users = rng.choice(n_users, n_ratings, p=user_p / user_p.sum()).astype(np.int32)
    items = rng.choice(n_items, n_ratings, p=item_p / item_p.sum()).astype(np.int32)
    ratings = rng.integers(1, 11, n_ratings).astype(np.float32) / 2
    # Rows are the ids: 25M ids turned into strings and back would take minutes.
    genres = None
    if n_genres:
        picks = [rng.choice(n_genres, rng.integers(1, 4), replace=False) for _ in range(n_items)]
        genres = Genres.parse(["|".join(f"g{g}" for g in pick) for pick in picks])
    return Interactions(
        users,
        items,
        ratings,
        Vocabulary([str(u) for u in range(n_users)]),
        Vocabulary([str(i) for i in range(n_items)]),
        genres=genres,
    )


def one_size(args: argparse.Namespace, n_ratings: int, n_users: int, n_items: int) -> float:
    """Train the head on synthetic data of this size; seconds per epoch."""
    t0 = time.perf_counter()
    data = synthetic(n_users, n_items, n_ratings, args.genres)
    print(f"{data!r} built in {time.perf_counter() - t0:.1f} s", flush=True)
    config = TrainConfig(device=args.device, rank_epochs=args.epochs, **json.loads(args.set))
    # As `recsys train` sizes it: the batch of users grows with the users.
    config = config.sized_for(len(data), data.n_users)
    sampled = normaliser_for(config, data, 0, torch.device("cpu")) is not None
    print(
        f"rank_batch_users {config.rank_batch_users}, rank_negatives {config.rank_negatives} "
        f"({'sampled' if sampled else 'exact'} softmax)",
        flush=True,
    )
    empty = data.subset(np.arange(0))
    result = ChoiceTrainer(
        config,
        on_epoch=lambda e: print(
            f"epoch {e.epoch}: {e.seconds:.1f} s, train NLL {e.train_loss:.3f}", flush=True
        ),
    ).fit(data, empty)
    # The median of the epochs after the first, which carries one-off costs (allocations,
    # first touches of pages): a 1 s epoch on a shared VM varies by a third from run to run.
    later = [e.seconds for e in result.history[1:]] or [result.history[0].seconds]
    return statistics.median(later)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ratings", type=int, default=25_000_000)
    parser.add_argument("--users", type=int, default=162_541)
    parser.add_argument("--items", type=int, default=59_047)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--genres", type=int, default=20)
    parser.add_argument("--set", default="{}", help="JSON TrainConfig overrides")
    parser.add_argument(
        "--growth",
        action="store_true",
        help="one run each at 2.5M, 10M and 25M ratings (users and items scaled alike) and "
        "the seconds per million ratings of each (the median epoch after the first; use "
        "--epochs 4)",
    )
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() and args.device != "cpu" else "cpu"
    if args.growth:
        per_million = {}
        for n in (2_500_000, 10_000_000, 25_000_000):
            share = n / args.ratings
            epoch_s = one_size(args, n, int(args.users * share), int(args.items * share))
            per_million[n] = epoch_s / (n / 1e6)
            print(f"{n:,} ratings: {epoch_s:.1f} s an epoch, {per_million[n]:.2f} s per million")
        ratio = per_million[25_000_000] / per_million[2_500_000]
        print(f"seconds per million ratings, 25M against 2.5M: {ratio:.2f}x (device {device})")
        return
    epoch_s = one_size(args, args.ratings, args.users, args.items)
    rss_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    print(
        f"device {device}; {epoch_s:.1f} s an epoch (median after the first); "
        f"peak RSS {rss_gb:.2f} GB",
        flush=True,
    )
    if device == "cuda":
        print(
            f"GPU peak memory {torch.cuda.max_memory_allocated() / 1e9:.2f} GB "
            f"({torch.cuda.get_device_name()})"
        )


if __name__ == "__main__":
    main()
