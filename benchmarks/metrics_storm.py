"""Unauthenticated scrapes of /metrics in a loop must not stall the service.

    .venv/bin/python -m benchmarks.metrics_storm [--threads 200] [--seconds 60]
        [--impressions 100000 1000000] [--database postgres|sqlite]

A server backed by a fresh PostgreSQL database (or SQLite) with the real MovieLens sample and
a trained model serves 2,000 recommendation lists through the API; their logged impressions
(one row a list) are then copied within the database, spread over the last 24 hours, until
the table holds each of `--impressions` in turn. At each size a fresh server starts (a fresh
monitoring process, whose live tally first reads the whole day once): the seconds of that
first summary and of one a minute later (which reads only what was stored since) are
printed. Then a probe sends, one after another, a recommendation request, a feedback event
and `/healthz` on a new connection, 5 times a second: alone for `--seconds` (the baseline),
then while `--threads` threads each loop on `GET /metrics` without credentials (`--threads`
connections of wrk, Debian package `wrk`). Prints the probe's latencies in both phases, how
many scrapes were answered, how many monitoring summaries the server computed, its CPU
seconds per minute in each phase (from /proc): what the scrapes cost, at each number of
impressions; and the resident memory of the server's processes at the end.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import numpy as np
from sqlalchemy import create_engine, text

from benchmarks.harness import movielens_store, open_loop, scratch_postgres, serving
from benchmarks.rawhttp import Call

PROBE_EVERY_S = 0.2
SERVED_LISTS = 2_000
_COLUMNS = (
    "user_external_id, model_version, strategy, items, scores, predicted, explored, "
    "propensities, policy"
)
_COPY = {
    "postgresql": f"""INSERT INTO impressions (recommendation_id, served_at, {_COLUMNS})
        SELECT md5(random()::text || clock_timestamp()::text),
               now() - random() * interval '24 hours', {_COLUMNS}
        FROM impressions ORDER BY id LIMIT :n""",
    "sqlite": f"""INSERT INTO impressions (recommendation_id, served_at, {_COLUMNS})
        SELECT lower(hex(randomblob(16))),
               datetime('now', '-' || abs(random() % 86400) || ' seconds'), {_COLUMNS}
        FROM impressions ORDER BY id LIMIT :n""",
}


def _grow_impressions(url: str, target: int) -> int:
    """Copy logged impressions until the table holds `target` rows; returns the count."""
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            count = int(conn.execute(text("SELECT count(*) FROM impressions")).scalar_one())
            while count < target:
                n = min(count, target - count)
                conn.execute(text(_COPY[engine.dialect.name]), {"n": n})
                count += n
        return count
    finally:
        engine.dispose()


def _server_pids(base: str) -> list[int]:
    """The `recsys serve` process of `base` and its children (workers), from /proc."""
    flag = f"--port\0{urlsplit(base).port}\0".encode()
    parents: dict[int, int] = {}
    roots = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if flag in (entry / "cmdline").read_bytes():
                roots.append(int(entry.name))
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    pids = set(roots)
    pids |= {pid for pid, parent in parents.items() if parent in pids}
    return sorted(pids)


def _cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of `pids` so far."""
    ticks = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def _computations(base: str) -> float:
    answer = httpx.get(f"{base}/metrics", timeout=120)
    while answer.status_code == 503:  # scrapes still queued from the storm: wait our turn
        time.sleep(1)
        answer = httpx.get(f"{base}/metrics", timeout=120)
    for line in answer.text.splitlines():
        if line.startswith("recsys_monitoring_computations_total"):
            return float(line.split()[-1])
    return 0.0


def _probe(base: str, seconds: float) -> dict[str, list[float]]:
    """Latencies (s) of the probe's three requests, sent in turn for `seconds`: standard
    library HTTP, whose own cost is small beside what it measures."""
    host, port = urlsplit(base).hostname or "127.0.0.1", urlsplit(base).port
    rng = np.random.default_rng(0)
    out: dict[str, list[float]] = {"recommendations": [], "feedback": [], "healthz (new conn)": []}
    kept = http.client.HTTPConnection(host, port, timeout=120)
    deadline = time.monotonic() + seconds
    n = 0
    while time.monotonic() < deadline:
        user = int(rng.integers(1, 672))
        t0 = time.perf_counter()
        _exchange(kept, "GET", f"/v1/users/{user}/recommendations?k=10")
        t1 = time.perf_counter()
        event = {"user_id": str(user), "item_id": "1", "kind": "click"}
        event["event_id"] = f"storm-{os.getpid()}-{time.time_ns()}-{n}"
        _exchange(kept, "POST", "/v1/feedback", json.dumps(event).encode())
        t2 = time.perf_counter()
        fresh = http.client.HTTPConnection(host, port, timeout=120)
        _exchange(fresh, "GET", "/healthz")
        fresh.close()
        t3 = time.perf_counter()
        out["recommendations"].append(t1 - t0)
        out["feedback"].append(t2 - t1)
        out["healthz (new conn)"].append(t3 - t2)
        n += 1
        time.sleep(max(0.0, PROBE_EVERY_S - (t3 - t0)))
    kept.close()
    return out


