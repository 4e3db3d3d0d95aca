"""What exploration costs the service (issue 19): latency of recommendations with and without
exploring slots, and impression logging with propensities on PostgreSQL.

    .venv/bin/python -m benchmarks.explore_serving [--rate 200] [--seconds 30]

Loads the real MovieLens sample into a fresh PostgreSQL database, trains, then serves it
twice (one uvicorn worker each): with RECSYS_EXPLORE_SHARE=0 and with 0.1. Each run sends
recommendations (k=10) for random known users at a fixed rate, open loop, then reads
`recsys_impressions_logged_total` and `recsys_impressions_dropped_total` from /metrics and
counts the lists stored in the impressions table: every list served must be there, with a
propensity per slot.
"""

from __future__ import annotations

import argparse
import platform
import re
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from sqlalchemy import create_engine, func, select

from benchmarks.harness import movielens_store, open_loop, scratch_postgres, serving
from benchmarks.rawhttp import Call
from recsys import samples
from recsys.store.tables import impressions


def metric(base: str, name: str) -> float:
    text = httpx.get(f"{base}/metrics", timeout=10).text
    found = re.search(rf"^{name} ([0-9.e+]+)$", text, re.MULTILINE)
    return float(found[1]) if found else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--seconds", type=float, default=30)
    args = parser.parse_args()
    print(f"{platform.machine()}, {platform.python_version()}; 1 uvicorn worker, PostgreSQL")
    users = samples.movielens().ratings["user_id"].unique()
    order = np.random.default_rng(0).choice(users, size=int(args.rate * (args.seconds + 3)))

    def recommend(i: int) -> Call:
        return Call.get(f"/v1/users/{order[i]}/recommendations", k=10)

    with scratch_postgres() as url, tempfile.TemporaryDirectory() as tmp:
        env = movielens_store(Path(tmp), url)
        engine = create_engine(url)
        for share in ("0", "0.1"):
            with serving({**env, "RECSYS_EXPLORE_SHARE": share}) as base:
                open_loop(base, args.rate, 3, recommend)  # warm-up
                result = open_loop(base, args.rate, args.seconds, recommend)
                print(f"explore share {share}: {result.summary()}")
                time.sleep(2)  # the writer flushes every 0.5 s
                logged = metric(base, "recsys_impressions_logged_total")
                dropped = metric(base, "recsys_impressions_dropped_total")
            with engine.connect() as conn:
                stored = conn.scalar(select(func.count()).select_from(impressions))
                with_propensities = conn.scalar(
                    select(func.count())
                    .select_from(impressions)
                    .where(impressions.c.propensities.is_not(None))
                )
                conn.execute(impressions.delete())
                conn.commit()
            print(
                f"  impressions: {logged:.0f} logged, {dropped:.0f} dropped; {stored} lists "
                f"stored ({with_propensities} with propensities) for "
                f"{result.sent - result.errors + int(args.rate * 3)} lists served"
            )
        engine.dispose()


if __name__ == "__main__":
    main()
