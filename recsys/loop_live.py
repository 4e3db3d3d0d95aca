"""The tally of the feedback loop (`recsys.loop_tally`) kept up to date from the database.

Each refresh reads only the lists and feedback stored since the one before, so a refresh
costs what the traffic since has written, not what is stored: the monitoring summary that
`/metrics` and the dashboard show used to read every impression of its day, about 30
CPU-seconds a minute at a million impressions. The first refresh of a process reads the
whole of `KEEP_S` once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import ColumnElement, Engine, Select, Table, Text, cast, func, select
from sqlalchemy.orm import Session

from recsys.data import timestamps
from recsys.exploration import ExplorePolicy
from recsys.loop_tally import Reply, Served, Tally, Window, shown_score, width_for
from recsys.store.db import session_scope
from recsys.store.queries import in_batches, where_in
from recsys.store.tables import feedback, impressions, items

KEEP_S = 25 * 3600.0
"""How far back the tally reaches: the default day of the summary, and the hour that its
first bucket may start before the day does."""

OVERLAP_S = 300.0
"""Rows are read by the times the service stamps on them before it writes them (served_at,
received_at), so a row may be committed a little after a later-stamped one was read. Each
refresh reads again from `OVERLAP_S` before the previous one began, skipping the ids it has
counted: a row committed up to five minutes after its time stamp is still counted; one held
back longer (the impression writer retrying through a database outage) is not, in the
tally's figures only."""

_BATCH = 20_000
log = logging.getLogger(__name__)


def _at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


class LiveTally:
    """A `Tally` of the last `keep_s` seconds, refreshed from `engine`."""

    def __init__(self, engine: Engine, liked_threshold: float, keep_s: float = KEEP_S) -> None:
        self.engine = engine
        self.tally = Tally(liked_threshold)
        self.keep_s = keep_s
        self.complete_since: float | None = None
        """Windows that start at or after this time are complete (None before the first
        refresh)."""
        self._began: float | None = None
        self._lists_seen: dict[int, float] = {}
        self._replies_seen: dict[int, float] = {}
        self.lists_read = 0
        self.replies_read = 0
        """Rows counted so far: what a whole-table count taken earlier has missed since."""

    def refresh(self, now: float | None = None) -> None:
        """Count what was stored since the last refresh; merge and drop aged buckets."""
        now = time.time() if now is None else now
        first = self._began is None
        since = now - self.keep_s if self._began is None else self._began - OVERLAP_S
        t0 = time.perf_counter()
        # The next refresh reads again from `now - OVERLAP_S`: only ids stamped since then
        # can come back, so only those are remembered (not the day of a first read).
        horizon = now - OVERLAP_S
        lists_seen, replies_seen = self._lists_seen, self._replies_seen
        lists_before, replies_before = self.lists_read, self.replies_read
        with session_scope(self.engine) as s:
            # After the first read, the ids stamped since `since` come first (an index
            # read) and only the rows not yet counted are read whole: the overlap's rows
            # would otherwise be parsed again at every refresh.
            if first:  # counted straight into the width that charts the day's span
                oldest = s.scalar(
                    select(func.min(impressions.c.served_at)).where(
                        impressions.c.served_at >= _at(since)
                    )
                )
                self.tally.width = width_for(now - timestamps.unix(oldest) if oldest else 0.0)
            wanted = None if first else _unseen(s, impressions, since, lists_seen)
            for rid, served in _lists(s, since, wanted):
                if served.at >= horizon:
                    lists_seen[rid] = served.at
                self.tally.add_list(served)
                self.lists_read += 1
                if self.lists_read % _BATCH == 0:
                    self.tally.compact()  # keeps the pending item lists small
            wanted = None if first else _unseen(s, feedback, since, replies_seen)
            for rid, reply in _replies(s, since, wanted):
                if reply.at >= horizon:
                    replies_seen[rid] = reply.at
                self.tally.add_reply(reply)
                self.replies_read += 1
        if first:
            self.complete_since = since
            log.info(
                "monitoring tally: %d lists and %d replies read in %.1f s",
                self.lists_read - lists_before, self.replies_read - replies_before,
                time.perf_counter() - t0,
            )  # fmt: skip
        self._began = now
        self._lists_seen = {k: v for k, v in lists_seen.items() if v >= horizon}
        self._replies_seen = {k: v for k, v in replies_seen.items() if v >= horizon}
        self.tally.roll(now, self.keep_s)

    def window(self, since: float) -> Window | None:
        """The cells from `since` on, or None when the tally does not reach back that far."""
        if self.complete_since is None or since < self.complete_since:
            return None
        return self.tally.window(since)


