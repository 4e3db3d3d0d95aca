"""Engines and sessions from a database URL; the same code runs on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic_core import to_json
from sqlalchemy import Engine, create_engine, event, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from recsys.errors import ConfigError


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Foreign keys are off by default in SQLite; WAL lets the service read while a job writes;
    # synchronous=FULL syncs the WAL at every commit, so acknowledged feedback survives a power
    # cut too (NORMAL would only survive a crash of the process); the busy timeout turns
    # "database is locked" into a short wait.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _json_text(value: Any) -> str:
    """What JSON columns store: pydantic-core's encoder (Rust) instead of the standard
    library's, about 8x quicker on the lists of an impression row, which the service writes
    for every list it serves."""
    return to_json(value).decode()


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Create an engine; for a SQLite file, create its folder first so a fresh clone just works."""
    kwargs.setdefault("json_serializer", _json_text)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        else:  # one connection held for the process: no pool to size
            for option in ("pool_size", "max_overflow", "pool_timeout"):
                kwargs.pop(option, None)
        engine = create_engine(url, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(url, **kwargs)


def shown_url(url: str) -> str:
    """The database URL as it may be printed: without its password."""
    return make_url(url).render_as_string(hide_password=True)


def existing_engine(url: str, **kwargs: Any) -> Engine:
    """`make_engine` for a database that must exist already: connecting to a SQLite path
    that names no file would create an empty database, and a command run without the
    demo's variables then failed on "no such table" and left the empty file behind."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        path = Path(parsed.database).expanduser()
        if not path.exists():
            raise ConfigError(
                f"there is no database at {path} (RECSYS_DATABASE_URL={shown_url(url)}): "
                "create it with `recsys db upgrade` (then load ratings: `recsys ingest` or "
                "`recsys load-sample movielens`), or set RECSYS_DATABASE_URL to yours"
            )
    return make_engine(url, **kwargs)


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A session that commits when the block ends and rolls back on any exception."""
    with make_sessionmaker(engine)() as session, session.begin():
        yield session


def is_postgres(bind: Engine | Session) -> bool:
    """Whether an engine, or the engine under a session, is PostgreSQL (the bulk and
    array-parameter paths; SQLite takes the plain ones)."""
    engine = bind.get_bind() if isinstance(bind, Session) else bind
    return engine.dialect.name == "postgresql"


def is_lock_timeout(exc: BaseException) -> bool:
    """PostgreSQL gave up waiting for a lock (lock_timeout) or on the statement
    (statement_timeout): another transaction holds what this one needs."""
    orig = exc.orig if isinstance(exc, DBAPIError) else None
    import psycopg  # only once a database error is being read: `recsys --help` skips it

    return isinstance(orig, psycopg.errors.LockNotAvailable | psycopg.errors.QueryCanceled)


def is_transient(exc: BaseException) -> bool:
    """A failure that the same transaction, run again, would likely not meet: PostgreSQL
    cancelled it to break a deadlock, or to keep transactions serializable."""
    orig = exc.orig if isinstance(exc, DBAPIError) else None
    import psycopg

    return isinstance(orig, psycopg.errors.DeadlockDetected | psycopg.errors.SerializationFailure)
