"""Sustained acknowledged feedback writes into PostgreSQL through the API, one uvicorn worker.

    .venv/bin/python -m benchmarks.feedback_writes [--seconds 20] [--pg postgresql+psycopg://...]

Creates a scratch database, loads the MovieLens catalog, starts `recsys serve`, and posts
ratings with wrk (`apt install wrk`; a Python client saturates before the server does) for a
fixed time: one event per request, then 100 per request. Each event has a unique `event_id`;
afterwards the events in the database are counted against those acknowledged (201).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import tempfile
import uuid
from pathlib import Path

from sqlalchemy import create_engine, func, select

from benchmarks.harness import PG_ADMIN, recsys, scratch_postgres, serving
from recsys import samples
from recsys.store.tables import feedback

# wrk builds every request in Lua: unique event ids, random users, real catalog items.
LUA = """
local items = {%(items)s}
local batch = %(batch)d
local counter = 0
math.randomseed(os.time())
request = function()
  local events = {}
  for n = 1, batch do
    counter = counter + 1
    events[n] = string.format(
      '{"user_id":"bench-%%d","item_id":"%%s","value":%%.1f,"event_id":"%%s-%%d"}',
      math.random(10000), items[math.random(#items)], math.random(1, 10) / 2,
      "%(run)s", counter)
  end
  local body = batch == 1 and events[1] or ('{"events":[' .. table.concat(events, ",") .. ']}')
  return wrk.format("POST", "/v1/feedback", {["Content-Type"] = "application/json"}, body)
end
"""


def run_wrk(
    base: str, seconds: int, connections: int, batch: int, items: list[str]
) -> tuple[int, int, float]:
    """(completed requests, non-2xx responses, seconds) as wrk reports them."""
    script = Path(tempfile.mkstemp(suffix=".lua")[1])
    script.write_text(
        LUA % {"items": ",".join(f'"{i}"' for i in items), "batch": batch, "run": uuid.uuid4().hex}
    )
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "-s", str(script), base],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    script.unlink()
    done = re.search(r"(\d+) requests in ([\d.]+)(m?s)", out)
    if done is None:
        raise RuntimeError(f"unexpected wrk output:\n{out}")
    elapsed = float(done.group(2)) / (1000 if done.group(3) == "ms" else 1)
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return int(done.group(1)), int(bad.group(1)) if bad else 0, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--pg", default=PG_ADMIN, help="an admin URL; a scratch DB is made")
    args = parser.parse_args()

    with scratch_postgres(args.pg) as url, tempfile.TemporaryDirectory() as tmp:
        env = {
            **os.environ,
            "RECSYS_DATABASE_URL": url,
            "RECSYS_ARTIFACT_DIR": str(Path(tmp) / "artifacts"),
            "RECSYS_DEV_MODE": "true",
        }
        recsys(env, "db", "upgrade")
        recsys(env, "load-sample", "movielens")
        recsys(env, "train")
        items = [str(i) for i in samples.movielens().items["item_id"][:2000]]
        engine = create_engine(url)
        with serving(env) as base:
            for connections, batch in ((64, 1), (8, 100)):
                with engine.connect() as conn:
                    before = conn.scalar(select(func.count()).select_from(feedback)) or 0
                requests, failed, elapsed = run_wrk(base, args.seconds, connections, batch, items)
                acknowledged = (requests - failed) * batch
                with engine.connect() as conn:
                    stored = (conn.scalar(select(func.count()).select_from(feedback)) or 0) - before
                print(
                    f"{connections} connections x {batch} event(s)/request: "
                    f"{acknowledged:,} acknowledged in {elapsed:.1f} s = "
                    f"{acknowledged / elapsed:,.0f} events/s ({requests / elapsed:,.0f} "
                    f"requests/s); {failed} failed; {stored:,} stored, "
                    f"{max(0, acknowledged - stored)} acknowledged but missing"
                )
        engine.dispose()


if __name__ == "__main__":
    main()
