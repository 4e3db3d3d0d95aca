"""The monitoring summary: what the dashboard, `/v1/monitoring/summary` and the alert gauges
of `/metrics` show, computed from the database and a few facts about the serving model.

The loop figures come from a live tally of the lists and feedback (`recsys.loop_live`), which
each computation brings up to date by reading what was stored since the last one. The
service runs it in a process of its own (`MonitoringProcess`), so that the tally's memory
and its first read (a whole day of impressions) never hold the serving worker's
interpreter: a computation in a thread of the worker, reading every impression of the day,
had held recommendations for up to 1.8 s at a million impressions
(benchmarks/metrics_storm.py). The off-policy report, which loads models, a week of lists and
pandas, runs there too.
"""

from __future__ import annotations

import copy
import multiprocessing
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from multiprocessing.pool import Pool
from typing import Any, TypeVar

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from recsys import health, monitoring, registry
from recsys.config import Settings
from recsys.data import timestamps
from recsys.loop_live import LiveTally
from recsys.loop_tally import Window
from recsys.store import queries
from recsys.store.db import make_engine, session_scope
from recsys.store.events import load_served, rating_counts
from recsys.store.tables import feedback, impressions

T = TypeVar("T")


@dataclass(frozen=True)
class ServingFacts:
    """What the summary needs from the model a replica serves."""

    popularity: dict[str, float]
    """Training ratings per item external id."""
    cutoff: int | None
    """The newest rating the model learned (Unix seconds): drift is measured after it."""
    canary: str | None


def compute(settings: Settings, facts: ServingFacts, hours: float, freq: str) -> dict[str, Any]:
    """The summary of the last `hours` (`freq`: the time series' bucket, or "auto") of the
    database of `settings`: from the process's live tally when it reaches back that far at
    that bucket width, else from the window's rows."""
    engine = _engine(settings.database_url)
    now = time.time()
    since = datetime.fromtimestamp(now - hours * 3600, UTC)
    production = registry.production(engine)
    live = _live(engine, settings.liked_threshold)
    live.refresh(now)
    window = live.window(since.timestamp())
    freq = monitoring.freq_for(window) if freq == "auto" and window is not None else freq
    if window is None or window.widest > monitoring.BUCKET_SECONDS.get(freq, 0):
        window = _from_rows(engine, since, settings.liked_threshold)
        freq = monitoring.freq_for(window) if freq == "auto" else freq
    with session_scope(engine) as s:
        # Whole-table counts cost a scan at millions of rows: taken every `SLOW_S`, with the
        # rows the tally has read since added (a count minutes old beside a fresh window
        # had read as fewer impressions stored than served in the window).
        counts, lists_then, replies_then = _slowly(
            ("counts", settings.database_url),
            lambda: (_counts(s), live.lists_read, live.replies_read),
        )
        counts["impressions_total"] += live.lists_read - lists_then
        counts["feedback_total"] += live.replies_read - replies_then
        counts["impressions_window"] = sum(c.lists for _, c in window.lists)
        counts["feedback_window"] = sum(c.n for _, c in window.replies)
        newest_feedback_at = s.scalar(select(func.max(feedback.c.received_at)))
        drift = _drift(s, settings.database_url, facts.cutoff)
    catalog = monitoring.Catalog(counts.get("items", 0), facts.popularity)
    figures = monitoring.figures(window, catalog)
    version = production["version"] if production else ""
    last_job = next(iter(registry.list_jobs(engine, 1)), None)
    return {
        "window_hours": hours,
        "min_sample": settings.alert_min_sample,
        "bucket": freq,
        "counts": counts,
        "production": _model(production),
        "canary": facts.canary,
        "last_job": _job(last_job),
        "figures": figures,
        "by_version": monitoring.versions(window),
        "by_explore_share": monitoring.shares(window, catalog),
        "timeseries": monitoring.periods(window, catalog, freq=freq),
        "drift": drift,
        "alerts": alerts(
            settings, figures, drift, production, newest_feedback_at,
            trend=monitoring.trend(window, version=version),
        ),
    }  # fmt: skip


def _from_rows(engine: Engine, since: datetime, liked_threshold: float) -> Window:
    """The window read row by row: for windows longer than the live tally keeps, or charted
    at buckets finer than it keeps for their age."""
    with session_scope(engine) as s:
        served, fb = load_served(session=s, since=since)
    return monitoring.window_of(served, fb, liked_threshold=liked_threshold)


def _counts(s: Session) -> dict[str, int]:
    counts = queries.counts(session=s)
    counts["impressions_total"] = int(s.scalar(select(func.count()).select_from(impressions)) or 0)
    counts["feedback_total"] = int(s.scalar(select(func.count()).select_from(feedback)) or 0)
    return counts


def _drift(s: Session, url: str, cutoff: int | None) -> dict[str, Any]:
    """The rating and popularity distributions of the ratings since `cutoff` (the newest
    rating the serving model learned) against those up to it."""
    if cutoff is None:
        return {"since": None, "rating_psi": None, "popularity_psi": None}
    # The snapshot's side changes only with the model: a group-by over every rating (seconds
    # at 25M), read again only when it is `SLOW_S` old.
    v_before, i_before = _slowly(
        ("before", url, cutoff),
        lambda: rating_counts(session=s, cutoff=int(cutoff), after=False),
    )
    # Ratings that answer our lists follow what we showed: their items and their (higher)
    # stars shift by design of the loop, and judged as drift they turned the alert red
    # minutes after a retrain. Drift is judged on the others.
    v_after, i_after = rating_counts(session=s, cutoff=int(cutoff), after=True, organic=True)
    v_all, _ = rating_counts(session=s, cutoff=int(cutoff), after=True)
    return {
        # None for a far-future timestamp stored before ingestion bounded them (year 5138
        # and beyond does not fit a datetime): the figures stand without the date.
        "since": timestamps.iso_seconds(int(cutoff)),
        "basis": "ratings since training that answer none of our lists",
        "new_ratings": sum(v_after.values()),
        "new_ratings_all": sum(v_all.values()),
        "rating_psi": monitoring.rating_drift(v_before, v_after),
        "popularity_psi": monitoring.popularity_drift(i_before, i_after),
        "rating_histogram": {
            "before": {str(k): v for k, v in sorted(v_before.items())},
            "after": {str(k): v for k, v in sorted(v_after.items())},
        },
    }


