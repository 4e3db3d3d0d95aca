"""Queries. HTTP and CLI code never build SQL themselves; they call these with `session=`.

Upserts use each dialect's `INSERT ... ON CONFLICT`, which SQLite and PostgreSQL share, so the
same statement decides "latest rating wins" in the database rather than in Python.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import numpy as np
from sqlalchemy import BindParameter, ColumnElement, Select, Table, bindparam, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from recsys.store.db import is_postgres
from recsys.store.tables import items, ratings, users

# Both dialects cap bound parameters per statement (SQLite at 32766); stay well below.
_IN_BATCH = 5_000

V = TypeVar("V")


def insert_for(dialect: str, table: Table) -> Any:
    """The dialect's own INSERT (with its ON CONFLICT) into `table`."""
    if dialect == "postgresql":
        return postgresql.insert(table)
    if dialect == "sqlite":
        return sqlite.insert(table)
    raise NotImplementedError(f"unsupported database dialect {dialect!r}: use SQLite or PostgreSQL")


def dialect_insert(session: Session, table: Table) -> Any:
    return insert_for(session.get_bind().dialect.name, table)


def array_param(name: str, values: Sequence[Any], column: ColumnElement[Any]) -> BindParameter[Any]:
    """PostgreSQL: a list as one array parameter. A statement with one parameter per value is
    a new statement for every length, which psycopg parses anew each time; with arrays, the
    hot paths (feedback, id lookups) send the same short statement whatever the batch size."""
    return bindparam(name, value=list(values), type_=postgresql.ARRAY(column.type))


def where_in(
    session: Session, stmt: Select[Any], column: ColumnElement[Any], values: Sequence[Any]
) -> Select[Any]:
    """`stmt` restricted to rows whose `column` is one of `values`. SQLite: IN (values must
    fit its parameter limit). PostgreSQL: a join with unnest(array), for any number of values.

    psycopg prepares statements it sees often, and the generic plan of `column = ANY(array)`
    made while a table was small compares every row with every array element until the next
    ANALYZE (a feedback burst spent 90 % of the database's time there); a join is planned as
    index lookups or a hash join, linear either way."""
    values = list(dict.fromkeys(values))
    if not is_postgres(session):
        return stmt.where(column.in_(values))
    wanted = func.unnest(array_param("wanted", values, column)).table_valued("v").render_derived()
    return stmt.join(wanted, column == wanted.c.v)


def unnest_rows(table: Table, rows: Sequence[Mapping[str, Any]]) -> Select[Any]:
    """PostgreSQL: `rows` (dicts with the same keys) as a SELECT of one array per column,
    expanded by unnest, for `INSERT ... SELECT`."""
    names = list(rows[0])
    arrays = [array_param(f"rows_{n}", [r[n] for r in rows], table.c[n]) for n in names]
    source = func.unnest(*arrays).table_valued(*names).render_derived()
    return select(*(source.c[n] for n in names))


def insert_rows(
    session: Session, stmt: Any, table: Table, rows: Sequence[Mapping[str, Any]]
) -> None:
    """Execute an INSERT (with its ON CONFLICT clause) for `rows`: on PostgreSQL as one
    INSERT ... SELECT from unnest(arrays), elsewhere as executemany."""
    if not rows:
        return
    if is_postgres(session):
        session.execute(stmt.from_select(list(rows[0]), unnest_rows(table, rows)))
    else:
        session.execute(stmt, list(rows))


def insert_rows_returning(
    session: Session, stmt: Any, table: Table, rows: Sequence[Mapping[str, Any]], column: Any
) -> list[Any]:
    """`insert_rows`, returning `column` of the rows that were inserted: with ON CONFLICT DO
    NOTHING, those that no other transaction had inserted first."""
    if not rows:
        return []
    if is_postgres(session):
        query = stmt.from_select(list(rows[0]), unnest_rows(table, rows)).returning(column)
        return list(session.execute(query).scalars())
    return list(session.execute(stmt.returning(column), list(rows)).scalars())


