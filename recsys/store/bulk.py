"""Bulk paths for the ratings table: the training snapshot out, ingested files in.

On PostgreSQL both go through binary COPY (see `pgcopy`): the snapshot arrives as compact
numpy arrays (int32 user and item ids, float32 values: 12 bytes a rating, timestamps only when
asked), and ingestion stages rows with COPY, then merges them with one INSERT ... SELECT.
SQLite, the embedded default, uses ordinary statements; it has no COPY and needs none at
laptop scale.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import (
    ColumnElement,
    PrimaryKeyConstraint,
    Select,
    cast,
    func,
    select,
    text,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session
from sqlalchemy.schema import AddConstraint, CreateIndex, DropConstraint, DropIndex

from recsys.store import pgcopy
from recsys.store.db import is_lock_timeout, is_postgres, is_transient
from recsys.store.queries import upsert_ratings
from recsys.store.tables import ratings

if TYPE_CHECKING:  # imported where COPY runs: 0.2 s that SQLite never needs
    import psycopg

_LOCK_TRY_MS = 200
"""How long one try at a first load's table locks may wait."""
_LOCK_PATIENCE_S = 60.0
"""How long a first load keeps trying before it gives up with the lock timeout's error."""


@dataclass(frozen=True)
class Shard:
    """Rank `rank` of `world` disjoint parts of the ratings, by user: every rating of a user is
    in one part, which is what the ranking head needs (a user's whole history is its input).
    Users are dealt out by id, which spreads heavy and light users alike over the parts:
    on MovieLens (671 users) two parts hold 48 % and 52 % of the ratings."""

    rank: int
    world: int

    def __post_init__(self) -> None:
        if not 0 <= self.rank < self.world:
            raise ValueError(f"shard rank {self.rank} is not in 0..{self.world - 1}")

    def condition(self) -> ColumnElement[bool]:
        return ratings.c.user_id % self.world == self.rank


@dataclass(frozen=True)
class RatingArrays:
    """Ratings by database ids, sorted by (user, item)."""

    user_ids: np.ndarray  # int32
    item_ids: np.ndarray  # int32
    values: np.ndarray  # float32
    rated_at: np.ndarray | None  # int64 Unix seconds, when asked for

    def __len__(self) -> int:
        return len(self.user_ids)


Parts = list[tuple[np.ndarray, ...]]

# Native types of the snapshot's columns: user id, item id, value, rated_at.
_DTYPES = (np.int32, np.int32, np.float32, np.int64)


def _ratings_query(timestamps: bool, shard: Shard | None) -> Select[tuple[int, int, float]]:
    columns = [ratings.c.user_id, ratings.c.item_id, ratings.c.value]
    if timestamps:
        columns.append(ratings.c.rated_at)
    # No ORDER BY: walking the primary key visits the table in random order (25M ratings:
    # 85 s instead of 6 s on PostgreSQL). `read_ratings` sorts the arrays instead.
    stmt = select(*columns)
    return stmt.where(shard.condition()) if shard is not None else stmt


def read_ratings(
    *, session: Session, timestamps: bool = True, shard: Shard | None = None
) -> RatingArrays:
    """Every rating (or one shard of them) as compact arrays, read in chunks."""
    stmt = _ratings_query(timestamps, shard)
    if is_postgres(session):
        parts = _copy_out(session, stmt, timestamps)
    else:
        parts = _select_out(session, stmt, timestamps)
    n_cols = 4 if timestamps else 3
    by_column = [list(chunks) for chunks in zip(*parts, strict=True)] or [[]] * n_cols
    del parts
    columns = []
    for k, chunks in enumerate(by_column):
        # Column by column, each column's chunks freed once copied: less peak memory.
        columns.append(np.concatenate(chunks) if chunks else np.empty(0, _DTYPES[k]))
        chunks.clear()
    # Sorted by (user, item), so a snapshot of unchanged data is identical from run to run.
    keys = columns[0].astype(np.int64) << 32 | columns[1].astype(np.int64)
    if len(keys) > 1 and not (keys[1:] > keys[:-1]).all():
        order = np.argsort(keys)
        del keys
        for k in range(n_cols):
            columns[k] = columns[k][order]
    return RatingArrays(columns[0], columns[1], columns[2], columns[3] if timestamps else None)


