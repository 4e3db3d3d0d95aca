"""What each user was shown and did not answer, as every replica learns of it: what rotation
(`recsys.lists.rotation`, `RECSYS_ROTATION`) demotes.

A list served by this replica is noted at once (`note`); lists served by other replicas are
read from the impressions table at each poll of the model holder (`refresh`), by the time they
were served, from `OVERLAP` before the previous poll began (impressions reach the table in
batches, `RECSYS_IMPRESSION_FLUSH_S`, well within it). A showing counts once a day per item:
a user who opens the page five times in a minute has seen one list. An answer is any
feedback on the item (`RecentFeedback.answered`): the days it was shown up to the day of the
user's latest answer on it are not counted.

Bounded memory: the users served most recently are kept (least recent forgotten first), each
with at most `PER_USER` items (the most recently shown) and `DAYS_PER_ITEM` days an item. A
replica that starts reads the newest `MAX_ROWS` lists of the rotation's horizon:
rotation is a nudge, and what it forgets only leaves an item where the model put it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, select

from recsys.lists.rotation import DAY_S, Rotation
from recsys.model.lru import LruCache
from recsys.store.db import session_scope
from recsys.store.tables import impressions
from service.recent_feedback import RecentFeedback, seconds_of

OVERLAP = timedelta(seconds=30)
"""How far before the previous poll began each poll reads (as `recent_feedback.OVERLAP`)."""
MAX_ROWS = 50_000
"""Most lists one poll reads (the newest)."""
PER_USER = 300
"""Most items kept per user: a month of daily lists of 10."""
DAYS_PER_ITEM = 64
"""Most days kept per item (the latest): more than the rotation's horizon at its default."""


def day_of(seconds: float) -> float:
    """The start (UTC) of the day of a time in seconds since the epoch."""
    return seconds - seconds % DAY_S


class RecentShowings:
    def __init__(self, users: int = 10_000) -> None:
        # user -> item -> the days (their starts, ascending) it was shown to them.
        self._shown: LruCache[str, dict[str, list[float]]] = LruCache(users)
        self._lock = threading.Lock()  # the poller and request threads both add
        self._polled_at: datetime | None = None

    def demoted(
        self, user_id: str, rotation: Rotation, answers: RecentFeedback, now: float
    ) -> dict[str, float]:
        """The rotation's penalty of each item the user was shown and has not answered."""
        shown = self._shown.get(user_id)
        if not shown:
            return {}
        answered = answers.answered(user_id)
        pending = {}
        for item, days in shown.items():
            last = answered.get(item)
            pending[item] = days if last is None else [d for d in days if d > day_of(last)]
        return rotation.demotions(pending, now)

    def note(self, lists: Iterable[tuple[str, Sequence[str], float]]) -> None:
        """Remember (user, items, served at in seconds) lists, oldest first."""
        with self._lock:
            for user, items, served in lists:
                day = day_of(served)
                kept = self._shown.get(user)
                kept = {} if kept is None else dict(kept)
                for item in items:
                    days = kept.pop(item, [])  # re-inserted: the most recently shown last
                    kept[item] = days if days and days[-1] >= day else [*days, day][-DAYS_PER_ITEM:]
                if len(kept) > PER_USER:
                    kept = dict(list(kept.items())[-PER_USER:])
                self._shown.put(user, kept)

    def refresh(self, engine: Engine, rotation: Rotation) -> None:
        """Read the lists served since the last poll (by any replica)."""
        started = datetime.now(UTC)
        horizon = timedelta(days=rotation.horizon_days)
        since = started - horizon if self._polled_at is None else self._polled_at - OVERLAP
        query = (
            select(impressions.c.user_external_id, impressions.c["items"], impressions.c.served_at)
            .where(impressions.c.served_at >= since)
            .where(impressions.c.user_external_id.is_not(None))
            .order_by(impressions.c.served_at.desc())
            .limit(MAX_ROWS)
        )
        with session_scope(engine) as s:
            rows = s.execute(query).all()
        self._polled_at = started
        # Oldest first: the users served last end up the most recently used.
        self.note((user, items, seconds_of(served)) for user, items, served in reversed(rows))
