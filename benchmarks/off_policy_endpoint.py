"""`GET /v1/monitoring/off-policy` at millions of logged impressions, through a real server.

    .venv/bin/python -m benchmarks.off_policy_endpoint [--impressions 1000000 10000000]

A fresh PostgreSQL database gets the MovieLens sample and a model trained on it with `recsys
train` (production), and a second version trained with another seed (the candidate). A
`recsys serve` worker exploring a tenth of the slots (`RECSYS_EXPLORE_SHARE=0.1`) is driven
by `recsys simulate-traffic --truth` (users answer as production predicts) for 2,400 lists;
those lists and their answers are then copied by SQL, each copy a little earlier in the
week, until the database holds each of `--impressions` lists. At each size, against a fresh
worker: the first request for the candidate's weekly report (as the Models page sends it),
the seconds until the report is in (asking again as `Retry-After` says), then a request
answered from it; and the worker's resident memory before and after (the report is computed
in the monitoring process, not the worker).
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text

from benchmarks.harness import RECSYS, movielens_store, recsys, scratch_postgres, serving
from recsys import registry

TOKEN = "bench-operator-token"
HEADERS = {"Authorization": f"Bearer {TOKEN}"}
_COPY_LISTS = """
INSERT INTO impressions (recommendation_id, user_external_id, model_version, strategy, items,
                         scores, served_at, predicted, explored, propensities, policy)
SELECT i.recommendation_id || '~' || g, i.user_external_id, i.model_version, i.strategy,
       i.items, i.scores, i.served_at - (g * interval '1 second') * :spread, i.predicted,
       i.explored, i.propensities, i.policy
FROM impressions i CROSS JOIN generate_series(CAST(:lo AS bigint), CAST(:hi AS bigint)) g
WHERE i.recommendation_id NOT LIKE '%~%'"""
_COPY_ANSWERS = """
INSERT INTO feedback (user_id, item_id, kind, value, recommendation_id, occurred_at,
                      received_at)
SELECT f.user_id, f.item_id, f.kind, f.value, f.recommendation_id || '~' || g,
       f.occurred_at - (g * interval '1 second') * :spread,
       f.received_at - (g * interval '1 second') * :spread
FROM feedback f CROSS JOIN generate_series(CAST(:lo AS bigint), CAST(:hi AS bigint)) g
WHERE f.recommendation_id IS NOT NULL AND f.recommendation_id NOT LIKE '%~%'"""


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _worker_pid(port_owner: str) -> int:
    """The pid of the `recsys serve` process listening on the base URL's port."""
    port = port_owner.rsplit(":", 1)[1]
    found = subprocess.run(["ss", "-ltnpH", f"sport = :{port}"], capture_output=True, text=True)
    return int(found.stdout.split("pid=")[1].split(",")[0])


def _copy(url: str, lo: int, hi: int, spread_s: float) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        args = {"lo": lo, "hi": hi, "spread": spread_s}
        conn.execute(text(_COPY_LISTS), args)
        conn.execute(text(_COPY_ANSWERS), args)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("ANALYZE impressions"))  # as autovacuum would after bulk writes
        conn.execute(text("ANALYZE feedback"))
    engine.dispose()


def _count(url: str) -> int:
    engine = create_engine(url)
    with engine.connect() as conn:
        n = int(conn.execute(text("SELECT count(*) FROM impressions")).scalar_one())
    engine.dispose()
    return n


def _measure(env: dict[str, str], candidate: str) -> None:
    with serving(env) as base:
        pid = _worker_pid(base)
        rss0 = _rss_mb(pid)
        params: dict[str, str | int] = {"version": candidate, "hours": 168}
        with httpx.Client(base_url=base, headers=HEADERS, timeout=600) as client:
            t0 = time.perf_counter()
            first = client.get("/v1/monitoring/off-policy", params=params)
            first_s = time.perf_counter() - t0
            answer = first
            while answer.status_code == 202:
                time.sleep(float(answer.headers.get("Retry-After", "5")))
                answer = client.get("/v1/monitoring/off-policy", params=params)
            ready_s = time.perf_counter() - t0
            answer.raise_for_status()
            t1 = time.perf_counter()
            again = client.get("/v1/monitoring/off-policy", params=params)
            again_s = time.perf_counter() - t1
            again.raise_for_status()
        rss1 = _rss_mb(pid)
    report = again.json()
    estimate = report.get("estimate") or {}
    print(
        f"  first request: HTTP {first.status_code} in {first_s:.2f} s; report in after "
        f"{ready_s:.0f} s; next request: HTTP {again.status_code} in {again_s:.3f} s "
        f"(age {report['age_s']} s); {report['lists']:,} lists judged, effective sample "
        f"{estimate.get('effective_sample_size')}, verdict: {report['verdict']['call']}; "
        f"worker RSS {rss0:.0f} MB before, {rss1:.0f} MB after",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--impressions", type=int, nargs="+", default=[1_000_000, 10_000_000])
    args = parser.parse_args()
    print(f"{platform.machine()}, {os.cpu_count()} cores; PostgreSQL", flush=True)
    with scratch_postgres() as url, tempfile.TemporaryDirectory() as tmp:
        env = movielens_store(Path(tmp), url)
        env.update(RECSYS_EXPLORE_SHARE="0.1", RECSYS_OPERATOR_TOKEN=TOKEN)
        recsys(env, "train", "--seed", "7", "--no-promote")
        with serving(env) as base:
            subprocess.run(
                [RECSYS, "simulate-traffic", "--url", base, "--truth", "production",
                 "--rounds", "4", "--users", "600", "--pause", "0"],
                env=env, check=True, stdout=subprocess.DEVNULL,
            )  # fmt: skip
        engine = create_engine(url)
        candidate = registry.list_versions(engine)[0]["version"]  # the newest: not promoted
        engine.dispose()
        logged = _count(url)
        print(f"{logged:,} lists served and answered through the API; candidate {candidate}")
        copies = 0
        for target in args.impressions:
            t0 = time.perf_counter()
            want = -(-target // logged) - 1  # copies of the served lists beside them
            for lo in range(copies + 1, want + 1, 100):
                _copy(url, lo, min(want, lo + 99), 7 * 86_400 / max(want, 1))
            copies = want
            print(f"{_count(url):,} impressions stored ({time.perf_counter() - t0:.0f} s)")
            _measure(env, candidate)


if __name__ == "__main__":
    main()
