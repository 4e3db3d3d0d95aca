"""`recsys train --distributed`: the training pipeline with each rank on its own shard.

Every rank reads only its shard of the ratings, whole users (`recsys.training.shards`), splits
it with the same hash split as a single process, and the ranks train together through the
very steps of `recsys train` (`recsys.training.runs.train_and_register`, with the world as
a parameter): there is one orchestration, so the two cannot drift apart.

What runs where:
- on every rank, together: the rating head (data-parallel, gradients averaged by
  DistributedDataParallel), the ranking head (each rank its own users; the item side's
  gradients summed at every step; early stopping and the blend judged on all ranks'
  validation users), and the serving refit of both heads on every rating;
- on rank 0 alone, on a full read of the snapshot: the heads' user vectors for serving, the
  evaluation against the baselines on the test holdout, the registration and its gates.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from sqlalchemy import Engine

from recsys.config import RatingScale, Settings
from recsys.errors import ConfigError
from recsys.train_config import TrainConfig
from recsys.training import distributed
from recsys.training.runs import Registered, train_and_register
from recsys.training.trainer import EpochStats


def train_distributed(
    engine: Engine,
    artifact_dir: Path,
    config: TrainConfig,
    scale: RatingScale,
    *,
    promote: bool = True,
    settings: Settings | None = None,
    on_epoch: Callable[[EpochStats], None] | None = None,
    on_step: Callable[[int, int], None] | None = None,
    on_rank_epoch: Callable[[EpochStats], None] | None = None,
    on_stage: Callable[[str], None] | None = None,
) -> Registered | None:
    """Train across the torchrun processes; rank 0 returns the registered model, others None.
    Promotion follows the rules of `recsys train` (`train_from_database`).

    `on_epoch` and `on_step` are called on rank 0 only.
    """
    scale.check_liked(config.liked_threshold)
    if config.split != "hash":
        raise ConfigError(
            "distributed training needs the hash split (each rank splits its own shard the "
            f"same way a single process would); got split={config.split!r}"
        )
    world = distributed.start(config.device)
    try:
        return train_and_register(
            engine,
            artifact_dir,
            config,
            scale,
            world=world,
            promote=promote,
            settings=settings,
            on_epoch=on_epoch,
            on_step=on_step,
            on_rank_epoch=on_rank_epoch,
            on_stage=on_stage,
        )
    finally:
        distributed.stop()
