"""A training run's parts of its ratings: the test holdout, and the training part split
again into what the networks learn and the validation that early stopping watches."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recsys.data.interactions import Interactions
from recsys.data.split import HASH_HOLDOUT_SEED, HASH_VALIDATION_SEED, holdout, holdout_mask
from recsys.train_config import TrainConfig


@dataclass(frozen=True)
class Splits:
    data: Interactions
    test_mask: np.ndarray  # the test holdout among `data`
    test: Interactions
    inner: Interactions  # the training part without validation: what the network learns
    valid: Interactions  # watched by early stopping

    @property
    def train(self) -> Interactions:
        """Everything but the test holdout. Built when asked (for evaluation), not kept
        during training, where a copy of most of the data would raise the peak memory."""
        return self.data.subset(~self.test_mask)


def split(data: Interactions, config: TrainConfig) -> Splits:
    """The test holdout, then a validation part carved from the rest.

    Hash splits take fixed seeds: the same pairs whatever the training seed, so any two
    models can be compared on the test pairs, and a model warm-started from an earlier one is
    not validated on ratings that the earlier one learned (early stopping would be fooled).
    A hash split of a shard is the same as the shard of the hash split, which is what lets
    distributed ranks split their shards on their own.
    """
    hashed = config.split == "hash"
    test_seed = HASH_HOLDOUT_SEED if hashed else config.seed
    held = holdout_mask(data, config.test_fraction, method=config.split, seed=test_seed)
    val_seed = HASH_VALIDATION_SEED if hashed else config.seed + 1
    inner, valid = holdout(
        data.subset(~held), config.val_fraction, method=config.split, seed=val_seed
    )
    return Splits(data, held, data.subset(held), inner, valid)
