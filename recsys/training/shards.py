"""The snapshot a torchrun rank trains on: its shard of the ratings, whole users.

Every rank reads only its shard (`bulk.Shard`); the ranks agree on the vocabulary (the union of
the users and items they hold, so every rank builds the same embedding tables). Rank 0 later
reads every rating again under that vocabulary (`ShardRead.whole`), to build the served user
vectors and evaluate.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from sqlalchemy import Engine

from recsys.data.interactions import Interactions
from recsys.data.snapshot import dense_rows, from_database_ids
from recsys.store import bulk
from recsys.store.db import session_scope
from recsys.training.distributed import World


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


@dataclass(frozen=True)
class ShardRead:
    local: Interactions
    """This rank's ratings, under the vocabulary all ranks agreed on."""
    sizes: list[int]
    """Ratings per rank."""
    engine: Engine
    keys: tuple[np.ndarray, np.ndarray]

    def whole(self) -> Interactions:
        """Every rating under the agreed vocabulary (rank 0's full read)."""
        return _read(self.engine, None, lambda _: self.keys)


def read_shard(engine: Engine, world: World) -> ShardRead:
    """This rank's shard; a collective: every rank calls it."""
    agreed: list[tuple[np.ndarray, np.ndarray]] = []

    def agree(arrays: bulk.RatingArrays) -> tuple[np.ndarray, np.ndarray]:
        agreed.append((world.union(arrays.user_ids), world.union(arrays.item_ids)))
        return agreed[0]

    local = _read(engine, bulk.Shard(world.rank, world.size), agree)
    return ShardRead(local, world.gather(len(local)), engine, agreed[0])
