"""Snapshot: the ratings table as an `Interactions`, read once, in chunks, without ORM objects."""

from __future__ import annotations

import hashlib

import numpy as np
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from recsys.data.genres import Genres
from recsys.data.interactions import Interactions
from recsys.data.vocab import Vocabulary
from recsys.store import bulk, queries
from recsys.store.bulk import Shard
from recsys.store.db import session_scope
from recsys.store.tables import items, users


def read_snapshot(
    *, session: Session, timestamps: bool = True, shard: Shard | None = None
) -> Interactions:
    """Every rating in the database (or one shard); vocabularies hold only users and items
    that have ratings. Without `timestamps` a rating costs 12 bytes (a time split needs them);
    the newest rating time is still known, from the database."""
    arrays = bulk.read_ratings(session=session, timestamps=timestamps, shard=shard)
    user_keys, user_rows = dense_rows(arrays.user_ids)
    item_keys, item_rows = dense_rows(arrays.item_ids)
    return from_database_ids(
        session, arrays, user_keys, user_rows, item_keys, item_rows, shard is None
    )


def training_snapshot(engine: Engine, split: str) -> Interactions:
    """The snapshot a training run reads: per-rating times only when its `split` orders by
    them (a time split), as those double the memory of a rating."""
    with session_scope(engine) as session:
        return read_snapshot(session=session, timestamps=split in ("time", "user_time"))


def from_database_ids(
    session: Session,
    arrays: bulk.RatingArrays,
    user_keys: np.ndarray,
    user_rows: np.ndarray,
    item_keys: np.ndarray,
    item_rows: np.ndarray,
    whole: bool,
) -> Interactions:
    """An `Interactions` whose vocabularies are the external ids of the given database ids."""
    latest = None
    if arrays.rated_at is None and whole:
        latest = bulk.max_rated_at(session=session)
    return Interactions(
        users=user_rows,
        items=item_rows,
        ratings=arrays.values,
        user_vocab=Vocabulary(queries.external_ids(session=session, table=users, ids=user_keys)),
        item_vocab=Vocabulary(queries.external_ids(session=session, table=items, ids=item_keys)),
        timestamps=arrays.rated_at,
        max_timestamp=latest,
        genres=Genres.parse(queries.item_genres(session=session, ids=item_keys)),
    )


def dense_rows(ids: np.ndarray, keys: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(sorted distinct ids, each id's position among them as int32), in linear time.

    Database ids are small dense integers, so a lookup table indexed by id replaces the sort
    of `np.unique` and its int64 inverse, which would double the snapshot's peak memory.
    `keys` gives the distinct ids to use (a superset of `ids`), as ranks that must agree do.
    """
    if len(ids) == 0 and keys is None:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int32)
    if keys is None:
        present = np.zeros(int(ids.max()) + 1, dtype=bool)
        present[ids] = True
        keys = np.flatnonzero(present)
    top = max(int(keys.max()) if len(keys) else 0, int(ids.max()) if len(ids) else 0)
    lookup = np.full(top + 1, -1, dtype=np.int32)
    lookup[keys] = np.arange(len(keys), dtype=np.int32)
    rows = lookup[ids]
    if len(rows) and rows.min() < 0:
        raise ValueError("ids outside the given keys")
    return keys, rows


def fingerprint(data: Interactions) -> str:
    """A short hash of the data, so a model can say exactly which snapshot it learned from."""
    h = hashlib.sha256()
    for arr in (data.users, data.items, data.ratings):
        h.update(np.ascontiguousarray(arr).tobytes())
    h.update("\x1f".join(data.user_vocab.ids).encode())
    h.update("\x1f".join(data.item_vocab.ids).encode())
    return h.hexdigest()[:16]
