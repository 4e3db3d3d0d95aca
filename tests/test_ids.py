"""Recommendation ids: UUIDv7 in the 32-hex-digit shape clients already store."""

from __future__ import annotations

import time
import uuid

from recsys.ids import recommendation_id


def test_ids_are_uuid7_of_the_current_millisecond() -> None:
    before = time.time_ns() // 1_000_000
    made = recommendation_id()
    after = time.time_ns() // 1_000_000
    parsed = uuid.UUID(made)
    assert len(made) == 32 and made == parsed.hex
    assert parsed.version == 7 and parsed.variant == uuid.RFC_4122
    assert before <= parsed.int >> 80 <= after


def test_ids_are_unique_and_grow_with_time() -> None:
    first = [recommendation_id() for _ in range(10_000)]
    time.sleep(0.002)
    later = recommendation_id()
    assert len(set(first)) == len(first)
    assert later > max(first)  # the index of impressions grows at its end
