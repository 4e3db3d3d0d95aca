"""Hold-out splits. Randomness comes from a seed, never from global state."""

from __future__ import annotations

from typing import Literal

import numpy as np

from recsys.data.interactions import Interactions
from recsys.errors import ConfigError


def holdout(
    data: Interactions,
    fraction: float,
    *,
    method: Literal["random", "time"] = "random",
    seed: int = 0,
) -> tuple[Interactions, Interactions]:
    """Split off `fraction` of the ratings: (kept, held out).

    "random" draws ratings uniformly (the usual offline protocol); "time" holds out the most
    recent ratings, which is what production sees: the model predicts the future from the past.
    """
    if method not in ("random", "time"):
        raise ConfigError(f"unknown split method {method!r}; use 'random' or 'time'")
    if method == "time" and data.timestamps is None:
        raise ConfigError("a time split needs timestamps; these ratings have none")
    n = len(data)
    n_held = round(n * fraction)
    if n_held == 0:
        return data, data.subset(np.zeros(n, dtype=bool))
    if data.timestamps is not None and method == "time":
        order = np.argsort(-data.timestamps, kind="stable")
    else:
        order = np.random.default_rng(seed).permutation(n)
    held = np.zeros(n, dtype=bool)
    held[order[:n_held]] = True
    return data.subset(~held), data.subset(held)
