"""Feedback: ratings and events, acknowledged only once committed."""

from __future__ import annotations

import time

from fastapi import APIRouter, status

from recsys.store.events import RATING, FeedbackEvent
from service.auth import WriterDep
from service.deps import StateDep, check_batch, check_rating
from service.errors import BODY, CLIENT_RESPONSES, responses
from service.recent_feedback import Event
from service.schemas_catalog import FeedbackBatchCreate, FeedbackBody, FeedbackPublic

router = APIRouter(
    prefix="/v1", tags=["feedback"], responses=CLIENT_RESPONSES, dependencies=[WriterDep]
)


@router.post("/feedback", status_code=status.HTTP_201_CREATED, responses=responses(*BODY))
async def post_feedback(body: FeedbackBody, state: StateDep) -> FeedbackPublic:
    """One event, or `{"events": [...]}`. Ratings feed the next training; every event, with
    the `recommendation_id` it answers, feeds monitoring. A 201 means it is committed
    (concurrent requests share a transaction, see `service.feedback_writer`); on 503
    nothing was written and the request can be retried (with `event_id`, safely)."""
    events = body.events if isinstance(body, FeedbackBatchCreate) else [body]
    check_batch(len(events), state.settings, "events")
    for n, e in enumerate(events):
        if e.kind == RATING and e.value is not None:
            check_rating(e.value, state.settings, f"events.{n}")
    result = await state.feedback.submit(
        [
            FeedbackEvent(
                user_id=e.user_id,
                item_id=e.item_id,
                kind=e.kind,
                value=e.value,
                recommendation_id=e.recommendation_id,
                occurred_at=e.occurred_at,
                event_id=e.event_id,
            )
            for e in events
        ]
    )
    for e in events:
        state.metrics.feedback.labels(e.kind).inc()
    now = time.time()
    state.note_feedback(
        (
            e.user_id,
            Event(
                e.item_id,
                e.kind,
                e.value,
                e.occurred_at.timestamp() if e.occurred_at is not None else now,
            ),
        )
        for e in events
    )
    return FeedbackPublic(
        stored=result.stored, duplicates=result.duplicates, ratings=result.ratings
    )
