"""Memory of a serving worker on MovieLens after 10,000 requests of every kind it answers.

    .venv/bin/python -m benchmarks.serve_memory [--requests 10000] [--rate 200] [--workers 1]
        [--heavy-minutes 10] [--heavy-rate 20] [--database sqlite|postgres]

Loads the sample into a fresh SQLite store (or PostgreSQL database), trains with the defaults
(as `make demo`), serves it with `recsys serve`, then sends `--requests` requests at `--rate` a
second: lists for known users and for strangers, visitors' lists (fold-in), predictions,
similar items, feedback and, as Prometheus would, /metrics (whose alerts come from the
monitoring summary, computed in a process of the worker's own). Prints the resident memory of
each worker process and of its children (impression writer, monitoring process), and of the
supervisor when there are several workers, and whether torch's or pandas' libraries were ever
loaded into a worker (they should not be: serving scores with numpy, monitoring counts in
plain Python). Target (issue 18): RSS per worker <= 200 MB.

Then, with `--heavy-minutes` (default 10), the largest requests the defaults allow at
`--heavy-rate` a second: lists of k = 1,000 for known users, visitors' lists of k = 1,000
from 1,000 ratings, and batches of 1,000 predictions; the worker's RSS is printed every
minute (it must level off, at <= 400 MB), and a k = 10 list's latency is measured for a
minute before and after (it must not stay slowed); then the impressions the worker logged
and dropped (its queue is bounded in lists and in bytes).
"""

from __future__ import annotations

import argparse
import tempfile
import uuid
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import httpx
import numpy as np

from benchmarks.harness import movielens_store, open_loop, scratch_postgres, serving
from benchmarks.rawhttp import Call
from benchmarks.soak import server_pid
from recsys import samples

KINDS = ["rec", "new", "visitor", "pred", "similar", "feedback", "metrics"]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def children(pid: int) -> list[int]:
    return [
        int(child)
        for task in Path(f"/proc/{pid}/task").iterdir()
        for child in (task / "children").read_text().split()
    ]


def what_runs(pid: int) -> str:
    """The tail of a process's command line: which of a worker's helpers it is."""
    words = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    text = " ".join(w.decode(errors="replace") for w in words if w)
    return text[-60:]