def _json(column: ColumnElement[Any]) -> ColumnElement[str]:
    """A JSON column as its text, which orjson parses several times faster than the
    drivers' `json.loads` (a third of a first read's time)."""
    return cast(column, Text)


def _parsed(raw: str | None) -> Any:
    return None if raw is None else orjson.loads(raw)


def _unseen(s: Session, table: Table, since: float, seen: dict[int, float]) -> list[int]:
    """Ids of `table` stamped at or after `since` and not in `seen`."""
    stamp = table.c.served_at if table is impressions else table.c.received_at
    stmt = select(table.c.id).where(stamp >= _at(since))
    return [rid for (rid,) in s.execute(stmt) if rid not in seen]


def _only(
    s: Session, stmt: Select[Any], column: ColumnElement[Any], wanted: list[int] | None
) -> Iterator[Select[Any]]:
    """`stmt` as it is (`wanted` None), or restricted to the ids `wanted`, in batches."""
    if wanted is None:
        yield stmt
        return
    for batch in in_batches(s, wanted):
        yield where_in(s, stmt, column, batch)


def _lists(s: Session, since: float, wanted: list[int] | None) -> Iterator[tuple[int, Served]]:
    stmt = (
        select(
            impressions.c.id,
            impressions.c.model_version,
            _json(impressions.c["items"]),
            _json(impressions.c.policy),
            impressions.c.served_at,
        )
        .where(impressions.c.served_at >= _at(since))
        .execution_options(yield_per=_BATCH)
    )
    for part in _only(s, stmt, impressions.c.id, wanted):
        for rid, version, listed, policy, served_at in s.execute(part):
            share = ExplorePolicy.from_json(_parsed(policy)).share
            yield rid, Served(timestamps.unix(served_at), str(version), share, orjson.loads(listed))


def _replies(s: Session, since: float, wanted: list[int] | None) -> Iterator[tuple[int, Reply]]:
    stmt = (
        select(
            feedback.c.id,
            feedback.c.kind,
            feedback.c.value,
            feedback.c.received_at,
            items.c.external_id,
            impressions.c.served_at,
            impressions.c.model_version,
            _json(impressions.c.policy),
            _json(impressions.c["items"]),
            _json(impressions.c.predicted),
        )
        .join(items, items.c.id == feedback.c.item_id)
        .outerjoin(impressions, impressions.c.recommendation_id == feedback.c.recommendation_id)
        .where(feedback.c.received_at >= _at(since))
        .execution_options(yield_per=_BATCH)
    )
    for part in _only(s, stmt, feedback.c.id, wanted):
        for row in s.execute(part):
            yield row[0], _reply(*row[1:])


def _reply(
    kind: str,
    value: float | None,
    received_at: datetime,
    item: str,
    served_at: datetime | None,
    version: str | None,
    policy: str | None,
    listed: str | None,
    predicted: str | None,
) -> Reply:
    at = timestamps.unix(received_at)
    if served_at is None:
        return Reply(at, kind, value)
    share = ExplorePolicy.from_json(_parsed(policy)).share
    score = shown_score(_parsed(listed) or [], _parsed(predicted), item)
    return Reply(at, kind, value, timestamps.unix(served_at), str(version), share, score)
