"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Response
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from service import monitoring_data
from service.deps import StateDep
from service.schemas import HealthPublic, ReadinessPublic
from service.state import AppState

log = logging.getLogger("recsys.service")
router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> HealthPublic:
    """The process is alive (no dependency is checked)."""
    return HealthPublic(status="ok")


def _database_ok(state: AppState) -> bool:
    try:
        with state.engine.connect() as conn:
            conn.execute(text("select 1"))
        return True
    except SQLAlchemyError:
        return False


@router.get("/readyz", responses={503: {"model": ReadinessPublic}})
async def readyz(state: StateDep, response: Response) -> ReadinessPublic:
    """Ready to serve: a model is loaded and the database answers. 503 otherwise.

    When the registry names another production version than the one served (its artifact
    was refused, or it is loading), the replica stays ready, serving the last good model, and
    `detail` says so: taking every replica out over one bad artifact would turn it into an
    outage."""
    database = await run_in_threadpool(_database_ok, state)
    version = state.models.version
    registered = state.models.registry_version
    problems, notes = [], []
    if version is None:
        problems.append(state.models.last_error or "no model is in production yet")
    elif registered is not None and registered != version:
        why = state.models.last_error or "it is loading"
        notes.append(f"the registry names {registered} as production; serving {version}: {why}")
    if not database:
        problems.append("the database is unreachable")
    body = ReadinessPublic(
        ready=not problems,
        model_version=version,
        registry_version=registered,
        database=database,
        detail="; ".join(problems + notes) or "ok",
    )
    if problems:
        response.status_code = 503
    return body


def _export_alerts(state: AppState) -> None:
    """Alert gauges from the (cached) monitoring summary; scraping must work even when they
    cannot be computed (no model yet, database away)."""
    try:
        state.metrics.set_alerts(monitoring_data.summary(state)["alerts"])
    except Exception:  # a failed figure must not fail the scrape
        log.warning("alerts not exported", exc_info=True)


@router.get("/metrics", include_in_schema=False)
async def metrics(state: StateDep) -> Response:
    state.metrics.impression_queue.set(state.impressions.queue_size)
    await run_in_threadpool(_export_alerts, state)
    body, media_type = state.metrics.exposition()
    return Response(body, media_type=media_type)
