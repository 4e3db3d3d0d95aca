"""What one running app holds: settings, the engine, the served model, the impression writer."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine
from starlette.requests import HTTPConnection

from recsys.config import Settings
from recsys.exploration import ExplorePolicy
from recsys.monitoring_summary import MonitoringProcess
from service.batching import RankingBatcher
from service.feedback_writer import FeedbackCommitter
from service.impressions import ImpressionWriter
from service.metrics import ServiceMetrics
from service.model_holder import ModelHolder
from service.recent_feedback import Event
from service.scrape_gate import ScrapeGate


@dataclass
class AppState:
    settings: Settings
    engine: Engine
    metrics: ServiceMetrics
    models: ModelHolder
    impressions: ImpressionWriter
    feedback: FeedbackCommitter
    rankings: RankingBatcher
    # (hours, bucket) -> (monotonic time, summary): see service.monitoring_data.
    monitoring_cache: dict[tuple[float, str], tuple[float, dict[str, Any]]] = field(
        default_factory=dict
    )
    # Held while a summary is computed: one computation at a time per process.
    monitoring_lock: threading.Lock = field(default_factory=threading.Lock)
    # Held by the one background refresh that /metrics may have running, from before its
    # thread starts until it ends (service.monitoring_data.last_summary).
    metrics_refresh: threading.Lock = field(default_factory=threading.Lock)
    metrics_refreshed_at: float = float("-inf")
    """Monotonic time at which /metrics last started a refresh."""
    scrapes: ScrapeGate = field(init=False)
    monitoring_process: MonitoringProcess = field(default_factory=MonitoringProcess)
    """Where monitoring summaries and off-policy reports are computed: not in this worker."""

    @property
    def explore(self) -> ExplorePolicy:
        return self._explore

    @property
    def explore_json(self) -> dict[str, float]:
        """`explore.as_json()`, which every impression row carries; not to be changed."""
        return self._explore_json

    def __post_init__(self) -> None:
        # Built once: the hot path reads them for every list.
        self._explore = self.settings.explore_policy
        self._explore_json = self._explore.as_json()
        self.scrapes = ScrapeGate(
            self.settings.metrics_scrapes_per_s, self.settings.metrics_scrape_wait_s
        )

    def note_feedback(self, events: Iterable[tuple[str, Event]]) -> None:
        """Remember (user, event) pairs just committed, for this replica's next lists at
        once; other replicas read them at their next poll (`service.recent_feedback`)."""
        self.models.recent.note(events)


def app_state(connection: HTTPConnection) -> AppState:
    """The state of the app that `connection` (a request) reached; `create_app` sets it."""
    state: AppState = connection.app.state.recsys
    return state
