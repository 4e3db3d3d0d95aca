"""The tally of the feedback loop (`recsys.loop_tally`) kept up to date from the database.

Each refresh reads only the lists and feedback stored since the one before, so a refresh
costs what the traffic since has written, not what is stored: the monitoring summary that
`/metrics` and the dashboard show used to read every impression of its day, about 30
CPU-seconds a minute at a million impressions.

The tally is saved to the database every `SAVE_EVERY_S` (`recsys.store.snapshots`), and a
new process starts from the newest save and reads only what was stored after it: reading the
whole of `KEEP_S` took a fresh worker 93 s at ten million impressions a day, while /metrics
exported no alerts. Only a database without a save of the last `KEEP_S` is read whole.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson
from sqlalchemy import ColumnElement, Engine, Select, Table, Text, cast, func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from recsys.data import timestamps
from recsys.exploration import ExplorePolicy
from recsys.loop_tally import Reply, Served, Tally, Window, shown_score, width_for
from recsys.store import snapshots
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

SAVE_EVERY_S = 300.0
"""How often a refresh saves the tally for the next process: what a restarted worker reads
again is at most this much traffic (and its downtime's), at the cost of writing a few
megabytes every five minutes."""

_FORMAT = 1
"""Bumped when a save's layout changes: a process never restores a layout it does not know."""
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
        self.snapshot_name = f"loop-tally v{_FORMAT} liked {liked_threshold:g} keep {keep_s:g}"
        """The save this tally starts from and writes: one per setting that changes what it
        counts, so that a process never starts from a tally counted by other rules."""
        self._saved: float | None = None

    def refresh(self, now: float | None = None) -> None:
        """Count what was stored since the last refresh; merge and drop aged buckets."""
        now = time.time() if now is None else now
        if self._began is None:
            self._restore(now)
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
        if self._saved is None or now - self._saved >= SAVE_EVERY_S:
            self._save(now)

    def _save(self, now: float) -> None:
        meta, idx, cnt = self.tally.state()
        meta |= {"began": self._began, "complete_since": self.complete_since}
        buffer = io.BytesIO()
        np.savez_compressed(
            buffer, meta=np.frombuffer(orjson.dumps(meta), np.uint8), idx=idx, cnt=cnt,
            lists_seen=_pairs(self._lists_seen), replies_seen=_pairs(self._replies_seen),
        )  # fmt: skip
        try:
            with session_scope(self.engine) as s:
                snapshots.save(session=s, name=self.snapshot_name, body=buffer.getvalue(),
                               saved_at=_at(now))  # fmt: skip
        except SQLAlchemyError:  # the figures stand; a restart reads more, that is all
            log.warning("monitoring tally not saved", exc_info=True)
        self._saved = now

    def _restore(self, now: float) -> None:
        """Start from the newest save when it covers a part of the last `keep_s`."""
        try:
            with session_scope(self.engine) as s:
                saved = snapshots.load(session=s, name=self.snapshot_name)
        except SQLAlchemyError:  # a database not yet migrated to hold saves
            log.warning("monitoring tally save not read", exc_info=True)
            return
        if saved is None:
            return
        with np.load(io.BytesIO(saved.body), allow_pickle=False) as arrays:
            meta = orjson.loads(arrays["meta"].tobytes())
            # A save from the future (a replica's clock ahead) could skip rows: not used.
            if not now - self.keep_s < meta["began"] <= now + OVERLAP_S:
                return
            self.tally = Tally.from_state(meta, arrays["idx"], arrays["cnt"])
            self._lists_seen = _unpaired(arrays["lists_seen"])
            self._replies_seen = _unpaired(arrays["replies_seen"])
        self._began, self.complete_since = meta["began"], meta["complete_since"]
        self._saved = timestamps.unix(saved.saved_at)
        log.info("monitoring tally restored from its save of %s", saved.saved_at)

    def window(self, since: float) -> Window | None:
        """The cells from `since` on, or None when the tally does not reach back that far."""
        if self.complete_since is None or since < self.complete_since:
            return None
        return self.tally.window(since)


def _pairs(seen: dict[int, float]) -> np.ndarray:
    # (id, stamp) rows in one float64 array: row ids stay exact up to 2**53.
    return np.array(list(seen.items()), dtype=np.float64).reshape(-1, 2)


def _unpaired(pairs: np.ndarray) -> dict[int, float]:
    return {int(rid): float(at) for rid, at in pairs}


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
