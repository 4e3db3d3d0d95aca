"""What one running app holds: settings, the engine, the served model, the impression writer."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine
from starlette.requests import HTTPConnection

from recsys.config import Settings
from recsys.model.lru import LruCache
from service.feedback_writer import FeedbackCommitter
from service.impressions import ImpressionWriter
from service.metrics import ServiceMetrics
from service.model_holder import ModelHolder


@dataclass
class AppState:
    settings: Settings
    engine: Engine
    metrics: ServiceMetrics
    models: ModelHolder
    impressions: ImpressionWriter
    feedback: FeedbackCommitter
    # (hours, bucket) -> (monotonic time, summary): see service.monitoring_data.
    monitoring_cache: dict[tuple[float, str], tuple[float, dict[str, Any]]] = field(
        default_factory=dict
    )
    # Held while a summary is computed: one computation at a time per process.
    monitoring_lock: threading.Lock = field(default_factory=threading.Lock)
    # Items each user rated through this replica's feedback, newest users kept: a served
    # model knows only the ratings it was trained on, and a film just rated must not come
    # back in the next list. Per replica: another replica learns of them at the next model.
    rated_since: LruCache[str, frozenset[str]] = field(default_factory=lambda: LruCache(10_000))

    def note_ratings(self, pairs: Iterable[tuple[str, str]]) -> None:
        """Remember (user, item) ratings just committed."""
        by_user: dict[str, set[str]] = {}
        for user, item in pairs:
            by_user.setdefault(user, set()).add(item)
        for user, items in by_user.items():
            self.rated_since.put(user, (self.rated_since.get(user) or frozenset()) | items)


def app_state(connection: HTTPConnection) -> AppState:
    """The state of the app that `connection` (a request) reached; `create_app` sets it."""
    state: AppState = connection.app.state.recsys
    return state
