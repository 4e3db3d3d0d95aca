"""Gathers what the dashboard and `/v1/monitoring` show: rows from the database, figures from
`recsys.monitoring`, health checks from `recsys.health`.

Computing it reads every impression and feedback row of the window (seconds at millions of
ratings), so it is cached for a few seconds and computed by one request at a time (single
flight): concurrent requests wait for that one result instead of each opening connections
and recomputing; 40 concurrent scrapes had emptied the connection pool.

/metrics is unauthenticated and may be scraped by anyone, as often as they like, so its
scrapes must not decide how often the summary is computed: it exports the last result and
starts at most one refresh in the background, at most every `metrics_refresh_s` (60 s by
default). A scrape that finds one running, or one started within that time, starts nothing:
200 threads scraping in a loop cost one computation a minute, not one every 5 s and a thread
per scrape.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select

from recsys import health, monitoring, registry
from recsys.data import timestamps
from recsys.store import queries
from recsys.store.db import session_scope
from recsys.store.events import load_served, rating_counts
from recsys.store.tables import feedback, impressions, training_runs
from service.state import AppState

_CACHE_S = 5.0
log = logging.getLogger(__name__)


def _popularity(state: AppState) -> dict[str, float]:
    """Training ratings per item of the serving model."""
    model = state.models.current
    if model is None:
        return {}
    rec = model.recommender
    return dict(zip(rec.item_vocab.ids, rec.item_counts.astype(float).tolist(), strict=True))


def alerts(
    state: AppState,
    figures: dict[str, Any],
    drift: dict[str, Any],
    production: Any,
    newest_feedback_at: datetime | None,
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
    )
    return [c.as_dict() for c in health.checks(inputs, state.settings)]


def _aware(when: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes, stored as UTC.
    return when if when is None or when.tzinfo else when.replace(tzinfo=UTC)


def _fresh(state: AppState, key: tuple[float, str]) -> dict[str, Any] | None:
    hit = state.monitoring_cache.get(key)
    if hit is not None and time.monotonic() - hit[0] < _CACHE_S:
        return hit[1]
    return None


def summary(state: AppState, hours: float = 24.0, freq: str = "auto") -> dict[str, Any]:
    """The summary of the last `hours`, at most `_CACHE_S` old."""
    key = (hours, freq)
    result = _fresh(state, key)
    if result is not None:
        return result
    with state.monitoring_lock:
        result = _fresh(state, key)  # computed by the request we waited for
        if result is None:
            result = _compute_and_count(state, hours, freq)
        return result


def _compute_and_count(state: AppState, hours: float, freq: str) -> dict[str, Any]:
    result = _compute(state, hours, freq)
    state.metrics.monitoring_computations.inc()
    state.monitoring_cache[(hours, freq)] = (time.monotonic(), result)
    return result


def last_summary(state: AppState) -> dict[str, Any] | None:
    """The default summary as last computed (None before the first), without waiting. One
    older than `metrics_refresh_s` is refreshed in the background, by one thread at most and
    at most once in that time."""
    key = (24.0, "auto")
    hit = state.monitoring_cache.get(key)
    now = time.monotonic()
    interval = state.settings.metrics_refresh_s
    stale = hit is None or now - hit[0] >= interval
    # The flag is taken here, before the thread starts, so that no second scrape can start
    # another thread in between (checking `locked()` and starting a thread let every scrape
    # of a burst through).
    due = stale and now - state.metrics_refreshed_at >= interval
    if due and state.metrics_refresh.acquire(blocking=False):
        state.metrics_refreshed_at = now
        threading.Thread(target=_refresh, args=(state,), daemon=True).start()
    return hit[1] if hit is not None else None


def _refresh(state: AppState) -> None:
    try:
        summary(state)
    except Exception:  # the next due scrape tries again; the exported alerts stay as they were
        log.warning("monitoring summary not computed", exc_info=True)
    finally:
        state.metrics_refresh.release()


def _compute(state: AppState, hours: float, freq: str) -> dict[str, Any]:
    engine = state.engine
    since = datetime.now(UTC) - timedelta(hours=hours)
    production = registry.production(engine)
    with session_scope(engine) as s:
        counts = queries.counts(session=s)
        served, fb = load_served(session=s, since=since)
        counts["impressions_window"] = len(served)
        counts["feedback_window"] = len(fb)
        counts["impressions_total"] = int(
            s.scalar(select(func.count()).select_from(impressions)) or 0
        )
        counts["feedback_total"] = int(s.scalar(select(func.count()).select_from(feedback)) or 0)
        newest_feedback_at = s.scalar(select(func.max(feedback.c.received_at)))
        drift: dict[str, Any] = {"since": None, "rating_psi": None, "popularity_psi": None}
        model = state.models.current
        cutoff = (model.recommender.info.get("data") or {}).get("max_timestamp") if model else None
        if cutoff is not None:
            # None for a far-future timestamp stored before ingestion bounded them (year
            # 5138 and beyond does not fit a datetime): the figures stand without the date.
            cutoff_at = timestamps.iso_seconds(int(cutoff))
            v_before, i_before = rating_counts(session=s, cutoff=int(cutoff), after=False)
            v_after, i_after = rating_counts(session=s, cutoff=int(cutoff), after=True)
            drift = {
                "since": cutoff_at,
                "new_ratings": sum(v_after.values()),
                "rating_psi": monitoring.rating_drift(v_before, v_after),
                "popularity_psi": monitoring.popularity_drift(i_before, i_after),
                "rating_histogram": {
                    "before": {str(k): v for k, v in sorted(v_before.items())},
                    "after": {str(k): v for k, v in sorted(v_after.items())},
                },
            }
    popularity = _popularity(state)
    n_catalog = counts.get("items", 0)
    figures = monitoring.loop_figures(
        served, fb, n_catalog=n_catalog, popularity=popularity,
        liked_threshold=state.settings.liked_threshold,
    )  # fmt: skip
    if freq == "auto":
        freq = monitoring.auto_freq([x.served_at for x in served])
    series = monitoring.by_period(
        served, fb, n_catalog=n_catalog, popularity=popularity, freq=freq,
        liked_threshold=state.settings.liked_threshold,
    )  # fmt: skip
    exposure_by_share = monitoring.by_explore_share(
        served, fb, n_catalog=n_catalog, popularity=popularity,
        liked_threshold=state.settings.liked_threshold,
    )  # fmt: skip
    last_job = next(iter(registry.list_jobs(engine, 1)), None)
    return {
        "window_hours": hours,
        "min_sample": state.settings.alert_min_sample,
        "bucket": freq,
        "counts": counts,
        "production": _model(production),
        "canary": state.models.canary_version,
        "last_job": _job(last_job),
        "figures": figures,
        "by_version": monitoring.online_by_version(served, fb, state.settings.liked_threshold),
        "by_explore_share": exposure_by_share,
        "timeseries": series,
        "drift": drift,
        "alerts": alerts(state, figures, drift, production, newest_feedback_at),
    }


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


def curves(state: AppState, versions: list[str]) -> dict[str, Any]:
    """Learning curves (train and validation loss per epoch) and test metrics of versions."""
    out: dict[str, Any] = {}
    with session_scope(state.engine) as s:
        for name in versions:
            row = registry.resolve(state.engine, name)
            run = s.execute(
                select(
                    training_runs.c.history, training_runs.c.config, training_runs.c.data_counts
                ).where(training_runs.c.id == row["training_run_id"])
            ).first()
            report = (row["metrics"] or {}).get("report") or {}
            out[row["version"]] = {
                "status": row["status"],
                "history": (run.history if run else None) or [],
                # For the side-by-side comparison: what differed between the runs.
                "config": (run.config if run else None) or {},
                "data": (run.data_counts if run else None) or {},
                "spread": report.get("_spread") or {},
                "ranking_history": ((row["metrics"] or {}).get("ranking") or {}).get("history")
                or [],
                "metrics": report.get("model"),
                "baselines": {
                    k: v
                    for k, v in report.items()
                    if k in ("global_mean", "biases", "most_popular", "ease")
                },
            }
    return out


def off_policy(
    state: AppState, version: str, hours: float, explore: float | None
) -> dict[str, Any]:
    """`recsys.offpolicy.run.off_policy_report` over the last `hours`, as JSON."""
    from recsys.exploration import ExplorePolicy
    from recsys.offpolicy.run import off_policy_report

    settings = state.settings
    target = None if explore is None else ExplorePolicy(explore, settings.explore_temperature)
    since = datetime.now(UTC) - timedelta(hours=hours)
    report = off_policy_report(state.engine, settings, version, since, target)
    return {"since": timestamps.iso(since), **report.as_json()}
