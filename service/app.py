"""The FastAPI application: `create_app(settings)` wires the model, the database and routes.

Run it with `recsys serve`, or `uvicorn --factory service.app:create_app`.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline
from starlette.concurrency import run_in_threadpool
from threadpoolctl import threadpool_limits

from recsys.config import Settings, get_settings
from recsys.errors import ConfigError
from recsys.store.db import make_engine
from service import errors
from service.batching import RankingBatcher
from service.docs_policy import DocsPolicyMiddleware
from service.feedback_writer import FeedbackCommitter
from service.impressions import ImpressionWriter
from service.limits import BodyLimitMiddleware
from service.metrics import MetricsMiddleware, ServiceMetrics
from service.model_holder import ModelHolder
from service.routes import (
    dashboard,
    feedback,
    health,
    ingest,
    items,
    models,
    monitoring,
    predictions,
    recommendations,
)
from service.state import AppState

log = logging.getLogger("recsys.service")

_ROUTES = (
    recommendations,
    predictions,
    items,
    feedback,
    ingest,
    models,
    monitoring,
    health,
    dashboard,
)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    problems = settings.serving_problems()
    if problems:
        raise ConfigError("refusing to start: " + "; ".join(problems))
    if settings.dev_mode:
        log.warning(
            "DEVELOPMENT MODE: writes need no client key%s. Never run like this in production.",
            "" if settings.operator_token else " and operator actions are disabled",
        )
    metrics = ServiceMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # One BLAS thread: a request is one matrix-vector product, too small to gain from
        # threads, and idle BLAS threads spin on the cores that other requests (and, in a
        # benchmark, the load generator) need. A 62,000-item model served 71 lists/s with
        # the default threads on two cores. Requests run in parallel across --workers.
        blas = threadpool_limits(limits=1, user_api="blas")
        app.state.recsys = state = await _open(settings, metrics)
        # What start-up made (modules, the model, the catalog) lives as long as the process:
        # frozen, the collector stops walking it. The first full collection under load had
        # stalled every request for ~200 ms.
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            # uvicorn has finished the requests in flight: no feedback is waiting.
            await state.feedback.stop()
            state.monitoring_process.close()
            state.models.stop()
            state.impressions.stop()
            state.engine.dispose()
            blas.restore_original_limits()

    # /docs and /redoc from assets shipped by the fastapi-offline package: FastAPI's own pages
    # load Swagger UI and ReDoc from a CDN, and were blank on a machine without internet.
    app = FastAPIOffline(
        title="recsys",
        version="1",
        summary="Collaborative-filtering recommendations from a DotProductBias model.",
        lifespan=lifespan,
    )
    errors.install(app)
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=settings.max_body_bytes,
        larger={ingest.UPLOAD_PATH: settings.max_upload_bytes},
        read_timeout_s=settings.body_read_timeout_s,
    )
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.add_middleware(DocsPolicyMiddleware)
    for module in _ROUTES:
        app.include_router(module.router)
    return app


async def _open(settings: Settings, metrics: ServiceMetrics) -> AppState:
    """The database, the model and the background writers a replica serves with, started."""
    engine = make_engine(
        settings.database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout_s,
    )
    models = ModelHolder(engine, settings, metrics)
    writer = ImpressionWriter(
        engine,
        metrics,
        queue_size=settings.impression_queue_size,
        queue_bytes=int(settings.impression_queue_mb * (1 << 20)),
        batch_size=settings.impression_batch_size,
        flush_s=settings.impression_flush_s,
    )
    # Load the production model before accepting requests; with none yet (or the database
    # away) the service still starts, and /readyz says why it is not ready.
    committer = FeedbackCommitter(engine)
    await run_in_threadpool(models.refresh)
    models.start()
    writer.start()
    committer.start()
    # First visits in hand are ranked together (service.batching).
    batcher = RankingBatcher(metrics)
    return AppState(settings, engine, metrics, models, writer, committer, batcher)
