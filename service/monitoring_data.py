"""Gathers what the dashboard and `/v1/monitoring` show: the monitoring summary and off-policy
reports (`recsys.monitoring_summary`, both computed in a process of the worker's own) and
learning curves.

A summary refreshes the monitoring process's live tally (what was stored since the last one)
and, for windows the tally does not keep, reads the window's rows; so it is cached for a few
seconds and computed by one request at a time (single flight): concurrent requests wait for
that one result instead of each opening connections and recomputing; 40 concurrent scrapes
had emptied the connection pool.

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
from typing import Any

from sqlalchemy import select

from recsys import registry
from recsys.monitoring_summary import ServingFacts
from recsys.store.db import session_scope
from recsys.store.tables import training_runs
from service.state import AppState

_CACHE_S = 5.0
log = logging.getLogger(__name__)


def _facts(state: AppState) -> ServingFacts:
    """What the summary needs from the model this replica serves."""
    model = state.models.current
    if model is None:
        return ServingFacts({}, None, state.models.canary_version)
    rec = model.recommender
    popularity = dict(zip(rec.item_vocab.ids, rec.item_counts.astype(float).tolist(), strict=True))
    cutoff = rec.card.max_timestamp
    return ServingFacts(popularity, cutoff, state.models.canary_version)


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
    result = state.monitoring_process.summary(state.settings, _facts(state), hours, freq)
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
    """`recsys.offpolicy.answers.off_policy` over the last `hours`, in the monitoring
    process: the newest report, or `status: "computing"` while the first is."""
    return state.monitoring_process.off_policy(state.settings, version, hours, explore)
