"""The impression writer's own process: it commits the impression rows that a serving process
sends it, so that none of the work of writing them (SQLAlchemy's parameter processing, JSON
encoding, the driver) holds the serving process's GIL. In the same process, in a thread, that
work cost a fifth of the throughput of first-visit lists (benchmarks/README.md, "Serving").

`service.impressions.ImpressionWriter` runs this module's `main` in a new Python and talks to
it over its standard streams, in messages of a 4-byte length and a pickle:
- in: first the database URL (not on the command line, where `ps` would show a password),
  then lists of rows for `recsys.store.events.insert_impressions`, each row encoded by
  `encode_row`; an empty message (or the end of the stream) means that no more will come;
- out: after each list is committed, its number of rows, as a 4-byte count.
Logs go to standard error.

A plain subprocess rather than multiprocessing: a spawned child imports the parent's main
module again, and an app created at the top of a user's script would start itself anew there.

A batch the database refuses is retried with backoff; meanwhile the serving process's queue
fills up and drops rows (counted), and it kills this process after its own stop timeout.
"""

from __future__ import annotations

import logging
import os
import pickle
import signal
import struct
import sys
import time
from datetime import datetime
from typing import IO, Any

import orjson
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from recsys.store.db import make_engine, session_scope
from recsys.store.events import insert_impressions

log = logging.getLogger("recsys.service.impressions")

COUNT = struct.Struct("!I")
"""A message's length, and an acknowledgement's count of rows."""


def encode_row(row: dict[str, Any]) -> bytes:
    """A row as the serving process queues it: JSON bytes, which the garbage collector never
    scans. Queued as dicts of lists until sent, rows were ~10 containers each that it scanned
    twice: ~4 us a list served under load, more than encoding them costs (~2 us)."""
    return orjson.dumps(row, option=orjson.OPT_SERIALIZE_NUMPY)


def decode_row(encoded: bytes) -> dict[str, Any]:
    """`encode_row` undone: the same values, `served_at` a datetime again (orjson wrote it
    in ISO 8601 with its offset and microseconds)."""
    row: dict[str, Any] = orjson.loads(encoded)
    row["served_at"] = datetime.fromisoformat(row["served_at"])
    return row


def write_message(stream: IO[bytes], payload: bytes) -> None:
    stream.write(COUNT.pack(len(payload)))
    stream.write(payload)
    stream.flush()


def read_message(stream: IO[bytes]) -> bytes | None:
    """The next message; None at the end of the stream."""
    header = stream.read(COUNT.size)
    if len(header) < COUNT.size:
        return None
    (size,) = COUNT.unpack(header)
    payload = stream.read(size)
    return payload if len(payload) == size else None


def main() -> None:
    # Ctrl+C reaches the whole process group, and a service manager may send SIGTERM to every
    # process of the service: this one ends when the serving process says so, after writing
    # what it was sent (the serving process kills it if that takes too long).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # Background work: where it competes with the serving process for a core, answers come
    # first and the queue absorbs the rows (on two cores, first visits' throughput rose by
    # 3 % in an A/B run, within the noise; under overload rows are dropped and counted).
    os.nice(10)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    source, acks = sys.stdin.buffer, sys.stdout.buffer
    url = read_message(source)
    if url is None:
        return
    engine = make_engine(pickle.loads(url), pool_size=1, max_overflow=0)
    parent = os.getppid()
    try:
        while (message := read_message(source)) is not None and message:
            batch = [decode_row(row) for row in pickle.loads(message)]
            if not _commit(engine, batch, parent):
                return
            acks.write(COUNT.pack(len(batch)))
            acks.flush()
    finally:
        engine.dispose()


def _commit(engine: Engine, batch: list[dict[str, Any]], parent: int) -> bool:
    """Commit the batch, retrying while the database is away; False if the serving process
    ended meanwhile (nobody is left to acknowledge to)."""
    backoff = 0.2
    while True:
        try:
            with session_scope(engine) as s:
                insert_impressions(session=s, rows=batch)
            return True
        except SQLAlchemyError as exc:
            if os.getppid() != parent:  # reparented: the serving process is gone
                log.error(
                    "the serving process ended with the database away: %d dropped", len(batch)
                )
                return False
            log.warning("impressions not written (%s); retrying", type(exc).__name__)
            time.sleep(backoff)
            backoff = min(backoff * 2, 5.0)


if __name__ == "__main__":
    main()
