"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Response
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from service import monitoring_data
from service.deps import StateDep
from service.schemas_ops import HealthPublic, ReadinessPublic
from service.state import AppState

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


@router.get("/metrics", include_in_schema=False)
async def metrics(state: StateDep) -> Response:
    """Prometheus exposition. Unauthenticated and scraped often, so it does no database work
    of its own: the alert gauges come from the last monitoring summary (refreshed in the
    background, one computation at a time); and scrapes take turns (service.scrape_gate)."""
    if not await state.scrapes.admit():
        return Response(
            "scraped too often: more than RECSYS_METRICS_SCRAPES_PER_S scrapes a second\n",
            status_code=503,
            headers={"Retry-After": "15"},
            media_type="text/plain",
        )
    state.metrics.impression_queue.set(state.impressions.queue_size)
    last = monitoring_data.last_summary(state)
    if last is not None:
        state.metrics.set_alerts(last["alerts"])
    body, media_type = state.metrics.exposition()
    return Response(body, media_type=media_type)
