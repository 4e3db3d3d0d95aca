"""What the store reads back of the feedback loop: served lists and the feedback on them.
Plain values, so the monitoring maths (`recsys.monitoring`) runs on them wherever they come
from: a database, a test's hand-made rows, a notebook's export."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class Shown:
    """One served list."""

    recommendation_id: str
    model_version: str | None
    items: list[str]
    served_at: datetime
    predicted: list[float | None] | None = None
    """Predicted ratings in list order (None for lists logged before they were kept)."""
    policy: dict[str, Any] | None = field(default=None)


@dataclass(frozen=True)
class Answer:
    """One piece of feedback."""

    recommendation_id: str | None
    item_id: str
    kind: str
    value: float | None
    received_at: datetime
