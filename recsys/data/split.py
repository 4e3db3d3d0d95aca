"""Hold-out splits. Randomness comes from a seed, never from global state."""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Literal

import numpy as np

from recsys.data.interactions import Interactions
from recsys.errors import ConfigError


def holdout(
    data: Interactions,
    fraction: float,
    *,
    method: Literal["random", "time", "hash", "user_time"] = "random",
    seed: int = 0,
) -> tuple[Interactions, Interactions]:
    """Split off `fraction` of the ratings: (kept, held out).

    "random" draws ratings uniformly (the usual offline protocol); "time" holds out the most
    recent ratings, which is what production sees: the model predicts the future from the past.
    "hash" holds out a (user, item) pair by a hash of its external ids: about `fraction` of
    the pairs, and the same pairs in every snapshot. Retraining compares a candidate with the
    production model on that holdout, which neither has trained on; a random split would
    test production on ratings it learned.
    """
    held = holdout_mask(data, fraction, method=method, seed=seed)
    return data.subset(~held), data.subset(held)


def holdout_mask(
    data: Interactions,
    fraction: float,
    *,
    method: Literal["random", "time", "hash", "user_time"] = "random",
    seed: int = 0,
) -> np.ndarray:
    """Which ratings `holdout` holds out, as a boolean mask. "user_time" holds out each
    user's latest `fraction` of ratings (rounded down): every user is tested on their own
    future, the temporal protocol of the ranking benchmark."""
    if method not in ("random", "time", "hash", "user_time"):
        raise ConfigError(
            f"unknown split method {method!r}; use 'random', 'time', 'hash' or 'user_time'"
        )
    if method == "hash":
        return _held_by_hash(data, seed, fraction)
    if method == "user_time":
        return _held_latest_per_user(data, fraction)
    if method == "time" and data.timestamps is None:
        raise ConfigError("a time split needs timestamps; these ratings have none")
    n = len(data)
    held = np.zeros(n, dtype=bool)
    n_held = round(n * fraction)
    if n_held == 0:
        return held
    if data.timestamps is not None and method == "time":
        order = np.argsort(-data.timestamps, kind="stable")
    else:
        order = np.random.default_rng(seed).permutation(n)
    held[order[:n_held]] = True
    return held


def _held_latest_per_user(data: Interactions, fraction: float) -> np.ndarray:
    if data.timestamps is None:
        raise ConfigError("a time split needs timestamps; these ratings have none")
    order = np.lexsort((data.timestamps, data.users))
    users = data.users[order]
    counts = np.bincount(users, minlength=data.n_users)
    starts = np.zeros(data.n_users, dtype=np.int64)
    np.cumsum(counts[:-1], out=starts[1:])
    position = np.arange(len(users)) - starts[users]
    n_held = np.floor(counts * fraction).astype(np.int64)
    held = np.zeros(len(data), dtype=bool)
    held[order] = position >= counts[users] - n_held[users]
    return held


HASH_HOLDOUT_SEED, HASH_VALIDATION_SEED = 0, 1
"""Seeds of the hash test holdout and of the validation split carved from what remains."""

_MIX1, _MIX2 = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xBF58476D1CE4E5B9)


def _id_hashes(ids: list[str]) -> np.ndarray:
    return np.fromiter((zlib.crc32(i.encode()) for i in ids), dtype=np.uint64, count=len(ids))


def pair_hash(data: Interactions, seed: int = 0) -> np.ndarray:
    """A uniform number in [0, 1) per rating, fixed by its user and item ids and the seed."""
    hu = _id_hashes(data.user_vocab.ids)[data.users]
    hi = _id_hashes(data.item_vocab.ids)[data.items]
    return _mix(hu, hi, seed)


def _held_by_hash(
    data: Interactions, seed: int, fraction: float, step: int = 1 << 20
) -> np.ndarray:
    """`pair_hash(data, seed) < fraction`, a million ratings at a time: the hash's 64-bit
    temporaries for 25M ratings would otherwise take a gigabyte at once."""
    hu_all = _id_hashes(data.user_vocab.ids)
    hi_all = _id_hashes(data.item_vocab.ids)
    held = np.empty(len(data), dtype=bool)
    for s in range(0, len(data), step):
        e = s + step
        held[s:e] = _mix(hu_all[data.users[s:e]], hi_all[data.items[s:e]], seed) < fraction
    return held


def pair_hash_of_ids(user_ids: Sequence[str], item_ids: Sequence[str], seed: int = 0) -> np.ndarray:
    """`pair_hash` for raw id columns (a frame not turned into Interactions)."""
    import pandas as pd  # here: training never needs it, and it takes 0.3 s to import

    u_codes, u_unique = pd.factorize(np.asarray(user_ids, dtype=str))
    i_codes, i_unique = pd.factorize(np.asarray(item_ids, dtype=str))
    return _mix(
        _id_hashes([str(x) for x in u_unique])[u_codes],
        _id_hashes([str(x) for x in i_unique])[i_codes],
        seed,
    )


def _mix(hu: np.ndarray, hi: np.ndarray, seed: int) -> np.ndarray:
    """CRC32s of the two ids (computed once per id, not per rating), combined and passed
    through the splitmix64 finaliser (Steele, Lea & Flood 2014) so nearby ids land far
    apart."""
    with np.errstate(over="ignore"):
        x = hu * _MIX1 ^ (hi + np.uint64(seed)) * _MIX2
        x ^= x >> np.uint64(30)
        x *= _MIX2
        x ^= x >> np.uint64(27)
        x *= _MIX1
        x ^= x >> np.uint64(31)
    uniform: np.ndarray = (x >> np.uint64(11)).astype(np.float64) / float(2**53)
    return uniform
