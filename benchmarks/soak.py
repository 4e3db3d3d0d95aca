"""Load and soak: mixed traffic at a fixed rate for several minutes against one uvicorn
worker, with the server's memory sampled throughout.

    .venv/bin/python -m benchmarks.soak [--minutes 5] [--rate 150] [--pg [ADMIN_URL]] [--workers N]

SQLite by default (the laptop); `--pg` uses a scratch database on the local PostgreSQL
server (an admin URL may follow). Memory is summed over the server's processes (the
supervisor and its workers).

Mix: 70 % recommendations (known and new users), 20 % predictions, 10 % feedback (ratings
with event ids). Prints errors, latency percentiles per kind, and the server's resident
memory after warm-up against the end (target: flat within 10 %).
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
import uuid
from contextlib import ExitStack
from pathlib import Path

import numpy as np

from benchmarks.harness import PG_ADMIN, movielens_store, open_loop, scratch_postgres, serving
from benchmarks.rawhttp import Call
from recsys import samples


def rss_mb(pid: int) -> float:
    """Resident memory of a process and, recursively, its children."""
    total = 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            total += int(line.split()[1]) / 1024
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            total += rss_mb(int(child))
    return total


def server_pid(port: int) -> int:
    """The uvicorn process listening on `port` (found through /proc, no extra tools). Its
    workers inherit the socket; the supervisor, the first of them, is the one we want."""
    inode = None
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == port and fields[3] == "0A":  # LISTEN
            inode = fields[9]
    holders = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if any(fd.readlink().name == f"socket:[{inode}]" for fd in (proc / "fd").iterdir()):
                holders.append(int(proc.name))
        except OSError:
            continue
    for pid in holders:
        parent = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        if parent not in holders:
            return pid
    raise RuntimeError(f"no process listens on {port}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=5)
    parser.add_argument("--rate", type=float, default=150)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--pg", nargs="?", const=PG_ADMIN, default=None, help="admin URL")
    args = parser.parse_args()
    sample = samples.movielens()
    users = sample.ratings["user_id"].unique()
    items = sample.ratings["item_id"].value_counts().index[:3000].to_numpy()
    rng = np.random.default_rng(0)
    n = int(args.rate * args.minutes * 60)
    kinds = rng.choice(["rec", "new", "pred", "feedback"], size=n, p=[0.6, 0.1, 0.2, 0.1])
    who = rng.choice(users, size=n)
    what = rng.choice(items, size=n)

    with ExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory())
        url = stack.enter_context(scratch_postgres(args.pg)) if args.pg else None
        env = movielens_store(Path(tmp), url)
        with serving(env, workers=args.workers) as base:
            pid = server_pid(int(base.rsplit(":", 1)[1]))
            memory: list[tuple[float, float]] = []
            stop = threading.Event()

            def sample_memory() -> None:
                start = time.monotonic()
                while not stop.wait(5):
                    memory.append((time.monotonic() - start, rss_mb(pid)))

            sampler = threading.Thread(target=sample_memory)
            sampler.start()

            def request(i: int) -> Call:
                kind = kinds[i]
                if kind == "rec":
                    return Call.get(f"/v1/users/{who[i]}/recommendations", k=10)
                if kind == "new":
                    return Call.get(f"/v1/users/soak-{i}/recommendations", k=10)
                if kind == "pred":
                    return Call.get("/v1/predictions", user_id=who[i], item_id=what[i])
                event = {"user_id": str(who[i]), "item_id": str(what[i]), "value": 4.0,
                         "event_id": uuid.uuid4().hex}  # fmt: skip
                return Call.post("/v1/feedback", event)

            result = open_loop(base, args.rate, args.minutes * 60, request)
            stop.set()
            sampler.join()
    where = "PostgreSQL" if args.pg else "SQLite"
    print(f"{where}, {args.workers} worker(s), {args.minutes:g} min at {args.rate:g}/s, mixed: "
          f"{result.summary()}")  # fmt: skip
    _report(result.latencies_s, kinds, memory)


def _report(latencies_s: np.ndarray, kinds: np.ndarray, memory: list[tuple[float, float]]) -> None:
    """Each kind's latencies, and the server's memory over the run."""
    for kind in ("rec", "new", "pred", "feedback"):
        ms = latencies_s[kinds == kind] * 1000
        print(f"  {kind:9s} {len(ms):6d} requests: p50 {np.percentile(ms, 50):.2f} ms, "
              f"p99 {np.percentile(ms, 99):.2f} ms")  # fmt: skip
    warm = [m for t, m in memory if t >= 60] or [m for _, m in memory]
    print(
        f"server RSS: {memory[0][1]:.0f} MB at 5 s, {warm[0]:.0f} MB after 1 min warm-up, "
        f"{memory[-1][1]:.0f} MB at the end ({(memory[-1][1] / warm[0] - 1) * 100:+.1f} %), "
        f"max {max(m for _, m in memory):.0f} MB"
    )


if __name__ == "__main__":
    main()
