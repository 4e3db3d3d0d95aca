"""Prometheus metrics of one app, in a registry of its own (tests build many apps).

With several worker processes (`recsys serve --workers N`) a scrape reaches one of them, so
the workers share their figures through prometheus_client's multiprocess mode: `recsys serve`
points PROMETHEUS_MULTIPROC_DIR at an empty folder before the workers start, every worker
writes its metrics there, and /metrics adds them up (`exposition`).
"""

from __future__ import annotations

import os
import time

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Requests take milliseconds; the buckets resolve the 1-10 ms range the targets live in.
_LATENCY_BUCKETS = (0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0)


class ServiceMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "recsys_http_requests", "HTTP requests", ["method", "route", "status"], registry=r
        )
        self.latency = Histogram(
            "recsys_http_request_duration_seconds",
            "Time to answer, by route",
            ["method", "route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        # Per worker (a pid label in multiprocess mode): shows that every worker reloaded.
        self.model_info = Gauge(
            "recsys_model_info",
            "The model versions being served (value 1), by role",
            ["version", "role"],
            registry=r,
            multiprocess_mode="liveall",
        )
        self._model_labels: list[tuple[str, str]] = []
        self.model_reloads = Counter(
            "recsys_model_reloads", "Attempts to load a production model", ["outcome"], registry=r
        )
        self.served = Counter(
            "recsys_recommendations_served", "Lists served", ["strategy"], registry=r
        )
        self._served_as: dict[str, Counter] = {}
        self.ranking_batch = Histogram(
            "recsys_ranking_batch_size",
            "First visits ranked together in one matrix product (service.batching)",
            buckets=(1, 2, 4, 8, 16, 32, 64),
            registry=r,
        )
        self._declare_loop(r)

    def _declare_loop(self, r: CollectorRegistry) -> None:
        """The feedback loop's metrics: what was logged, dropped, and what monitoring says."""
        self.monitoring_computations = Counter(
            "recsys_monitoring_computations",
            "Monitoring summaries computed (each reads the window's impressions and feedback)",
            registry=r,
        )
        self.feedback = Counter(
            "recsys_feedback_events", "Feedback events stored", ["kind"], registry=r
        )
        self.impressions_logged = Counter(
            "recsys_impressions_logged", "Impressions committed to the database", registry=r
        )
        self.impressions_dropped = Counter(
            "recsys_impressions_dropped",
            "Impressions dropped because the writer's queue was full",
            registry=r,
        )
        self.figure = Gauge(
            "recsys_monitoring_figure",
            "Feedback-loop figures over the last 24 h",
            ["name"],
            registry=r,
            multiprocess_mode="mostrecent",
        )
        self.alert = Gauge(
            "recsys_alert",
            "1 when a feedback-loop alert is breached",
            ["name"],
            registry=r,
            multiprocess_mode="mostrecent",
        )
        self.impression_queue = Gauge(
            "recsys_impression_queue_size",
            "Impressions waiting to be written",
            registry=r,
            multiprocess_mode="livesum",
        )

    def count_served(self, strategy: str) -> None:
        """One more list served by `strategy`. The labelled counter is looked up once: its
        `labels` call (checks, a lock) cost ~2 us on every list."""
        child = self._served_as.get(strategy)
        if child is None:
            child = self._served_as[strategy] = self.served.labels(strategy)
        child.inc()

    def set_alerts(self, alerts: list[dict[str, object]]) -> None:
        for a in alerts:
            name = str(a["name"])
            value = a["value"]
            if isinstance(value, int | float):
                self.figure.labels(name).set(float(value))
            self.alert.labels(name).set(1.0 if a["breached"] else 0.0)

    def set_model(self, version: str, canary: str | None = None) -> None:
        # Earlier versions drop to 0 rather than vanish: in multiprocess mode a value written
        # to the shared files cannot be removed, only overwritten.
        for labels in self._model_labels:
            self.model_info.labels(*labels).set(0)
        self._model_labels = [(version, "production")]
        if canary is not None:
            self._model_labels.append((canary, "canary"))
        for labels in self._model_labels:
            self.model_info.labels(*labels).set(1)

    def exposition(self) -> tuple[bytes, str]:
        """The text a scrape gets: this app's registry, or every worker's when several run."""
        if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
            shared = CollectorRegistry()
            MultiProcessCollector(shared)  # type: ignore[no-untyped-call]  # untyped upstream
            return generate_latest(shared), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class MetricsMiddleware:
    """Counts and times every request by its route template (`/v1/items/{item_id}/similar`),
    not by its path, so ids do not explode the number of series. Plain ASGI rather than
    `BaseHTTPMiddleware`, which costs a task and a stream per request."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope.get("method", "")
            self.metrics.requests.labels(method, template, str(status)).inc()
            self.metrics.latency.labels(method, template).observe(time.perf_counter() - start)
