"""One job at a time, across processes and machines, released when the holder dies.

PostgreSQL: a session-level advisory lock on a connection held for the job; the server
releases it when that connection ends, however the process ended. SQLite: an exclusive
`flock` on a file beside the database; the kernel releases it when the process exits, even
after `kill -9`.
"""

from __future__ import annotations

import fcntl
import os
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, make_url, text
from sqlalchemy.orm import Session

from recsys.store.db import is_postgres


def _key(name: str) -> int:
    # Advisory locks take a bigint; a stable hash of the name keeps jobs apart.
    return zlib.crc32(f"recsys:{name}".encode())


@contextmanager
def job_lock(engine: Engine, name: str) -> Iterator[bool]:
    """Yields True if this process holds the lock for the block, False if another does."""
    if is_postgres(engine):
        with engine.connect() as conn:
            got = bool(
                conn.execute(text("select pg_try_advisory_lock(:k)"), {"k": _key(name)}).scalar()
            )
            conn.commit()
            try:
                yield got
            finally:
                if got:
                    conn.execute(text("select pg_advisory_unlock(:k)"), {"k": _key(name)})
                    conn.commit()
        return
    database = make_url(str(engine.url)).database
    if not database or database == ":memory:":
        yield True  # a private in-memory database: nobody else can run against it
        return
    path = Path(f"{database}.{name}.lock")
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def wait_for_turn(session: Session, name: str) -> None:
    """Wait until no other transaction holds `name`, then hold it until this transaction
    ends: whatever the transaction read stays true until it commits.

    PostgreSQL: a transaction-level advisory lock on `name`. Ingestions take it before they
    count rows (two at once could both load "an empty table", and their index rebuilds
    deadlock); registry changes before they read a version's status (two could otherwise
    both see "candidate" and leave two versions in production). SQLite has one writer at a
    time, but Python's sqlite3 opens the write transaction only at the first write, after the
    reads: BEGIN IMMEDIATE takes the write lock first (busy_timeout makes others wait)."""
    if is_postgres(session):
        session.execute(text("select pg_advisory_xact_lock(:k)"), {"k": _key(name)})
        return
    raw = session.connection().connection.dbapi_connection
    if raw is not None and not raw.in_transaction:
        raw.execute("BEGIN IMMEDIATE")