def _mixed(
    n: int, users: np.ndarray, items: np.ndarray
) -> tuple[np.ndarray, Callable[[int], Call]]:
    """`n` requests of every kind in the mix (their kinds, and the i-th request)."""
    rng = np.random.default_rng(0)
    kinds = rng.choice(
        KINDS,
        size=n,
        p=[0.5, 0.1, 0.1, 0.1, 0.1, 0.09, 0.01],
    )
    who, what = rng.choice(users, size=n), rng.choice(items, size=(n, 3))

    def request(i: int) -> Call:
        kind, film = kinds[i], str(what[i, 0])
        if kind == "rec":
            return Call.get(f"/v1/users/{who[i]}/recommendations", k=10)
        if kind == "new":
            return Call.get(f"/v1/users/memory-{i}/recommendations", k=10)
        if kind == "visitor":
            ratings = [{"item_id": str(f), "rating": 4.5} for f in what[i]]
            return Call.post("/v1/recommendations", {"ratings": ratings, "k": 10})
        if kind == "pred":
            return Call.get("/v1/predictions", user_id=who[i], item_id=film)
        if kind == "similar":
            return Call.get(f"/v1/items/{film}/similar", k=10)
        if kind == "metrics":
            return Call.get("/metrics")
        event = {"user_id": str(who[i]), "item_id": film, "value": 4.0,
                 "event_id": uuid.uuid4().hex}  # fmt: skip
        return Call.post("/v1/feedback", event)

    return kinds, request


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--heavy-minutes", type=int, default=10)
    parser.add_argument("--heavy-rate", type=float, default=20)
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    args = parser.parse_args()
    sample = samples.movielens()
    users = sample.ratings["user_id"].unique()
    items = sample.ratings["item_id"].value_counts().index[:2000].to_numpy()
    n = args.requests
    kinds, request = _mixed(n, users, items)

    database = scratch_postgres() if args.database == "postgres" else nullcontext(None)
    with tempfile.TemporaryDirectory() as tmp, database as pg_url:
        env = movielens_store(Path(tmp), pg_url)
        with serving(env, workers=args.workers) as base:
            supervisor = server_pid(int(base.rsplit(":", 1)[1]))
            workers = children(supervisor) if args.workers > 1 else [supervisor]
            before = {pid: rss_mb(pid) for pid in workers}
            result = open_loop(base, args.rate, n / args.rate, request)
            after = {pid: rss_mb(pid) for pid in workers}
            # Each worker's impression writer runs in a process of its own (a child), as do
            # its monitoring processes (and multiprocessing's resource tracker).
            writers = {
                pid: [(child, rss_mb(child), what_runs(child)) for child in children(pid)]
                for pid in workers
            }
            maps = {pid: Path(f"/proc/{pid}/maps").read_text() for pid in workers}
            torch_in = [pid for pid in workers if "libtorch" in maps[pid]]
            pandas_in = [pid for pid in workers if "pandas/_libs" in maps[pid]]
            supervisor_mb = rss_mb(supervisor) if args.workers > 1 else None
            if args.heavy_minutes:
                heavy(base, workers[0], users, items, args.heavy_minutes, args.heavy_rate)
    print(f"{n:,} requests at {args.rate:g}/s: {result.summary()}")
    for kind in KINDS:
        ms = result.latencies_s[kinds == kind] * 1000
        print(f"  {kind:9s} {len(ms):6d} requests: p50 {np.percentile(ms, 50):.2f} ms, "
              f"p99 {np.percentile(ms, 99):.2f} ms")  # fmt: skip
    for pid in workers:
        print(f"worker {pid}: RSS {before[pid]:.0f} MB once ready, {after[pid]:.0f} MB after")
        for child, mb, runs in writers[pid]:
            print(f"  child {child} ({runs}): RSS {mb:.0f} MB")
    if supervisor_mb is not None:
        print(f"supervisor: RSS {supervisor_mb:.0f} MB")
    print(f"torch loaded in a worker: {'yes' if torch_in else 'no'}")
    print(f"pandas loaded in a worker: {'yes' if pandas_in else 'no'}")


def heavy(
    base: str, worker: int, users: np.ndarray, items: np.ndarray, minutes: int, rate: float
) -> None:
    """The largest requests the defaults allow, a minute at a time, with the worker's RSS
    after each, between two minutes of k = 10 lists."""
    rng = np.random.default_rng(1)

    def small(i: int) -> Call:
        return Call.get(f"/v1/users/{users[i % len(users)]}/recommendations", k=10)

    def large(i: int) -> Call:
        kind = i % 3
        if kind == 0:
            return Call.get(f"/v1/users/{rng.choice(users)}/recommendations", k=1000)
        films = rng.choice(items, size=1000, replace=False)
        if kind == 1:
            ratings = [{"item_id": str(f), "rating": 4.0} for f in films]
            return Call.post("/v1/recommendations", {"ratings": ratings, "k": 1000})
        pairs = [{"user_id": str(rng.choice(users)), "item_id": str(f)} for f in films]
        return Call.post("/v1/predictions", {"pairs": pairs})

    before = open_loop(base, 50, 60, small)
    print(f"k = 10 lists for a minute before: {before.summary()}", flush=True)
    print(f"largest requests at {rate:g}/s (k = 1,000 lists, visitors with 1,000 ratings, "
          f"1,000 predictions a request):", flush=True)  # fmt: skip
    for minute in range(1, minutes + 1):
        result = open_loop(base, rate, 60, large)
        print(f"  minute {minute:2d}: worker RSS {rss_mb(worker):.0f} MB; {result.summary()}",
              flush=True)  # fmt: skip
    after = open_loop(base, 50, 60, small)
    print(f"k = 10 lists for a minute after: {after.summary()}", flush=True)
    print(f"worker RSS at the end: {rss_mb(worker):.0f} MB", flush=True)
    exported = httpx.get(f"{base}/metrics", timeout=60).text.splitlines()
    for name in ("recsys_impressions_dropped_total", "recsys_impressions_logged_total"):
        value = next((line.split()[-1] for line in exported if line.startswith(name)), "?")
        print(f"{name}: {value}", flush=True)


if __name__ == "__main__":
    main()
