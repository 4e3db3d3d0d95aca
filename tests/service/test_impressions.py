"""The impression writer: batches, and counts what it must drop instead of blocking."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Engine, func, select

from recsys.store.db import session_scope
from recsys.store.tables import impressions
from service.impressions import ImpressionWriter
from service.metrics import ServiceMetrics


def row(n: int) -> dict[str, object]:
    return {
        "recommendation_id": f"r{n}",
        "user_external_id": "u",
        "model_version": "v1",
        "strategy": "model",
        "items": ["a", "b"],
        "scores": [4.5, 4.0],
        "served_at": datetime.now(UTC),
    }


def test_full_queue_drops_and_counts_then_writes_the_rest(engine: Engine) -> None:
    metrics = ServiceMetrics()
    writer = ImpressionWriter(engine, metrics, queue_size=3, batch_size=2, flush_s=0.01)
    for n in range(5):  # not started yet: the queue fills up
        writer.log(row(n))
    assert metrics.impressions_dropped._value.get() == 2
    writer.start()
    assert writer.wait_idle(10)
    writer.stop()
    with session_scope(engine) as s:
        stored = s.scalars(select(impressions.c.recommendation_id)).all()
        assert s.scalar(select(func.count()).select_from(impressions)) == 3
    assert sorted(stored) == ["r0", "r1", "r2"]
    assert metrics.impressions_logged._value.get() == 3


def test_stop_flushes_what_is_queued(engine: Engine) -> None:
    writer = ImpressionWriter(engine, ServiceMetrics(), flush_s=60)  # a long window
    writer.start()
    for n in range(10):
        writer.log(row(n))
    writer.stop()  # does not wait out the window
    with session_scope(engine) as s:
        assert s.scalar(select(func.count()).select_from(impressions)) == 10
