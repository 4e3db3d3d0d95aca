"""The monitoring summary at millions of impressions, as the monitoring process computes it.

    .venv/bin/python -m benchmarks.monitoring_tally [--impressions 1000000 10000000]

A fresh PostgreSQL database (migrated with `recsys db upgrade`) gets a catalog of 9,000 items
and 1,000 users, then synthetic impressions written by SQL (10 items a list, spread over the
last 24 hours in the order they are written, as a service writes them; a tenth from a second
version, a fifth explored) and feedback on a tenth of
them, until it holds each of `--impressions` in turn. At each size, in this process as the
monitoring process runs it (`recsys.monitoring_summary.compute`): the first summary (a new
live tally reads the day), then 1,000 new lists and 100 answers stored and the summary again
after its cache (what a minute of traffic costs), and the process's resident memory before,
after the first and after the second. Then a restarted process's first summary, which starts
from the tally the first one saved and reads the minute since, and the save's size. Then the
same window read row by row, as the summary
did before it had a tally, at the smaller sizes only (`--rows-up-to`).
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import create_engine, text

from benchmarks.harness import recsys, scratch_postgres
from recsys import monitoring, monitoring_summary
from recsys.config import Settings
from recsys.store.db import session_scope
from recsys.store.events import load_served

_ITEMS = ", ".join(f"(((g * {7 + 6 * j} + {j}) % 9000) + 1)::text" for j in range(10))
_SCORES = ", ".join(f"{1 - j / 10:.1f}" for j in range(10))
_PREDICTED = ", ".join(f"{4.5 - j / 10:.1f}" for j in range(10))
_LISTS = f"""
INSERT INTO impressions (recommendation_id, user_external_id, model_version, strategy, items,
                         scores, predicted, policy, served_at)
SELECT 'r' || g, 'u' || (g % 1000 + 1), CASE WHEN g % 10 = 0 THEN 'v2' ELSE 'v1' END, 'model',
       json_build_array({_ITEMS}), json_build_array({_SCORES}), json_build_array({_PREDICTED}),
       CASE WHEN g % 5 = 0 THEN '{{"explore_share": 0.1}}'::json END,
       :now - (CAST(:span AS double precision) * interval '1 second')
             * (1 - (g - :lo + random()) / (:hi - :lo + 1))
FROM generate_series(CAST(:lo AS bigint), CAST(:hi AS bigint)) g"""
_ANSWERS = """
INSERT INTO feedback (user_id, item_id, kind, value, recommendation_id, occurred_at,
                      received_at)
SELECT g % 1000 + 1, ((g * 7) % 9000) + 1,
       CASE WHEN g % 3 = 0 THEN 'click' ELSE 'rating' END,
       CASE WHEN g % 3 = 0 THEN NULL ELSE (g % 5) + 1 END,
       'r' || g, i.served_at + interval '5 seconds', i.served_at + interval '5 seconds'
FROM generate_series(CAST(:lo AS bigint), CAST(:hi AS bigint)) g
JOIN impressions i ON i.recommendation_id = 'r' || g
WHERE g % 10 = 0"""


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _store(url: str, lo: int, hi: int, now: datetime, span_s: float) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        args = {"lo": lo, "hi": hi, "now": now, "span": span_s}
        conn.execute(text(_LISTS), args)
        conn.execute(text(_ANSWERS), {"lo": lo, "hi": hi})
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        # What autovacuum does after bulk writes: without statistics, PostgreSQL scanned
        # all 10M rows for the last five minutes' ids (2.4 s) instead of the index (7 ms).
        conn.execute(text("ANALYZE impressions"))
        conn.execute(text("ANALYZE feedback"))
    engine.dispose()


def _seed(url: str) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO items (id, external_id, title) SELECT g, g::text, "
                          "'film ' || g FROM generate_series(1, 9000) g"))  # fmt: skip
        conn.execute(text("INSERT INTO users (id, external_id) SELECT g, 'u' || g "
                          "FROM generate_series(1, 1000) g"))  # fmt: skip
    engine.dispose()


def _restart(url: str, keep_save: bool) -> None:
    """What this process keeps between summaries forgotten, as by a new process."""
    monitoring_summary._LIVE.clear()
    monitoring_summary._SLOW.clear()
    if not keep_save:
        engine = create_engine(url)
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM snapshots"))
        engine.dispose()


def _saved_mb(url: str) -> float:
    engine = create_engine(url)
    with engine.connect() as conn:
        size = conn.scalar(text("SELECT max(length(body)) FROM snapshots"))
    engine.dispose()
    return (size or 0) / 1e6


def _summary_s(settings: Settings, facts: monitoring_summary.ServingFacts) -> float:
    t0 = time.perf_counter()
    monitoring_summary.compute(settings, facts, 24.0, "auto")
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--impressions", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--rows-up-to", type=int, default=1_000_000)
    args = parser.parse_args()
    print(f"{platform.machine()}, {os.cpu_count()} cores; PostgreSQL", flush=True)
    popularity = {str(i): float(9000 - i) for i in range(1, 9001)}
    with scratch_postgres() as url:
        recsys({**os.environ, "RECSYS_DATABASE_URL": url}, "db", "upgrade")
        _seed(url)
        settings = Settings(database_url=url)
        facts = monitoring_summary.ServingFacts(popularity, None, None)
        stored = 0
        for target in args.impressions:
            t0 = time.perf_counter()
            now = datetime.now(UTC)
            for lo in range(stored + 1, target + 1, 1_000_000):
                _store(url, lo, min(target, lo + 999_999), now, 86_400 - 600)
            stored = target
            print(f"{target:,} impressions stored in {time.perf_counter() - t0:.0f} s", flush=True)
            _restart(url, keep_save=False)  # a first process: no save to start from
            rss0 = _rss_mb()
            first = _summary_s(settings, facts)
            rss1 = _rss_mb()
            _store(url, stored + 1, stored + 1_000, datetime.now(UTC), 50)
            stored += 1_000
            again = _summary_s(settings, facts)
            rss2 = _rss_mb()
            print(
                f"  summary from the live tally: first {first:.2f} s (reads the day), after a "
                f"minute's 1,000 lists {again:.3f} s; RSS {rss0:.0f} MB before, {rss1:.0f} MB "
                f"after the first, {rss2:.0f} MB after the second",
                flush=True,
            )
            _restart(url, keep_save=True)  # a restarted process, a minute later
            _store(url, stored + 1, stored + 1_000, datetime.now(UTC), 50)
            stored += 1_000
            t0 = time.perf_counter()
            monitoring_summary._live(monitoring_summary._engine(url), 4.0).refresh()
            restored = time.perf_counter() - t0
            restarted = _summary_s(settings, facts)
            print(
                f"  a restarted process's first summary: {restored + restarted:.3f} s (the "
                f"tally from its save and the minute's 1,000 lists since {restored:.3f} s, the "
                f"rest {restarted:.3f} s); the save {_saved_mb(url):.1f} MB",
                flush=True,
            )
            if target <= args.rows_up_to:
                t0 = time.perf_counter()
                engine = monitoring_summary._engine(url)
                with session_scope(engine) as s:
                    since = datetime.now(UTC) - timedelta(hours=24)
                    served, fb = load_served(session=s, since=since)
                window = monitoring.window_of(served, fb, liked_threshold=4.0)
                monitoring.figures(window, monitoring.Catalog(9000, popularity))
                print(
                    f"  the same day read row by row: {time.perf_counter() - t0:.2f} s",
                    flush=True,
                )
                del served, fb, window


if __name__ == "__main__":
    main()
