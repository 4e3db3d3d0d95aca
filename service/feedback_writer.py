"""Group commit for feedback: many requests, one transaction, each acknowledged after it.

A request hands its events over and waits. While one transaction commits, the requests that
arrive queue up; the next transaction takes them all. No request waits for a timer, and under
load the per-statement and per-commit costs are shared (the same idea as PostgreSQL's own
group commit of WAL flushes). Durability is unchanged: an answer is sent only after the
transaction holding its events has committed.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from recsys.errors import InvalidInputError
from recsys.store.db import is_transient, session_scope
from recsys.store.events import RATING, FeedbackEvent, FeedbackResult, record_feedback


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
    def __init__(self, engine: Engine, *, max_events: int = 5_000) -> None:
        self.engine = engine
        self.max_events = max_events
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def submit(self, events: list[FeedbackEvent]) -> FeedbackResult:
        """Returns once the events are committed; raises what their transaction raised."""
        done: asyncio.Future[FeedbackResult] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Pending(events, done))
        return await done

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="feedback-committer")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

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

    def _record(self, events: list[FeedbackEvent], attempts: int = 3) -> FeedbackResult:
        """One transaction, run again when PostgreSQL cancelled it to break a deadlock (with
        an ingestion creating the same new users, say): nothing of it was written, and the
        client would only have to send it again."""
        attempt = 1
        while True:
            try:
                with session_scope(self.engine) as s:
                    return record_feedback(session=s, events=events)
            except Exception as exc:
                if attempt >= attempts or not is_transient(exc):
                    raise
                attempt += 1

    def _commit(self, group: list[_Pending]) -> list[FeedbackResult | BaseException]:
        if len(group) > 1:
            try:
                result = self._record([e for p in group for e in p.events])
                return list(_share(result, group))
            except InvalidInputError:
                pass  # someone's input is bad: find whose, one transaction per request
            except Exception as exc:
                return [exc] * len(group)
        outcomes: list[FeedbackResult | BaseException] = []
        for pending in group:
            try:
                outcomes.append(self._record(pending.events))
            except Exception as exc:
                outcomes.append(exc)
        return outcomes
