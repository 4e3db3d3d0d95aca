"""Feedback latency while a large CSV ingestion runs, on PostgreSQL, through `recsys serve`.

    .venv/bin/python -m benchmarks.feedback_during_ingest [--rows 2000000] [--rate 50]

A scratch database gets the MovieLens sample and a trained model; then `recsys ingest` loads
`--rows` ratings of new users (one transaction: those users' rows stay locked until it
commits) while an open-loop client posts `--rate` feedback events per second. Nine in ten
are for users the ingestion never touches; one in ten is for a user the ingestion is
creating, which must wait for it (up to the feedback lock timeout, then retried by the
server, then 503 for the client to retry). Every event has an `event_id`; afterwards the
acknowledged (201) ones are counted in the database: none may be missing.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import numpy as np
from sqlalchemy import create_engine, select, text

from benchmarks.harness import RECSYS, movielens_store, scratch_postgres, serving
from benchmarks.rawhttp import Call, Connection, ProtocolError
from recsys.data import samples
from recsys.store.tables import feedback


def write_ratings(path: Path, rows: int, items: list[str], users: int) -> None:
    rng = np.random.default_rng(0)
    user = rng.integers(0, users, rows)
    item = rng.integers(0, len(items), rows)
    value = rng.integers(1, 11, rows) / 2
    with path.open("w") as fh:
        fh.write("user_id,item_id,rating,timestamp\n")
        names = np.asarray(items)
        for s in range(0, rows, 200_000):
            block = slice(s, s + 200_000)
            fh.writelines(
                f"ing-{u},{i},{v},1600000000\n"
                for u, i, v in zip(user[block], names[item[block]], value[block], strict=True)
            )


Seen = dict[str, list[tuple[float, int, str, float]]]


async def post_feedback(
    base: str,
    rate: float,
    stop: threading.Event,
    items: list[str],
    touched_users: int,
    touched_every: int,
) -> Seen:
    """(latency s, status, event id, due time) per kind of user, until `stop` is set."""
    run = uuid.uuid4().hex[:8]
    seen: Seen = {"untouched": [], "touched": []}
    idle: asyncio.Queue[Connection] = asyncio.Queue()
    connections = [Connection(base) for _ in range(64)]
    for c in connections:
        idle.put_nowait(c)
    rng = np.random.default_rng(1)

    async def one(n: int, due: float) -> None:
        kind = "touched" if touched_every and n % touched_every == 0 else "untouched"
        user = f"ing-{rng.integers(touched_users)}" if kind == "touched" else f"fb-{n}"
        event_id = f"{run}-{n}"
        body = {"user_id": user, "item_id": items[n % len(items)], "value": 4.0,
                "event_id": event_id}  # fmt: skip
        connection = await idle.get()
        try:
            status, _ = await connection.send(Call.post("/v1/feedback", body))
        except (OSError, asyncio.IncompleteReadError, ProtocolError):
            status = 0
        finally:
            idle.put_nowait(connection)
            seen[kind].append((time.perf_counter() - due, status, event_id, due))

    tasks: set[asyncio.Task[None]] = set()
    start = time.perf_counter()
    n = 0
    while not stop.is_set():
        due = start + n / rate
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        task = asyncio.create_task(one(n, due))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        n += 1
    await asyncio.gather(*tasks)
    for c in connections:
        await c.close()
    return seen


def describe(name: str, rows: list[tuple[float, int, str, float]]) -> str:
    if not rows:
        return f"{name}: no events"
    ms = np.array([r[0] for r in rows]) * 1000
    statuses: dict[int, int] = {}
    for _, status, _, _ in rows:
        statuses[status] = statuses.get(status, 0) + 1
    return (
        f"{name}: {len(rows)} events, answers {dict(sorted(statuses.items()))}; latency "
        f"p50 {np.percentile(ms, 50):.0f} ms, p99 {np.percentile(ms, 99):.0f} ms, "
        f"max {ms.max():.0f} ms"
    )


WAITS: Counter[tuple[str, str]] = Counter()


def sample_waits(url: str, stop: threading.Event) -> None:
    """What active backends wait on: locks (the ingestion holds rows), I/O (the WAL of 2M
    rows), or nothing (CPU)."""
    engine = create_engine(url)
    query = text(
        "SELECT coalesce(wait_event_type, 'CPU'), coalesce(wait_event, '-') "
        "FROM pg_stat_activity WHERE state = 'active' AND pid <> pg_backend_pid() "
        "AND datname = current_database()"
    )
    with engine.connect() as conn:
        while not stop.wait(0.2):
            for kind, event in conn.execute(query):
                WAITS[(kind, event)] += 1
            conn.rollback()
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--users", type=int, default=20_000, help="new users in the file")
    parser.add_argument(
        "--touched-every", type=int, default=10, help="every n-th event is for a new user (0: none)"
    )
    args = parser.parse_args()
    items = samples.movielens().items["item_id"].astype(str).tolist()
    with tempfile.TemporaryDirectory() as tmp, scratch_postgres() as url:
        folder = Path(tmp)
        env = movielens_store(folder, url)
        csv = folder / "big.csv"
        write_ratings(csv, args.rows, items, args.users)
        with serving(env) as base:
            stop = threading.Event()
            outcome: dict[str, float] = {}

            def ingest() -> None:
                time.sleep(2.0)  # feedback first flows without the ingestion
                outcome["ingest_start"] = time.perf_counter()
                subprocess.run([RECSYS, "ingest", str(csv)], env=env, check=True,
                               stdout=subprocess.DEVNULL)  # fmt: skip
                outcome["ingest_end"] = time.perf_counter()
                time.sleep(2.0)
                stop.set()

            waits = threading.Thread(target=sample_waits, args=(url, stop), daemon=True)
            waits.start()

            worker = threading.Thread(target=ingest)
            worker.start()
            seen = asyncio.run(
                post_feedback(base, args.rate, stop, items, args.users, args.touched_every)
            )
            worker.join()
            waits.join()
        engine = create_engine(url)
        with engine.connect() as conn:
            stored = set(conn.execute(select(feedback.c.event_id)).scalars())
        engine.dispose()
    start, end = outcome["ingest_start"], outcome["ingest_end"]
    print(
        f"ingested {args.rows:,} ratings of {args.users:,} new users in {end - start:.1f} s, "
        f"while posting {args.rate:g} feedback events/s"
    )
    _report(seen, start, end, stored)


def _report(seen: Seen, start: float, end: float, stored: set[str]) -> None:
    """Latencies during the ingestion and outside it, what PostgreSQL waited on, and whether
    every acknowledged event was stored."""
    for name, rows in seen.items():
        during = [r for r in rows if start <= r[3] <= end]
        outside = [r for r in rows if not start <= r[3] <= end]
        print(describe(f"{name}, during the ingestion", during))
        print(describe(f"{name}, before and after", outside))
        slow = [r[3] - start for r in during if r[0] > 1.0]
        if slow:
            print(
                f"  {len(slow)} of them took over 1 s; they were due from {min(slow):.1f} s to "
                f"{max(slow):.1f} s into the ingestion"
            )
    print("what PostgreSQL's other sessions waited on (samples every 0.2 s):")
    for (kind, event), n in WAITS.most_common(8):
        print(f"  {kind}:{event} {n}")
    acknowledged = [r[2] for rows in seen.values() for r in rows if r[1] == 201]
    missing = [e for e in acknowledged if e not in stored]
    print(f"acknowledged {len(acknowledged)}, missing from the database {len(missing)}")


if __name__ == "__main__":
    main()
