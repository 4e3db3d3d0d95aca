"""The feedback committer against a real PostgreSQL deadlock."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from sqlalchemy import Connection, select, update

from recsys.store import migrate
from recsys.store.db import make_engine, session_scope
from recsys.store.events import FeedbackEvent, FeedbackResult, record_feedback
from recsys.store.queries import lookup_ids, upsert_items
from recsys.store.tables import ratings, users
from service.feedback_writer import FeedbackCommitter


def _rating(user: str, value: float, day: int) -> FeedbackEvent:
    when = datetime(2026, 1, day, tzinfo=UTC)
    return FeedbackEvent(user, "film", "rating", value, occurred_at=when)


@pytest.mark.postgres
def test_a_group_cancelled_to_break_a_deadlock_is_committed_on_a_second_try(pg_url: str) -> None:
    migrate.upgrade(pg_url)
    engine = make_engine(pg_url)
    with session_scope(engine) as s:
        upsert_items(session=s, rows=[{"external_id": "film"}])
        record_feedback(session=s, events=[_rating("ann", 3.0, 1), _rating("bob", 3.0, 1)])
        ids = lookup_ids(session=s, table=users, external_ids=["ann", "bob"])

    def touch(conn: Connection, user: str) -> None:
        conn.execute(update(ratings).where(ratings.c.user_id == ids[user]).values(value=1.0))

    other = engine.connect()
    other.begin()
    touch(other, "bob")  # another transaction holds bob's rating

    async def scenario() -> FeedbackResult:
        # A lock timeout longer than PostgreSQL's deadlock_timeout (1 s), so that the
        # deadlock detector, not the timeout, ends the wait.
        committer = FeedbackCommitter(engine, lock_timeout_s=5.0)
        committer.start()
        # The group locks ann's rating, then waits for bob's...
        events = [_rating("ann", 5.0, 2), _rating("bob", 5.0, 2)]
        sent = asyncio.create_task(committer.submit(events))
        await asyncio.sleep(0.3)
        # ...while the other transaction now waits for ann's: a deadlock. PostgreSQL cancels
        # the group, which waited first; the other transaction goes on and commits.
        await asyncio.to_thread(touch, other, "ann")
        await asyncio.to_thread(other.commit)
        try:
            return await sent
        finally:
            await committer.stop()

    result = asyncio.run(scenario())
    other.close()
    assert (result.stored, result.ratings) == (2, 2)
    with session_scope(engine) as s:
        values = s.execute(select(ratings.c.value)).scalars().all()
    assert values == [5.0, 5.0]  # the retry ran after the other transaction, and is newer
    engine.dispose()


@pytest.mark.postgres
def test_a_request_waiting_for_a_lock_does_not_hold_up_the_others(pg_url: str) -> None:
    """An ingestion holds bob's rows for 1.2 s: bob's feedback waits (up to the lock timeout,
    3 s here) and then commits, while feedback for other users, queued behind it, commits at
    once."""
    migrate.upgrade(pg_url)
    engine = make_engine(pg_url)
    with session_scope(engine) as s:
        upsert_items(session=s, rows=[{"external_id": "film"}])
        record_feedback(session=s, events=[_rating("bob", 3.0, 1)])
        bob = lookup_ids(session=s, table=users, external_ids=["bob"])["bob"]
    holder = engine.connect()
    holder.begin()
    holder.execute(update(ratings).where(ratings.c.user_id == bob).values(value=1.0))

    async def scenario() -> tuple[float, list[float], FeedbackResult]:
        committer = FeedbackCommitter(engine, lock_timeout_s=3.0)
        committer.start()
        loop = asyncio.get_running_loop()
        started = loop.time()
        blocked = asyncio.create_task(committer.submit([_rating("bob", 5.0, 2)]))
        await asyncio.sleep(0.05)

        async def other(user: str) -> float:
            t0 = loop.time()
            await committer.submit([_rating(user, 4.0, 2)])
            return loop.time() - t0

        others = await asyncio.gather(*(other(f"user{n}") for n in range(20)))
        await asyncio.sleep(max(0.0, 1.2 - (loop.time() - started)))
        await asyncio.to_thread(holder.commit)
        result = await blocked
        waited = loop.time() - started
        await committer.stop()
        return waited, list(others), result

    waited, others, result = asyncio.run(scenario())
    holder.close()
    assert max(others) < 1.0, others
    assert waited >= 1.2 and result.stored == 1
    with session_scope(engine) as s:
        assert s.execute(select(ratings.c.value).where(ratings.c.user_id == bob)).scalar() == 5.0
    engine.dispose()
