"""The impression writer's own process: it commits the impression rows that a serving process
sends it, so that none of the work of writing them (SQLAlchemy's parameter processing, JSON
encoding, the driver) holds the serving process's GIL. In the same process, that work cost a
fifth of the throughput of first-visit lists (benchmarks/README.md, "Serving").

`service.impressions.ImpressionWriter` starts it and talks to it over two one-way pipes:
- rows: each message is a pickled list of rows for `recsys.store.events.insert_impressions`;
  an empty message means that no more will come;
- acks: after each batch is committed, its number of rows.

A batch the database refuses is retried with backoff; meanwhile the serving process's queue
fills up and drops rows (counted), and it stops the process after its own timeout.
"""

from __future__ import annotations

import logging
import multiprocessing
import pickle
import signal
import time
from multiprocessing.connection import Connection
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from recsys.store.db import make_engine, session_scope
from recsys.store.events import insert_impressions

log = logging.getLogger("recsys.service.impressions")


def write_batches(database_url: str, rows: Connection, acks: Connection) -> None:
    """The process's main: commit each batch received, acknowledge it, until the empty
    message (or the serving process's end)."""
    # Ctrl+C reaches the whole process group, and a service manager may send SIGTERM to every
    # process of the service: this one ends when the serving process says so, after writing
    # what it was sent (the serving process kills it if that takes too long).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    engine = make_engine(database_url, pool_size=1, max_overflow=0)
    try:
        while (batch := _next(rows)) is not None:
            if not _commit(engine, batch):
                return
            acks.send(len(batch))
    finally:
        engine.dispose()


def _next(rows: Connection) -> list[dict[str, Any]] | None:
    try:
        message = rows.recv_bytes()
    except EOFError:  # the serving process is gone
        return None
    batch: list[dict[str, Any]] | None = pickle.loads(message) if message else None
    return batch


def _commit(engine: Engine, batch: list[dict[str, Any]]) -> bool:
    """Commit the batch, retrying while the database is away; False if the serving process
    ended meanwhile (nobody is left to acknowledge to)."""
    backoff = 0.2
    parent = multiprocessing.parent_process()
    while True:
        try:
            with session_scope(engine) as s:
                insert_impressions(session=s, rows=batch)
            return True
        except SQLAlchemyError as exc:
            if parent is not None and not parent.is_alive():
                log.error(
                    "the serving process ended with the database away: %d dropped", len(batch)
                )
                return False
            log.warning("impressions not written (%s); retrying", type(exc).__name__)
            time.sleep(backoff)
            backoff = min(backoff * 2, 5.0)
