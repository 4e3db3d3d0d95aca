"""Shared pieces of the serving benchmarks: a trained store, a `recsys serve` process, and an
open-loop load generator.

Open loop: request n is due at start + n / rate whether or not earlier ones have answered,
and its latency is counted from when it was due. A closed-loop client waits for answers and
so hides every stall behind fewer requests ("coordinated omission", Gil Tene).
"""

from __future__ import annotations

import asyncio
import gc
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
from sqlalchemy import create_engine, text

from benchmarks.rawhttp import Call, Connection, ProtocolError

RECSYS = str(Path(sys.executable).parent / "recsys")


def recsys(env: dict[str, str], *args: str) -> None:
    subprocess.run([RECSYS, *args], env=env, check=True, stdout=subprocess.DEVNULL)


def movielens_store(folder: Path, database_url: str | None = None) -> dict[str, str]:
    """Migrate, load the real MovieLens sample and train; returns the environment to serve."""
    env = {
        **os.environ,
        "RECSYS_DATABASE_URL": database_url or f"sqlite:///{folder / 'bench.db'}",
        "RECSYS_ARTIFACT_DIR": str(folder / "artifacts"),
        "RECSYS_DEV_MODE": "true",  # open writes: the benchmarks measure the service, not keys
    }
    recsys(env, "db", "upgrade")
    recsys(env, "load-sample", "movielens")
    recsys(env, "train")
    return env


PG_ADMIN = os.environ.get("RECSYS_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@contextmanager
def scratch_postgres(admin_url: str = PG_ADMIN) -> Iterator[str]:
    """A new PostgreSQL database on the server of `admin_url`, dropped afterwards."""
    name = f"recsys_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serving(env: dict[str, str], workers: int = 1) -> Iterator[str]:
    """A `recsys serve` process; yields its base URL once /readyz answers 200."""
    port = free_port()
    proc = subprocess.Popen(
        [RECSYS, "serve", "--port", str(port), "--workers", str(workers), "--log-level", "error"],
        env=env,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise RuntimeError("recsys serve exited during start-up")
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("recsys serve was not ready within 120 s")
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@dataclass
class LoadResult:
    sent: int
    errors: int
    latencies_s: np.ndarray
    seconds: float

    def summary(self) -> str:
        ms = self.latencies_s * 1000
        return (
            f"{self.sent} requests in {self.seconds:.1f} s ({self.sent / self.seconds:.0f}/s), "
            f"{self.errors} errors; latency p50 {np.percentile(ms, 50):.2f} ms, "
            f"p90 {np.percentile(ms, 90):.2f} ms, p99 {np.percentile(ms, 99):.2f} ms, "
            f"max {ms.max():.2f} ms"
        )


async def _open_loop(
    base: str, rate: float, seconds: float, make: Callable[[int], Call]
) -> LoadResult:
    n = int(rate * seconds)
    latencies = np.zeros(n)
    errors = 0
    # Sixteen connections, each sending one request at a time, taken from a queue of idle
    # ones (a shared httpx pool, used before, checked every pooled connection on each request
    # and queued waiters at a quadratic cost: after one stall of the server the client itself
    # fell to 60 requests/s).
    idle: asyncio.Queue[Connection] = asyncio.Queue()
    connections = [Connection(base) for _ in range(16)]
    for c in connections:
        idle.put_nowait(c)

    async def one(i: int, due: float) -> None:
        nonlocal errors
        connection = await idle.get()
        try:
            status, _ = await connection.send(make(i))
            errors += status >= 400
        except (OSError, asyncio.IncompleteReadError, ProtocolError):
            errors += 1
        finally:
            idle.put_nowait(connection)
        latencies[i] = time.perf_counter() - due

    # Tasks are started when due, so only requests in flight exist; and the collector is
    # off, so the client's own pauses do not count against the server.
    gc.disable()
    in_flight: set[asyncio.Task[None]] = set()
    start = time.perf_counter()
    try:
        for i in range(n):
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(one(i, due))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
        await asyncio.gather(*in_flight)
    finally:
        gc.enable()
        for c in connections:
            await c.close()
    return LoadResult(n, errors, latencies, time.perf_counter() - start)


def server_percentile(base: str, route: str, q: float = 0.99) -> float:
    """The server's own view: the `q` quantile (upper bucket bound, seconds) of a route's
    latency histogram in /metrics, free of client and network noise."""
    from prometheus_client.parser import text_string_to_metric_families

    buckets: list[tuple[float, float]] = []
    for family in text_string_to_metric_families(httpx.get(f"{base}/metrics").text):
        for sample in family.samples:
            if sample.name.endswith("_bucket") and sample.labels.get("route") == route:
                buckets.append((float(sample.labels["le"]), sample.value))
    buckets.sort()
    total = buckets[-1][1]
    return next(le for le, count in buckets if count >= q * total)


def open_loop(base: str, rate: float, seconds: float, make: Callable[[int], Call]) -> LoadResult:
    """Send `rate` requests per second for `seconds`; `make(i)` says what request i is."""
    return asyncio.run(_open_loop(base, rate, seconds, make))


def wrk(
    url: str, seconds: int = 10, connections: int = 16, paths: list[str] | None = None
) -> float:
    """Requests per second at saturation, measured by wrk (Debian package `wrk`); with
    `paths`, the requests ask for them in turn (a Lua script) instead of `url` alone."""
    with tempfile.TemporaryDirectory() as tmp:
        script: list[str] = []
        if paths:
            lua = Path(tmp) / "paths.lua"
            quoted = ", ".join(f'"{p}"' for p in paths)
            lua.write_text(
                f"local paths = {{{quoted}}}\nlocal n = 0\n"
                "request = function()\n  n = n % #paths + 1\n"
                '  return wrk.format("GET", paths[n])\nend\n'
            )
            script = ["-s", str(lua)]
        out = subprocess.run(
            ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", *script, url],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    for line in out.splitlines():
        if line.startswith("Requests/sec:"):
            return float(line.split()[1])
    raise RuntimeError(f"unexpected wrk output:\n{out}")
