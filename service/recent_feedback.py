"""Feedback users sent after the served model was trained, as every replica learns of it.

A served model knows only the ratings it was trained on. What users sent since does two
things to their next list: a film just rated is kept out of it (`rated`), and a known user's
ratings, likes, purchases, clicks and dislikes since the model's newest rating move it
(`live`, folded into both heads by `Ranker.recommend_live`). An event sent to this replica
is noted at once (`note`); events sent to other replicas are read from the feedback table at
each poll of the model holder (`refresh`), so replicas behind a load balancer agree within
one poll (`RECSYS_RELOAD_INTERVAL_S`).

The poll reads by the time feedback was received, from a little before the previous poll
began (`OVERLAP`): a row it did not see then committed after that, so it was received less
than a transaction's length before (ids would not do: they are assigned when a row is
inserted, and rows commit in any order). Reading a row twice is harmless (an item's entry is
its latest event); a row is read by about OVERLAP / RECSYS_RELOAD_INTERVAL_S polls, however
quiet the feedback is afterwards (a window anchored at the newest row read a burst of 9,700
events again at every poll until the next event, and the poll's Python work stalled 1-2 %
of live lists by 20-60 ms).

Bounded memory: the `users` who sent feedback most recently are kept (least recent forgotten
first), each with at most `PER_USER` items (the newest).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from sqlalchemy import Engine, select

from recsys.model.lru import LruCache
from recsys.store.db import session_scope
from recsys.store.events import RATING
from recsys.store.tables import feedback, items, users

OVERLAP = timedelta(seconds=30)
"""How far before the previous poll began each poll reads: longer than a feedback
transaction takes to commit (its lock waits are bounded at a few seconds), and than the
replicas' clocks differ."""
LOOKBACK = timedelta(hours=24)
"""How far back the first poll of a process reads."""
MAX_ROWS = 50_000
"""Most rows one poll reads (the newest): the users kept are bounded anyway."""
PER_USER = 200
"""Most items kept per user (the newest): a live list folds in at most this many."""


class Event(NamedTuple):
    """A user's latest event on an item."""

    item_id: str
    kind: str
    value: float | None
    occurred_at: float
    """Seconds since the epoch, when the user did it."""


def seconds_of(when: datetime) -> float:
    # SQLite returns naive datetimes (it stores no zone); they were written in UTC.
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


class RecentFeedback:
    def __init__(self, users: int = 10_000) -> None:
        self._events: LruCache[str, dict[str, Event]] = LruCache(users)
        self._lock = threading.Lock()  # the poller and request threads both add
        self._polled_at: datetime | None = None

    def rated(self, user_id: str) -> frozenset[str]:
        """The items the user rated since (kept out of their lists)."""
        events = self._events.get(user_id) or {}
        return frozenset(i for i, e in events.items() if e.kind == RATING)

    def answered(self, user_id: str) -> dict[str, float]:
        """When the user last answered each item they sent feedback on since (seconds since
        the epoch): what rotation does not count against an item."""
        events = self._events.get(user_id) or {}
        return {item: e.occurred_at for item, e in events.items()}

    def live(
        self, user_id: str, after: float, ratings: Mapping[str, float]
    ) -> tuple[list[str], list[float]]:
        """The user's events that occurred after `after` (seconds since the epoch: the
        newest rating the model learned), oldest first, as ratings: a rating's own value,
        another kind's from `ratings` (`Settings.live_feedback`; kinds it does not name,
        such as views, are left out)."""
        events = sorted((self._events.get(user_id) or {}).values(), key=lambda e: e.occurred_at)
        ids, values = [], []
        for e in events:
            value = e.value if e.kind == RATING else ratings.get(e.kind)
            if e.occurred_at > after and value is not None:
                ids.append(e.item_id)
                values.append(float(value))
        return ids, values

    def note(self, events: Iterable[tuple[str, Event]]) -> None:
        """Remember (user, event) pairs just committed, oldest first."""
        by_user: dict[str, list[Event]] = {}
        for user, event in events:
            by_user.setdefault(user, []).append(event)
        with self._lock:
            for user, new in by_user.items():
                kept = dict(self._events.get(user) or {})
                for event in new:
                    kept.pop(event.item_id, None)  # re-inserted: the newest last
                    kept[event.item_id] = event
                if len(kept) > PER_USER:
                    kept = dict(list(kept.items())[-PER_USER:])
                self._events.put(user, kept)

    def refresh(self, engine: Engine) -> None:
        """Read the feedback received since the last poll (by any replica)."""
        started = datetime.now(UTC)
        since = started - LOOKBACK if self._polled_at is None else self._polled_at - OVERLAP
        query = (
            select(
                users.c.external_id,
                items.c.external_id,
                feedback.c.kind,
                feedback.c.value,
                feedback.c.occurred_at,
            )
            .join(users, users.c.id == feedback.c.user_id)
            .join(items, items.c.id == feedback.c.item_id)
            .where(feedback.c.received_at >= since)
            .order_by(feedback.c.received_at.desc())
            .limit(MAX_ROWS)
        )
        with session_scope(engine) as s:
            rows = s.execute(query).all()
        self._polled_at = started
        if not rows:
            return
        # Oldest first, so that the users who sent feedback last end up the most recently
        # used, and an item's latest event is the one kept.
        self.note(
            (user, Event(item, kind, value, seconds_of(occurred)))
            for user, item, kind, value, occurred in reversed(rows)
        )