def _exchange(
    conn: http.client.HTTPConnection, method: str, path: str, body: bytes | None = None
) -> None:
    headers = {"Content-Type": "application/json"} if body is not None else {}
    conn.request(method, path, body=body, headers=headers)
    answer = conn.getresponse()
    answer.read()
    if answer.status >= 400:
        raise RuntimeError(f"{method} {path}: {answer.status}")


@contextmanager
def _storm(base: str, connections: int, seconds: float) -> Iterator[list[int]]:
    """wrk keeping `connections` connections busy on GET /metrics (each sends its next
    request as soon as it has the answer) while the block runs; yields [answered] once
    the block has ended. wrk is C in a process of its own: the storm costs the probe
    nothing, and its rate is the server's."""
    wrk = subprocess.Popen(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds + 1:.0f}s", "--timeout", "60s",
         f"{base}/metrics"],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    answered = [0]
    try:
        time.sleep(0.5)  # connections open
        yield answered
    finally:
        out, _ = wrk.communicate(timeout=seconds + 120)
        for line in out.splitlines():
            if "requests in" in line:
                answered[0] = int(line.split()[0])


OPERATOR = "storm-benchmark-operator-token"


def _summary_s(base: str) -> float:
    """Seconds one GET /v1/monitoring/summary takes."""
    t0 = time.perf_counter()
    auth = {"Authorization": f"Bearer {OPERATOR}"}
    answer = httpx.get(f"{base}/v1/monitoring/summary", headers=auth, timeout=1800)
    answer.raise_for_status()
    return time.perf_counter() - t0


def _rss_mb(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total / 1024


def _line(phase: str, latencies: dict[str, list[float]]) -> None:
    for name, values in latencies.items():
        ms = np.array(values) * 1000
        print(
            f"  {phase:<9} {name:<20} n={len(ms):4d}  p50 {np.percentile(ms, 50):7.1f} ms  "
            f"p99 {np.percentile(ms, 99):7.1f} ms  max {ms.max():7.1f} ms",
            flush=True,
        )


def _phase(base: str, threads: int, seconds: float) -> None:
    pids = _server_pids(base)
    cpu0, done0 = _cpu_seconds(pids), _computations(base)
    alone = _probe(base, seconds)
    cpu1, done1 = _cpu_seconds(pids), _computations(base)
    with _storm(base, threads, seconds) as answered:
        stormed = _probe(base, seconds)
    scrapes = answered[0]
    cpu2, done2 = _cpu_seconds(pids), _computations(base)
    _line("alone", alone)
    _line("storm", stormed)
    per_minute = 60 / seconds
    print(
        f"  /metrics answered in the storm: {scrapes} ({scrapes / seconds:.0f}/s); monitoring "
        f"summaries computed: {done1 - done0:.0f} alone, {done2 - done1:.0f} in the storm; "
        f"server CPU {(cpu1 - cpu0) * per_minute:.1f} s a minute alone, "
        f"{(cpu2 - cpu1) * per_minute:.1f} s a minute in the storm",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--impressions", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--database", choices=["postgres", "sqlite"], default="postgres")
    args = parser.parse_args()
    print(f"{platform.machine()}, {os.cpu_count()} cores; database {args.database}", flush=True)
    database = scratch_postgres() if args.database == "postgres" else nullcontext(None)
    with tempfile.TemporaryDirectory() as tmp, database as pg_url:
        env = {**movielens_store(Path(tmp), pg_url), "RECSYS_OPERATOR_TOKEN": OPERATOR}
        url = env["RECSYS_DATABASE_URL"]
        with serving(env) as base:
            rng = np.random.default_rng(1)
            users = rng.integers(1, 672, SERVED_LISTS)

            def recommend(i: int) -> Call:
                return Call.get(f"/v1/users/{users[i]}/recommendations", k=10)

            traffic = open_loop(base, 200, SERVED_LISTS / 200, recommend)
            print(f"lists served first: {traffic.summary()}", flush=True)
        for target in args.impressions:
            count = _grow_impressions(url, target)
            with serving(env) as base:
                first = _summary_s(base)
                time.sleep(60)  # the summary is cached for 5 s; its tally refreshes after
                again = _summary_s(base)
                print(
                    f"{count:,} impressions stored; a fresh server's first summary {first:.2f} s "
                    f"(its tally reads the day), one a minute later {again:.2f} s; "
                    f"probe every {PROBE_EVERY_S} s, {args.threads} threads on /metrics in "
                    "the storm:",
                    flush=True,
                )
                _phase(base, args.threads, args.seconds)
                print(f"  server RSS at the end: {_rss_mb(_server_pids(base)):.0f} MB", flush=True)


if __name__ == "__main__":
    main()
