"""`recsys train --distributed`: the training pipeline with each rank on its own shard.

Every rank reads only its shard of the ratings, whole users (`bulk.Shard`); the ranks agree
on the vocabulary (the union of the users and items they hold, so every rank builds the same
embedding tables), split their shards with the same hash split as a single process, and
train together, through the same steps as `recsys train` (`after_rating_head`).

What runs where:
- on every rank, together: the rating head (data-parallel, gradients averaged by
  DistributedDataParallel), the ranking head (each rank its own users; the item side's
  gradients summed at every step; early stopping and the blend judged on all ranks'
  validation users), and the serving refit of both heads on every rating;
- on rank 0 alone, on a full read of the snapshot: the heads' user vectors for serving, the
  evaluation against the baselines on the test holdout, the registration and its gates.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

import numpy as np
from sqlalchemy import Engine

from recsys import registry
from recsys.config import RatingScale, Settings, TrainConfig
from recsys.data.interactions import Interactions
from recsys.data.snapshot import dense_rows, from_database_ids
from recsys.errors import ConfigError
from recsys.evaluation.baselines import Scorer
from recsys.evaluation.report import BaselineCache
from recsys.store import bulk
from recsys.store.db import session_scope
from recsys.training import distributed
from recsys.training.pipeline import (
    BASELINES_FOLDER,
    Registered,
    Splits,
    after_rating_head,
    production_twin,
    register,
    split,
)
from recsys.training.trainer import EpochStats, Trainer


def _read(
    engine: Engine,
    shard: bulk.Shard | None,
    keys: Callable[[bulk.RatingArrays], tuple[np.ndarray, np.ndarray]],
) -> Interactions:
    """Ratings of a shard (or all of them) with the vocabulary that `keys` settles on."""
    with session_scope(engine) as session:
        arrays = bulk.read_ratings(session=session, timestamps=False, shard=shard)
        user_keys, item_keys = keys(arrays)
        # Ratings of users or items that arrived after the ranks agreed on the vocabulary
        # (rank 0 reads the whole table again later) have no embedding: left out.
        known = np.isin(arrays.user_ids, user_keys) & np.isin(arrays.item_ids, item_keys)
        if not known.all():
            arrays = bulk.RatingArrays(
                arrays.user_ids[known], arrays.item_ids[known], arrays.values[known], None
            )
        _, user_rows = dense_rows(arrays.user_ids, user_keys)
        _, item_rows = dense_rows(arrays.item_ids, item_keys)
        return from_database_ids(
            session, arrays, user_keys, user_rows, item_keys, item_rows, whole=shard is None
        )


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
    # Rank 0 keeps the run's record; the others report through it.
    run: AbstractContextManager[int] = (
        registry.training_run(engine, config.model_dump()) if world.is_main else nullcontext(0)
    )
    try:
        with run as run_id:
            return _train(
                engine,
                artifact_dir,
                config,
                scale,
                world,
                run_id,
                promote=promote,
                settings=settings or Settings(),
                on_epoch=on_epoch,
                on_step=on_step,
                on_rank_epoch=on_rank_epoch,
                on_stage=on_stage,
            )
    finally:
        distributed.stop()


def _train(
    engine: Engine,
    artifact_dir: Path,
    config: TrainConfig,
    scale: RatingScale,
    world: distributed.World,
    run_id: int,
    *,
    promote: bool,
    settings: Settings,
    on_epoch: Callable[[EpochStats], None] | None,
    on_step: Callable[[int, int], None] | None,
    on_rank_epoch: Callable[[EpochStats], None] | None,
    on_stage: Callable[[str], None] | None,
) -> Registered | None:
    t0 = time.perf_counter()
    agreed: list[tuple[np.ndarray, np.ndarray]] = []

    def agree(arrays: bulk.RatingArrays) -> tuple[np.ndarray, np.ndarray]:
        agreed.append((world.union(arrays.user_ids), world.union(arrays.item_ids)))
        return agreed[0]

    local = _read(engine, bulk.Shard(world.rank, world.size), agree)
    shard_sizes = world.gather(len(local))
    snapshot_s = time.perf_counter() - t0
    # Sized for all ranks' ratings together: the global batch is what one process would take.
    config = config.sized_for(sum(shard_sizes), len(agreed[0][0]))
    parts = split(local, config)
    main = world.is_main
    if on_stage is not None and main:
        on_stage(
            f"snapshot: {world.size} shards of whole users, {shard_sizes} ratings, in "
            f"{snapshot_s:.1f}s"
        )
        on_stage(
            f"rating head: on {world.size} ranks, batches of {config.batch_size:,} over the "
            f"ranks, at most {config.epochs} epochs"
        )
    trainer = Trainer(
        config, scale, on_epoch=on_epoch if main else None, on_step=on_step if main else None
    )
    result = trainer.fit(parts.inner, parts.valid, world=world)
    rating_s = time.perf_counter() - t0 - snapshot_s

    def whole() -> tuple[Splits, list[Scorer]]:
        # Rank 0's full read, under the vocabulary the ranks trained with, and production's
        # evaluated twin to compare with on the same holdout.
        data = _read(engine, None, lambda _: agreed[0])
        _, _, twin = production_twin(engine, data) if promote else (None, None, None)
        return split(data, config), [twin] if twin is not None else []

    fitted = after_rating_head(
        parts,
        result,
        config,
        scale,
        rating_s=rating_s,
        world=world,
        whole=whole,
        baseline_cache=BaselineCache(artifact_dir / BASELINES_FOLDER),
        on_rank_epoch=on_rank_epoch,
        on_stage=on_stage,
    )
    if fitted is None:
        return None
    for model in (fitted.recommender, fitted.served):
        if model is not None and model.card.data is not None:
            model.card.data.shards = shard_sizes
    timings = {"snapshot_s": snapshot_s, "ranks": float(world.size)}
    return register(engine, artifact_dir, fitted, run_id, promote, timings, settings)
