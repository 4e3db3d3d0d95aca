"""Shared pieces of the serving benchmarks: a trained store, a `recsys serve` process, and an
open-loop load generator.

Open loop: request n is due at start + n / rate whether or not earlier ones have answered,
and its latency is counted from when it was due. A closed-loop client waits for answers and
so hides every stall behind fewer requests ("coordinated omission", Gil Tene).
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np

RECSYS = str(Path(sys.executable).parent / "recsys")


def recsys(env: dict[str, str], *args: str) -> None:
    subprocess.run([RECSYS, *args], env=env, check=True, stdout=subprocess.DEVNULL)


def movielens_store(folder: Path, database_url: str | None = None) -> dict[str, str]:
    """Migrate, load the real MovieLens sample and train; returns the environment to serve."""
    env = {
        **os.environ,
        "RECSYS_DATABASE_URL": database_url or f"sqlite:///{folder / 'bench.db'}",
        "RECSYS_ARTIFACT_DIR": str(folder / "artifacts"),
    }
    recsys(env, "db", "upgrade")
    recsys(env, "load-sample", "movielens")
    recsys(env, "train")
    return env


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


Request = Callable[[httpx.AsyncClient, int], "asyncio.Future[httpx.Response] | object"]


async def _open_loop(
    base: str, rate: float, seconds: float, make: Callable[[httpx.AsyncClient, int], object]
) -> LoadResult:
    n = int(rate * seconds)
    latencies = np.zeros(n)
    errors = 0
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as client:
        start = time.perf_counter()

        async def one(i: int) -> None:
            nonlocal errors
            due = start + i / rate
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            try:
                response = await make(client, i)  # type: ignore[misc]
                if response.status_code >= 400:
                    errors += 1
            except httpx.HTTPError:
                errors += 1
            latencies[i] = time.perf_counter() - due

        await asyncio.gather(*(one(i) for i in range(n)))
        elapsed = time.perf_counter() - start
    return LoadResult(n, errors, latencies, elapsed)


def open_loop(
    base: str, rate: float, seconds: float, make: Callable[[httpx.AsyncClient, int], object]
) -> LoadResult:
    """Send `rate` requests per second for `seconds`; `make(client, i)` sends request i."""
    return asyncio.run(_open_loop(base, rate, seconds, make))


def wrk(url: str, seconds: int = 10, connections: int = 16) -> float:
    """Requests per second at saturation, measured by wrk (Debian package `wrk`)."""
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for line in out.splitlines():
        if line.startswith("Requests/sec:"):
            return float(line.split()[1])
    raise RuntimeError(f"unexpected wrk output:\n{out}")