def _copy_out(session: Session, stmt: Select[tuple[int, int, float]], timestamps: bool) -> Parts:
    # The value is cast to real in the query: float32 is what training uses, and it halves
    # what crosses the wire. Ids are integer (4 bytes), rated_at bigint.
    stmt = stmt.with_only_columns(
        ratings.c.user_id,
        ratings.c.item_id,
        cast(ratings.c.value, postgresql.REAL),
        *([ratings.c.rated_at] if timestamps else []),
        maintain_column_froms=True,
    )
    fields = [">i4", ">i4", ">f4", ">i8"][: 4 if timestamps else 3]
    # Compiled with bound parameters for psycopg, which merges them in (COPY takes none).
    compiled = stmt.compile(dialect=session.get_bind().dialect)
    statement = f"COPY ({compiled}) TO STDOUT (FORMAT BINARY)"
    parts: Parts = []
    with _psycopg(session).cursor() as cursor, cursor.copy(statement, compiled.params) as copy:
        for rows in pgcopy.decode(copy, fields):
            parts.append(tuple(rows[f"f{k}"].astype(_DTYPES[k]) for k in range(len(fields))))
    return parts


def _select_out(
    session: Session, stmt: Select[tuple[int, int, float]], timestamps: bool, chunk: int = 200_000
) -> Parts:
    parts: Parts = []
    result = session.execute(stmt.execution_options(yield_per=chunk))
    for partition in result.partitions():
        cols = list(zip(*partition, strict=True))
        part: tuple[np.ndarray, ...] = (
            np.asarray(cols[0], dtype=np.int32),
            np.asarray(cols[1], dtype=np.int32),
            np.asarray(cols[2], dtype=np.float32),
        )
        if timestamps:
            part = (*part, np.asarray(cols[3], dtype=np.int64))
        parts.append(part)
    return parts


def _psycopg(session: Session) -> psycopg.Connection[Any]:
    """The psycopg connection under the session's, in the same transaction."""
    import psycopg

    raw = session.connection().connection.driver_connection
    if not isinstance(raw, psycopg.Connection):
        raise TypeError(f"COPY needs a psycopg 3 connection, not {type(raw).__name__}")
    return raw


def max_rated_at(*, session: Session) -> int | None:
    value = session.execute(select(func.max(ratings.c.rated_at))).scalar_one_or_none()
    return None if value is None else int(value)


