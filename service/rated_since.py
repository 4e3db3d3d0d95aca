"""Items users rated after the served model was trained, as every replica learns of them.

A served model knows only the ratings it was trained on, so a film a user has just rated must
be kept out of their next list by other means. A rating sent to this replica is noted at once
(`note`); ratings sent to other replicas are read from the feedback table at each poll of the
model holder (`refresh`), so replicas behind a load balancer agree within one poll.

The poll reads by the time feedback was received, from a little before the newest row it
has seen: ids are assigned when a row is inserted but rows commit in any order, so a cursor on
ids could pass over a transaction that commits late. Reading a row twice is harmless (the
items are sets).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, select

from recsys.model.lru import LruCache
from recsys.store.db import session_scope
from recsys.store.events import RATING
from recsys.store.tables import feedback, items, users

OVERLAP = timedelta(seconds=30)
"""How far before the newest feedback seen each poll reads again: longer than a feedback
transaction takes to commit (its lock waits are bounded at a few seconds)."""
LOOKBACK = timedelta(hours=24)
"""How far back the first poll of a process reads."""
MAX_ROWS = 50_000
"""Most rows one poll reads (the newest): the users kept are bounded anyway."""


class RatedSince:
    def __init__(self, users: int = 10_000) -> None:
        # The users who rated most recently are kept; each holds ~100 bytes a film.
        self._items: LruCache[str, frozenset[str]] = LruCache(users)
        self._lock = threading.Lock()  # the poller and request threads both add
        self._watermark: datetime | None = None

    def get(self, user_id: str) -> frozenset[str]:
        return self._items.get(user_id) or frozenset()

    def note(self, pairs: Iterable[tuple[str, str]]) -> None:
        """Remember (user, item) ratings just committed."""
        by_user: dict[str, set[str]] = {}
        for user, item in pairs:
            by_user.setdefault(user, set()).add(item)
        with self._lock:
            for user, rated in by_user.items():
                self._items.put(user, self.get(user) | rated)

    def refresh(self, engine: Engine) -> None:
        """Read the ratings received since the last poll (by any replica)."""
        since = (
            datetime.now(UTC) - LOOKBACK if self._watermark is None else self._watermark - OVERLAP
        )
        query = (
            select(users.c.external_id, items.c.external_id, feedback.c.received_at)
            .join(users, users.c.id == feedback.c.user_id)
            .join(items, items.c.id == feedback.c.item_id)
            .where(feedback.c.kind == RATING, feedback.c.received_at >= since)
            .order_by(feedback.c.received_at.desc())
            .limit(MAX_ROWS)
        )
        with session_scope(engine) as s:
            rows = s.execute(query).all()
        if not rows:
            return
        # Oldest first, so that the users who rated last end up the most recently used.
        self.note((user, item) for user, item, _ in reversed(rows))
        newest = rows[0][2]
        # SQLite returns naive datetimes (it stores no zone); they were written in UTC.
        self._watermark = newest if newest.tzinfo else newest.replace(tzinfo=UTC)
