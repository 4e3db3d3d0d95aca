"""Unauthenticated scrapes of /metrics in a loop must not stall the service (issue 34, item 1).

    .venv/bin/python -m benchmarks.metrics_storm [--threads 50] [--seconds 30]
        [--traffic-lists 20000] [--database postgres|sqlite]

A server backed by a fresh PostgreSQL database (or SQLite) with the real MovieLens sample and
a trained model serves `--traffic-lists` recommendation lists first (each logs its
impressions, which the monitoring summary reads). Then a probe sends, one after another, a
recommendation request, a feedback event and `/healthz` on a new connection, 5 times a
second: alone for `--seconds` (the baseline), then while `--threads` threads each loop on
`GET /metrics` without credentials. Prints the probe's latencies in both phases, how many
scrapes were answered, and the server's CPU seconds per minute in each phase (from its own
`process_cpu_seconds_total`).
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

import httpx
import numpy as np

from benchmarks.harness import movielens_store, open_loop, scratch_postgres, serving
from benchmarks.rawhttp import Call

PROBE_EVERY_S = 0.2


def _cpu_seconds(base: str) -> float:
    for line in httpx.get(f"{base}/metrics", timeout=120).text.splitlines():
        if line.startswith("process_cpu_seconds_total "):
            return float(line.split()[1])
    raise RuntimeError("the server's /metrics has no process_cpu_seconds_total")


def _probe(base: str, seconds: float) -> dict[str, list[float]]:
    """Latencies (s) of the probe's three requests, sent in turn for `seconds`."""
    rng = np.random.default_rng(0)
    out: dict[str, list[float]] = {"recommendations": [], "feedback": [], "healthz (new conn)": []}
    deadline = time.monotonic() + seconds
    with httpx.Client(base_url=base, timeout=120) as client:
        n = 0
        while time.monotonic() < deadline:
            user = int(rng.integers(1, 672))
            t0 = time.perf_counter()
            client.get(f"/v1/users/{user}/recommendations", params={"k": 10}).raise_for_status()
            t1 = time.perf_counter()
            event = {"user_id": str(user), "item_id": "1", "kind": "click"}
            event["event_id"] = f"storm-{os.getpid()}-{n}"
            client.post("/v1/feedback", json=event).raise_for_status()
            t2 = time.perf_counter()
            httpx.get(f"{base}/healthz", timeout=120).raise_for_status()  # a new connection
            t3 = time.perf_counter()
            out["recommendations"].append(t1 - t0)
            out["feedback"].append(t2 - t1)
            out["healthz (new conn)"].append(t3 - t2)
            n += 1
            time.sleep(max(0.0, PROBE_EVERY_S - (t3 - t0)))
    return out


@contextmanager
def _storm(base: str, threads: int) -> Iterator[list[int]]:
    """`threads` threads looping on GET /metrics until the block ends; yields [answered]."""
    answered = [0]
    stop = threading.Event()
    lock = threading.Lock()

    def loop() -> None:
        with httpx.Client(base_url=base, timeout=120) as client:
            while not stop.is_set():
                try:
                    ok = client.get("/metrics").status_code == 200
                except httpx.HTTPError:
                    ok = False
                with lock:
                    answered[0] += ok

    workers = [threading.Thread(target=loop, daemon=True) for _ in range(threads)]
    for w in workers:
        w.start()
    try:
        yield answered
    finally:
        stop.set()
        for w in workers:
            w.join(timeout=150)


def _line(phase: str, latencies: dict[str, list[float]]) -> None:
    for name, values in latencies.items():
        ms = np.array(values) * 1000
        print(
            f"  {phase:<9} {name:<20} n={len(ms):4d}  p50 {np.percentile(ms, 50):7.1f} ms  "
            f"p99 {np.percentile(ms, 99):7.1f} ms  max {ms.max():7.1f} ms",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--traffic-lists", type=int, default=20_000)
    parser.add_argument("--database", choices=["postgres", "sqlite"], default="postgres")
    args = parser.parse_args()
    print(f"{platform.machine()}, {os.cpu_count()} cores; database {args.database}", flush=True)
    database = scratch_postgres() if args.database == "postgres" else nullcontext(None)
    with tempfile.TemporaryDirectory() as tmp, database as url:
        env = movielens_store(Path(tmp), url)
        with serving(env) as base:
            rng = np.random.default_rng(1)
            users = rng.integers(1, 672, args.traffic_lists)

            def recommend(i: int) -> Call:
                return Call.get(f"/v1/users/{users[i]}/recommendations", k=10)

            traffic = open_loop(base, 200, args.traffic_lists / 200, recommend)
            print(f"traffic first: {traffic.summary()}", flush=True)
            cpu0 = _cpu_seconds(base)
            alone = _probe(base, args.seconds)
            cpu1 = _cpu_seconds(base)
            with _storm(base, args.threads) as answered:
                stormed = _probe(base, args.seconds)
                scrapes = answered[0]
            cpu2 = _cpu_seconds(base)
    print(f"probe every {PROBE_EVERY_S} s; {args.threads} threads on /metrics in the storm:")
    _line("alone", alone)
    _line("storm", stormed)
    per_minute = 60 / args.seconds
    print(
        f"  /metrics answered in the storm: {scrapes} ({scrapes / args.seconds:.0f}/s); server "
        f"CPU {(cpu1 - cpu0) * per_minute:.1f} s a minute alone, "
        f"{(cpu2 - cpu1) * per_minute:.1f} s a minute in the storm"
    )


if __name__ == "__main__":
    main()