def _batches(values: Sequence[V], size: int = _IN_BATCH) -> Iterable[Sequence[V]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def in_batches(session: Session, values: Sequence[V]) -> Iterable[Sequence[V]]:
    """`values` in pieces that `where_in` can take: all at once on PostgreSQL, within
    SQLite's limit on parameters otherwise."""
    return [values] if is_postgres(session) else _batches(values)


def lookup_ids(*, session: Session, table: Table, external_ids: Sequence[str]) -> dict[str, int]:
    """Database ids of the external ids that exist; unknown ones are absent from the result."""
    wanted = list(dict.fromkeys(external_ids))
    found: dict[str, int] = {}
    pairs = select(table.c.external_id, table.c.id)
    for batch in in_batches(session, wanted):
        stmt = where_in(session, pairs, table.c.external_id, batch)
        found.update(dict(session.execute(stmt).all()))  # .all(): a Result has keys()
    return found


def ensure_ids(*, session: Session, table: Table, external_ids: Sequence[str]) -> dict[str, int]:
    """Database ids for external ids, creating rows for the new ones (users or items)."""
    # Sorted: concurrent transactions that create the same new ids take their locks in the
    # same order, so they wait for each other instead of deadlocking.
    wanted = sorted(set(external_ids))
    if is_postgres(session):
        return _ensure_ids_pg(session, table, wanted)
    found = lookup_ids(session=session, table=table, external_ids=wanted)
    missing = [ext for ext in wanted if ext not in found]
    if missing:
        # DO NOTHING on conflict: a concurrent writer may have created the same id meanwhile.
        stmt = dialect_insert(session, table).on_conflict_do_nothing(index_elements=["external_id"])
        session.execute(stmt, [{"external_id": ext} for ext in missing])
        found.update(lookup_ids(session=session, table=table, external_ids=missing))
    return found


def _ensure_ids_pg(session: Session, table: Table, wanted: list[str]) -> dict[str, int]:
    # One array parameter instead of thousands of bound values: two statements for any number
    # of ids, which is what keeps bulk ingestion from waiting on the lookups.
    ids = array_param("ids", wanted, table.c.external_id)
    session.execute(
        postgresql.insert(table)
        .from_select(["external_id"], select(func.unnest(ids)))
        .on_conflict_do_nothing(index_elements=["external_id"])
    )
    return lookup_ids(session=session, table=table, external_ids=wanted)


def upsert_items(*, session: Session, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert or update catalog items; `rows` have external_id and optionally title, genres,
    metadata. Fields that a row does not carry keep their stored value."""
    if not rows:
        return
    # A timestamp to the microsecond from here, not the database's now(): SQLite's keeps
    # whole seconds, and services tell changed items apart by it (see `catalog_state`).
    stamp = datetime.now(UTC)
    by_keys: dict[tuple[str, ...], list[Mapping[str, Any]]] = {}
    for row in rows:
        by_keys.setdefault(tuple(sorted(row)), []).append({**row, "updated_at": stamp})
    for keys, group in by_keys.items():
        stmt = dialect_insert(session, items)
        updates = {k: stmt.excluded[k] for k in keys if k != "external_id"}
        updates["updated_at"] = stmt.excluded.updated_at
        stmt = stmt.on_conflict_do_update(index_elements=["external_id"], set_=updates)
        session.execute(stmt, list(group))


def upsert_ratings(*, session: Session, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert ratings (user_id, item_id, value, rated_at) keyed by database ids.

    A stored rating is replaced only by one at least as new that changes its value, so the
    latest rating wins and re-applying the same data changes nothing. `rows` must hold each
    (user, item) once: PostgreSQL refuses to update one row twice in a statement.
    """
    if not rows:
        return
    # In key order: concurrent writers of the same ratings lock them in the same order.
    rows = sorted(rows, key=lambda r: (r["user_id"], r["item_id"]))
    stmt = dialect_insert(session, ratings)
    stmt = stmt.on_conflict_do_update(
        index_elements=["user_id", "item_id"],
        set_={"value": stmt.excluded.value, "rated_at": stmt.excluded.rated_at},
        where=(stmt.excluded.rated_at >= ratings.c.rated_at)
        & (stmt.excluded.value != ratings.c.value),
    )
    insert_rows(session, stmt, ratings, rows)


def count_rows(*, session: Session, table: Table) -> int:
    return int(session.execute(select(func.count()).select_from(table)).scalar_one())


def counts(*, session: Session) -> dict[str, int]:
    return {t.name: count_rows(session=session, table=t) for t in (users, items, ratings)}


def external_ids(*, session: Session, table: Table, ids: np.ndarray) -> list[str]:
    """External ids for database ids, in the order given."""
    mapping = dict(session.execute(select(table.c.id, table.c.external_id)).all())
    return [mapping[int(pk)] for pk in ids]


def item_genres(*, session: Session, ids: np.ndarray) -> list[str | None]:
    """The genres column of items, for database ids, in the order given."""
    mapping = dict(session.execute(select(items.c.id, items.c.genres)).all())
    return [mapping.get(int(pk)) for pk in ids]


def item_details(*, session: Session, external_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Title and genres of items, by external id; unknown ids are absent."""
    found: dict[str, dict[str, Any]] = {}
    for batch in _batches(list(dict.fromkeys(external_ids))):
        rows = session.execute(
            select(items.c.external_id, items.c.title, items.c.genres).where(
                items.c.external_id.in_(batch)
            )
        )
        found.update({ext: {"title": title, "genres": genres} for ext, title, genres in rows})
    return found


def search_items(*, session: Session, text: str, limit: int = 10) -> list[tuple[str, str | None]]:
    """Items whose title contains `text` (case-insensitive), as (external id, title)."""
    rows = session.execute(
        select(items.c.external_id, items.c.title)
        .where(func.lower(items.c.title).contains(text.lower(), autoescape=True))  # % and _ literal
        .order_by(items.c.title)
        .limit(limit)
    )
    return [(ext, title) for ext, title in rows]


def catalog_state(*, session: Session) -> tuple[int, datetime | None]:
    """(number of items, latest update): a cheap test of whether the catalog changed."""
    count, latest = session.execute(
        select(func.count(), func.max(items.c.updated_at)).select_from(items)
    ).one()
    return int(count), latest


def catalog(
    *, session: Session, updated_since: datetime | None = None
) -> list[tuple[str, str | None, str | None, datetime]]:
    """Items as (external id, title, genres, updated_at); only those changed since a time."""
    stmt = select(items.c.external_id, items.c.title, items.c.genres, items.c.updated_at)
    if updated_since is not None:
        stmt = stmt.where(items.c.updated_at >= updated_since)
    return [(r[0], r[1], r[2], r[3]) for r in session.execute(stmt)]
