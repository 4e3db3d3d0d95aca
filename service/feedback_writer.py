"""Group commit for feedback: many requests, one transaction, each acknowledged after it.

A request hands its events over and waits. While one transaction commits, the requests that
arrive queue up; the next transaction takes them all. No request waits for a timer, and under
load the per-statement and per-commit costs are shared (the same idea as PostgreSQL's own
group commit of WAL flushes). Durability is unchanged: an answer is sent only after the
transaction holding its events has committed.

Several groups are in flight at once (`in_flight`, eight), and on PostgreSQL a feedback transaction
waits at most `lock_timeout_s` for a lock: a 2M-row ingestion holds the rows of the users it
creates until it commits, and with one group at a time, one event for such a user held every
request queued behind it for as long as the ingestion ran. A group that times out is split,
so the requests of other users commit at once; the blocked request is tried once more by
its own task, outside the committer, with the full lock timeout, then answered 503 (nothing
of it written; the client retries).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from sqlalchemy import Engine, text
from starlette.concurrency import run_in_threadpool

from recsys.errors import InvalidInputError
from recsys.store.db import is_lock_timeout, is_postgres, is_transient, session_scope
from recsys.store.events import RATING, FeedbackEvent, FeedbackResult, record_feedback


class _LockWaitError(Exception):
    """A request's transaction waited past the lock timeout; its own task retries it."""


@dataclass
class _Pending:
    events: list[FeedbackEvent]
    done: asyncio.Future[FeedbackResult]


def _share(result: FeedbackResult, group: list[_Pending]) -> list[FeedbackResult]:
    """Split the result of one transaction among the requests it served."""
    out, start = [], 0
    for pending in group:
        fresh = result.fresh[start : start + len(pending.events)]
        start += len(pending.events)
        stored = sum(fresh)
        ratings = len(
            {
                (e.user_id, e.item_id)
                for e, f in zip(pending.events, fresh, strict=True)
                if f and e.kind == RATING
            }
        )
        out.append(FeedbackResult(stored, len(fresh) - stored, ratings, fresh))
    return out


class FeedbackCommitter:
    def __init__(
        self,
        engine: Engine,
        *,
        max_events: int = 5_000,
        in_flight: int = 8,
        lock_timeout_s: float = 1.0,
    ) -> None:
        self.engine = engine
        self.max_events = max_events
        self.in_flight = in_flight
        self.lock_timeout_ms = max(1, round(lock_timeout_s * 1000))
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._retrying = asyncio.Semaphore(4)

    async def submit(self, events: list[FeedbackEvent]) -> FeedbackResult:
        """Returns once the events are committed; raises what their transaction raised."""
        done: asyncio.Future[FeedbackResult] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Pending(events, done))
        try:
            return await done
        except _LockWaitError:
            # Each retry holds a pooled connection while it waits for the lock: a few at a
            # time, so that the committers always find connections.
            async with self._retrying:
                return await run_in_threadpool(self._record, events)

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._run(), name=f"feedback-committer-{n}")
            for n in range(self.in_flight)
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            group = [await self._queue.get()]
            size = len(group[0].events)
            while not self._queue.empty() and size < self.max_events:
                group.append(self._queue.get_nowait())
                size += len(group[-1].events)
            outcomes = await run_in_threadpool(self._commit, group)
            for pending, outcome in zip(group, outcomes, strict=True):
                if pending.done.done():  # the client went away meanwhile
                    continue
                if isinstance(outcome, BaseException):
                    pending.done.set_exception(outcome)
                else:
                    pending.done.set_result(outcome)

    STATEMENT_TIMEOUT_MS = 10_000
    SHARED_LOCK_TIMEOUT_MS = 50
    """A feedback row waits on another's lock only when that transaction writes the same
    user or rating: an ingestion creating the user, mostly. Ordinary commits take ~5 ms."""

    def _record(self, events: list[FeedbackEvent], *, wait: bool = True) -> FeedbackResult:
        """One transaction, run again (up to three times) when PostgreSQL cancelled it to
        break a deadlock (with an ingestion creating the same new users, say): nothing of it
        was written, and the client would only have to send it again.

        A lock is waited for `lock_timeout_s` at most, and only `SHARED_LOCK_TIMEOUT_MS`
        with `wait` False (in the committer, where others queue behind it). A lock timeout is
        not retried here: the lock's holder is usually an ingestion that will hold it for
        many seconds more, and retries that waited again had queued up the server (feedback
        of other users waited 7 s). The client gets 503 and retries later."""
        timeout_ms = self.lock_timeout_ms if wait else self.SHARED_LOCK_TIMEOUT_MS
        attempt = 1
        while True:
            try:
                with session_scope(self.engine) as s:
                    if is_postgres(s):
                        # And a bound on the whole statement, whatever it waits for.
                        s.execute(
                            text(
                                f"SET LOCAL lock_timeout = {timeout_ms}; "
                                f"SET LOCAL statement_timeout = {self.STATEMENT_TIMEOUT_MS}"
                            )
                        )
                    return record_feedback(session=s, events=events)
            except Exception as exc:
                if attempt >= 3 or not is_transient(exc):
                    raise
                attempt += 1

    def _commit(self, group: list[_Pending]) -> list[FeedbackResult | BaseException]:
        """Commit the group in one transaction; if someone's input is bad or someone's rows
        are locked, commit its halves, recursively: the culprits are found in O(log n)
        transactions, and the others still commit together. (One transaction per request
        multiplied the WAL flushes just when an ingestion's WAL made each one slow.)"""
        try:
            result = self._record([e for p in group for e in p.events], wait=False)
            return list(_share(result, group))
        except Exception as exc:
            culprit = isinstance(exc, InvalidInputError) or is_lock_timeout(exc)
            if len(group) == 1 or not culprit:
                outcome = _LockWaitError() if is_lock_timeout(exc) else exc
                return [outcome] * len(group)
        middle = len(group) // 2
        return self._commit(group[:middle]) + self._commit(group[middle:])