class RatingWriter:
    """Writes validated ratings (database ids), in file order, inside the caller's transaction;
    of several ratings of one (user, item) the newest wins, the last written on ties.

    SQLite: an upsert per chunk, applied row after row. PostgreSQL: chunks are COPYed into a
    temporary table (the server takes them in while the client parses the next chunk) and
    `finish` merges them in one statement. Into an empty ratings table (`first_load`) the
    merge runs without the table's indexes and foreign keys and rebuilds them afterwards,
    several times faster than maintaining them row by row; the DDL is transactional, so a
    failure anywhere still leaves the table as it was.

    A first load locks ratings, users and items exclusively before it creates its first
    user: taken at the end, as the DDL needs them, the locks deadlocked with feedback that was
    waiting for one of the load's new users, and the load was the one PostgreSQL cancelled.
    Feedback and catalog reads wait for the load instead; it is a one-time bootstrap.
    """

    _FIELDS = (">i4", ">i4", ">f8", ">i8", ">i8")

    def __init__(self, session: Session, *, first_load: bool) -> None:
        self.session = session
        self.postgres = is_postgres(session)
        self.first_load = first_load and self.postgres and self._lock_empty_table()
        self.staged = 0
        # (user, item) keys written so far: whether the merge must pick among duplicates.
        self._keys: list[np.ndarray] = []
        if self.postgres:
            session.execute(
                text(
                    "CREATE TEMPORARY TABLE ingest_ratings (user_id integer, item_id integer, "
                    "value double precision, rated_at bigint, seq bigint) ON COMMIT DROP"
                )
            )

    def _lock_empty_table(self) -> bool:
        """Lock for a first load; False if ratings arrived since the caller counted them."""
        # Exclusive on all three: dropping the foreign keys at the end locks the tables they
        # reference exclusively too, and a reader of items holding on meanwhile deadlocks.
        # LOCK TABLE takes the three one after another, so a feedback transaction holding
        # one and wanting the next could still deadlock with it, and either might be the one
        # PostgreSQL cancels. Each try is therefore bounded well below deadlock_timeout (1 s)
        # and undone whole on failure: the load never holds a lock while waiting for long,
        # so nobody waits on it long enough to be judged in a deadlock.
        started = time.monotonic()
        configured = self.session.execute(text("SHOW lock_timeout")).scalar_one()
        self.session.execute(text(f"SET LOCAL lock_timeout = '{_LOCK_TRY_MS}ms'"))
        while True:
            savepoint = self.session.begin_nested()
            try:
                self.session.execute(
                    text("LOCK TABLE items, users, ratings IN ACCESS EXCLUSIVE MODE")
                )
            except OperationalError as exc:
                savepoint.rollback()
                retry = is_lock_timeout(exc) or is_transient(exc)
                if not retry or time.monotonic() - started > _LOCK_PATIENCE_S:
                    raise
                time.sleep(_LOCK_TRY_MS / 1000 * random.random())
                continue
            savepoint.commit()
            self.session.execute(
                text("SELECT set_config('lock_timeout', :value, true)"), {"value": configured}
            )
            return self.session.execute(select(ratings.c.user_id).limit(1)).first() is None

    def write(
        self, user_ids: np.ndarray, item_ids: np.ndarray, values: np.ndarray, rated_at: np.ndarray
    ) -> None:
        if not self.postgres:
            # One statement per row (executemany), so a later duplicate meets the earlier
            # one already stored and the upsert's rule picks the newest.
            upsert_ratings(
                session=self.session,
                rows=[
                    {"user_id": int(u), "item_id": int(i), "value": float(v), "rated_at": int(t)}
                    for u, i, v, t in zip(user_ids, item_ids, values, rated_at, strict=True)
                ],
            )
            return
        self._keys.append(user_ids.astype(np.int64) << 32 | item_ids.astype(np.int64))
        seq = np.arange(self.staged, self.staged + len(user_ids), dtype=np.int64)
        payload = pgcopy.encode([user_ids, item_ids, values, rated_at, seq], self._FIELDS)
        statement = "COPY ingest_ratings FROM STDIN (FORMAT BINARY)"
        with _psycopg(self.session).cursor() as cursor, cursor.copy(statement) as copy:
            copy.write(pgcopy.HEADER)
            copy.write(payload)
            copy.write(pgcopy.TRAILER)
        self.staged += len(user_ids)

    def _has_duplicates(self) -> bool:
        keys = np.concatenate(self._keys)
        self._keys = []
        keys.sort()
        return bool((keys[1:] == keys[:-1]).any())

    def finish(self) -> int | None:
        """Merge what was staged; on PostgreSQL returns the number of (user, item) pairs
        that were new, as the merge itself counted them (feedback committed meanwhile is not
        ours to count); None on SQLite, where nobody else writes during the transaction."""
        if not self.postgres:
            return None
        if not self.staged:
            return 0
        session = self.session
        # Room to sort and to build indexes in memory, for this transaction only.
        session.execute(text("SET LOCAL work_mem = '256MB'"))
        session.execute(text("SET LOCAL maintenance_work_mem = '512MB'"))
        insert = "INSERT INTO ratings (user_id, item_id, value, rated_at) "
        if self._has_duplicates():
            rows = (
                "SELECT DISTINCT ON (user_id, item_id) user_id, item_id, value, rated_at "
                "FROM ingest_ratings ORDER BY user_id, item_id, rated_at DESC, seq DESC"
            )
        else:  # the usual case: no sort needed
            rows = "SELECT user_id, item_id, value, rated_at FROM ingest_ratings"
        if self.first_load:
            # The primary key first on the way back: the foreign keys do not need it, but a
            # reader of the DDL expects it. Names and definitions come from the table model.
            constraints = sorted(
                ratings.constraints, key=lambda c: not isinstance(c, PrimaryKeyConstraint)
            )
            for index in ratings.indexes:
                session.execute(DropIndex(index))
            for constraint in constraints:
                session.execute(DropConstraint(constraint))
            inserted = session.execute(
                text(f"WITH written AS ({insert}{rows} RETURNING 1) SELECT count(*) FROM written")
            ).scalar_one()
            for constraint in constraints:
                session.execute(AddConstraint(constraint))
            for index in ratings.indexes:
                session.execute(CreateIndex(index))
        else:
            # The rule of `queries.upsert_ratings`: the latest rating wins, and re-applying the
            # same data changes nothing.
            # xmax is 0 in a row this statement inserted, set in one it updated.
            inserted = session.execute(
                text(
                    "WITH written AS (" + insert + rows + " ON CONFLICT (user_id, item_id) "
                    "DO UPDATE SET value = excluded.value, rated_at = excluded.rated_at "
                    "WHERE excluded.rated_at >= ratings.rated_at "
                    "AND excluded.value <> ratings.value RETURNING (xmax = 0) AS fresh) "
                    "SELECT count(*) FILTER (WHERE fresh) FROM written"
                )
            ).scalar_one()
        return int(inserted)