SLOW_S = 600.0
"""How long the figures that count whole tables (rows of every table, the ratings before the
model's cutoff) are reused: they grow with what is stored, not with the window, and move
little in ten minutes."""

_SLOW: dict[tuple[Any, ...], tuple[float, Any]] = {}


def _slowly(key: tuple[Any, ...], compute: Callable[[], T], reuse_s: float = SLOW_S) -> T:
    """`compute()`, or its result of less than `reuse_s` ago for the same `key`."""
    hit = _SLOW.get(key)
    now = time.monotonic()
    if hit is None or now - hit[0] > reuse_s:
        # Keys change with the window and the model: forget what no caller can reuse.
        for stale in [k for k, (at, _) in _SLOW.items() if now - at > max(SLOW_S, reuse_s)]:
            del _SLOW[stale]
        hit = _SLOW[key] = (now, compute())
    return copy.deepcopy(hit[1])


_LIVE: dict[tuple[str, float], LiveTally] = {}
"""The summary process's live tallies, one per database and liked threshold."""


def _live(engine: Engine, liked_threshold: float) -> LiveTally:
    key = (str(engine.url), liked_threshold)
    if key not in _LIVE:
        _LIVE[key] = LiveTally(engine, liked_threshold)
    return _LIVE[key]


def alerts(
    settings: Settings,
    figures: dict[str, Any],
    drift: dict[str, Any],
    production: Any,
    newest_feedback_at: datetime | None,
    trend: dict[str, float | None] | None = None,
) -> list[dict[str, Any]]:
    """Every health check (`recsys.health`), with its state, sample and reasons."""
    offline = (production["metrics"] or {}).get("report") if production is not None else None
    promoted = production["promoted_at"] if production is not None else None
    inputs = health.Inputs(
        figures=figures,
        drift=drift,
        offline=offline,
        promoted_at=_aware(promoted),
        newest_feedback_at=_aware(newest_feedback_at),
        now=datetime.now(UTC),
        trend=trend or {},
    )
    return [c.as_dict() for c in health.checks(inputs, settings)]


def _aware(when: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes, stored as UTC.
    return when if when is None or when.tzinfo else when.replace(tzinfo=UTC)


def _job(row: Any) -> dict[str, Any] | None:
    if row is None:
        return None
    keep = ("id", "status", "decision", "reasons", "started_at", "finished_at",
            "candidate_version", "error")  # fmt: skip
    return {k: timestamps.iso(row[k]) if isinstance(row[k], datetime) else row[k] for k in keep}


def _model(row: Any) -> dict[str, Any] | None:
    if row is None:
        return None
    metrics = row["metrics"] or {}
    return {
        "version": row["version"],
        "promoted_at": timestamps.iso(row["promoted_at"]),
        "metrics": (metrics.get("report") or {}).get("model"),
    }


_ENGINES: dict[str, Engine] = {}
"""The summary process's engines, one per database URL, kept between computations."""


def _engine(url: str) -> Engine:
    if url not in _ENGINES:
        _ENGINES[url] = make_engine(url, pool_size=1, max_overflow=1)
    return _ENGINES[url]


def off_policy(
    settings: Settings, version: str, hours: float, explore: float | None
) -> dict[str, Any]:
    """`recsys.offpolicy.answers.off_policy` with this process's engines."""
    from recsys.offpolicy.answers import off_policy as answer

    return answer(settings, version, hours, explore, _engine)


class MonitoringProcess:
    """The processes that compute a serving worker's monitoring figures: one for the summary
    (`compute`, which keeps the live tally between calls) and one for off-policy reports,
    each started on its first request (spawned, not forked: the worker has threads) and kept
    for the next; callers wait for the result, and requests of one kind take turns. A
    report of a week's lists takes a minute; in one shared process it held the summary, and
    with it the alerts of /metrics, for as long. `close` stops them, mid-computation if need
    be: a worker that is shutting down does not wait for figures nobody will read."""

    def __init__(self) -> None:
        self._pools: dict[str, Pool] = {}

    def _run(self, kind: str, fn: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
        pool = self._pools.get(kind)
        if pool is None:
            pool = self._pools[kind] = multiprocessing.get_context("spawn").Pool(processes=1)
        result: dict[str, Any] = pool.apply(fn, args)
        return result

    def summary(
        self, settings: Settings, facts: ServingFacts, hours: float, freq: str
    ) -> dict[str, Any]:
        return self._run("summary", compute, settings, facts, hours, freq)

    def off_policy(
        self, settings: Settings, version: str, hours: float, explore: float | None
    ) -> dict[str, Any]:
        return self._run("off-policy", off_policy, settings, version, hours, explore)

    def close(self) -> None:
        for pool in self._pools.values():
            pool.terminate()
            pool.join()
        self._pools = {}
