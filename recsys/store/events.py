"""Feedback and impressions: what users told us and what we showed them.

Feedback is written synchronously, in the caller's transaction, so it is acknowledged only once
committed. Impressions arrive in batches from the service's background writer.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import chain
from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from recsys.errors import InvalidInputError
from recsys.store.many_rows import BulkInsert
from recsys.store.queries import (
    dialect_insert,
    ensure_ids,
    insert_rows_returning,
    lookup_ids,
    upsert_ratings,
    where_in,
)
from recsys.store.records import Answer, Shown
from recsys.store.tables import feedback, impressions, items, ratings, users

RATING = "rating"
EVENT_KINDS = (RATING, "click", "view", "skip", "like", "dislike", "purchase")
POSITIVE_EVENTS = ("click", "like", "purchase")
"""The kinds that say a user wanted what they were shown (a rating counts by its value)."""


@dataclass(frozen=True)
class FeedbackEvent:
    user_id: str
    item_id: str
    kind: str
    value: float | None = None
    """The rating for kind "rating"; optional weight otherwise."""
    recommendation_id: str | None = None
    occurred_at: datetime | None = None
    event_id: str | None = None


@dataclass(frozen=True)
class FeedbackResult:
    stored: int
    duplicates: int
    ratings: int
    fresh: tuple[bool, ...] = ()
    """Per event, in order: False where the event_id had been stored before."""


def record_feedback(*, session: Session, events: Sequence[FeedbackEvent]) -> FeedbackResult:
    """Store events; ratings also go into `ratings` (latest wins) for the next training.

    Items must be in the catalog: feedback from the internet must not invent items. Users are
    created on first sight. An event whose `event_id` was stored before is skipped, so a client
    that retries after a lost answer does not count twice.
    """
    if not events:
        return FeedbackResult(0, 0, 0, ())
    item_ids, event_ids = _checked(session, events)
    seen: set[str] = set()
    if event_ids:
        stored = where_in(session, select(feedback.c.event_id), feedback.c.event_id, event_ids)
        seen.update(session.scalars(stored))
    fresh = [e for e in events if e.event_id is None or e.event_id not in seen]
    user_ids = ensure_ids(session=session, table=users, external_ids=[e.user_id for e in fresh])
    received = datetime.now(UTC)
    rows: list[dict[str, Any]] = [
        {
            "event_id": e.event_id,
            "user_id": user_ids[e.user_id],
            "item_id": item_ids[e.item_id],
            "kind": e.kind,
            "value": e.value,
            "recommendation_id": e.recommendation_id,
            "occurred_at": e.occurred_at or received,
            "received_at": received,
        }
        for e in fresh
    ]
    if rows:
        # DO NOTHING on a concurrent duplicate: another transaction stored the same event
        # between our look and our insert. Only what was inserted counts as stored and
        # writes its rating: 30 concurrent copies of one event had claimed up to 8 stores.
        stmt = dialect_insert(session, feedback).on_conflict_do_nothing(index_elements=["event_id"])
        inserted = set(insert_rows_returning(session, stmt, feedback, rows, feedback.c.event_id))
        rows = [r for r in rows if r["event_id"] is None or r["event_id"] in inserted]
        seen.update(e.event_id for e in fresh if e.event_id is not None)
        seen.difference_update(inserted)
    latest = _latest_ratings(rows)
    upsert_ratings(session=session, rows=latest)
    return FeedbackResult(
        stored=len(rows),
        duplicates=len(events) - len(rows),
        ratings=len(latest),
        fresh=tuple(e.event_id is None or e.event_id not in seen for e in events),
    )


def _checked(session: Session, events: Sequence[FeedbackEvent]) -> tuple[dict[str, int], list[str]]:
    """The events' items' row ids, and their event ids; InvalidInputError for an item not in
    the catalog or an event id given twice."""
    item_ids = lookup_ids(session=session, table=items, external_ids=[e.item_id for e in events])
    unknown = sorted({e.item_id for e in events} - item_ids.keys())
    if unknown:
        shown = ", ".join(repr(x) for x in unknown[:10])
        raise InvalidInputError(
            f"{len(unknown)} item(s) are not in the catalog: {shown}"
            f"{' ...' if len(unknown) > 10 else ''}; add them with PUT /v1/items/{{item_id}}"
        )
    event_ids = [e.event_id for e in events if e.event_id is not None]
    if len(event_ids) != len(set(event_ids)):
        raise InvalidInputError("event_id values must be unique within a batch")
    return item_ids, event_ids


def _latest_ratings(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The stored events' ratings, one per (user, item), the latest: PostgreSQL will not
    update a row twice in one statement."""
    latest: dict[tuple[int, int], dict[str, Any]] = {}
    for row in rows:
        if row["kind"] != RATING:
            continue
        key = (row["user_id"], row["item_id"])
        rated_at = int(row["occurred_at"].timestamp())
        if key not in latest or rated_at >= latest[key]["rated_at"]:
            latest[key] = {
                "user_id": key[0],
                "item_id": key[1],
                "value": row["value"],
                "rated_at": rated_at,
            }
    return list(latest.values())


def _decimals(x: np.ndarray) -> np.ndarray:
    """To 5 decimals."""
    rounded: np.ndarray = np.round(x, 5)
    return rounded


def _significant(x: np.ndarray) -> np.ndarray:
    """To 6 significant digits. Dividing a whole number by an exact power of ten rounds to
    the double nearest the 6-digit decimal, as formatting with "%.6g" and parsing it back
    would (below 1e-16, where the power of ten is no longer exact, within one unit in the
    last place)."""
    magnitude = np.floor(np.log10(np.abs(np.where(x == 0, 1.0, x))))
    scale = 10.0 ** (5 - magnitude)
    significant: np.ndarray = np.round(x * scale) / scale
    return significant


def _shortened(
    lists: Sequence[Sequence[float | None] | None], digits: Callable[[np.ndarray], np.ndarray]
) -> list[list[float | None] | None]:
    """Each list's values cut to fewer `digits`, the whole batch's in one numpy call: per
    value in Python (or per list in numpy) this was a fifth of the impression writer's time,
    and the writer shares the GIL with the requests."""
    whole = [v for v in lists if v is not None and None not in v]
    flat: list[float | None] = (
        digits(np.fromiter(chain.from_iterable(whole), dtype=np.float64)).tolist() if whole else []
    )
    out: list[list[float | None] | None] = []
    at = 0
    for values in lists:
        if values is None:
            out.append(None)
        elif None in values:  # a slot without a figure: rare, so one at a time will do
            out.append([None if v is None else float(digits(np.array([v]))[0]) for v in values])
        else:
            out.append(flat[at : at + len(values)])
            at += len(values)
    return out


_IMPRESSION_ROWS = BulkInsert(
    impressions, [c.name for c in impressions.c if c.name != "id"], conflict="recommendation_id"
)


def insert_impressions(*, session: Session, rows: Sequence[Mapping[str, Any]]) -> None:
    """Rows have recommendation_id, user_external_id, model_version, strategy, items, scores,
    served_at, and optionally predicted (ratings), explored, propensities (per slot) and
    policy. A list logged twice (a writer retrying a batch) is stored once. Scores and ratings
    are kept to 5 decimals: the table grows by a row per list served, and the digits beyond
    say nothing."""
    if rows:
        # Propensities keep 6 significant digits: a rarely drawn item's is far below 1e-5,
        # and rounding it to zero would lose the very slot off-policy estimates weigh most.
        scores = _shortened([row["scores"] for row in rows], _decimals)
        predicted = _shortened([row.get("predicted") for row in rows], _decimals)
        propensities = _shortened([row.get("propensities") for row in rows], _significant)
        rows = [
            {
                **row,
                "scores": scores[n],
                "predicted": predicted[n],
                "explored": row.get("explored"),
                "propensities": propensities[n],
                "policy": row.get("policy"),
            }
            for n, row in enumerate(rows)
        ]
        _IMPRESSION_ROWS.execute(session.connection(), rows)


def user_ratings(
    *, session: Session, user_id: str, limit: int = 1000
) -> tuple[list[str], list[float]]:
    """The newest ratings of one user as (item external ids, values)."""
    # The user first: joined in one query, PostgreSQL walked the whole rated_at index looking
    # for the ratings of a user who has none (a new visitor, the usual caller): 33 ms a call
    # on MovieLens instead of one index lookup.
    found = lookup_ids(session=session, table=users, external_ids=[user_id])
    if user_id not in found:
        return [], []
    rows = session.execute(
        select(items.c.external_id, ratings.c.value)
        .join(ratings, ratings.c.item_id == items.c.id)
        .where(ratings.c.user_id == found[user_id])
        .order_by(ratings.c.rated_at.desc())
        .limit(limit)
    ).all()
    return [r[0] for r in rows], [float(r[1]) for r in rows]


def load_served(
    *, session: Session, since: datetime | None = None
) -> tuple[list[Shown], list[Answer]]:
    """Impressions and the feedback (with external item ids) logged since a time, as the rows
    `recsys.monitoring` reads."""
    imp = select(
        impressions.c.recommendation_id,
        impressions.c.model_version,
        impressions.c["items"],
        impressions.c.predicted,
        impressions.c.policy,
        impressions.c.served_at,
    )
    fb = select(
        feedback.c.recommendation_id,
        items.c.external_id,
        feedback.c.kind,
        feedback.c.value,
        feedback.c.received_at,
    ).join(items, items.c.id == feedback.c.item_id)
    if since is not None:
        imp = imp.where(impressions.c.served_at >= since)
        fb = fb.where(feedback.c.received_at >= since)
    shown = [
        Shown(rec_id, version, list(listed), served_at, predicted, policy)
        for rec_id, version, listed, predicted, policy, served_at in session.execute(imp)
    ]
    answers = [
        Answer(rec_id, item, kind, value, received_at)
        for rec_id, item, kind, value, received_at in session.execute(fb)
    ]
    return shown, answers


def rating_counts(
    *, session: Session, cutoff: int, after: bool, organic: bool = False
) -> tuple[dict[float, int], dict[str, int]]:
    """(counts by rating value, counts by item external id) of the ratings rated up to
    `cutoff` (Unix seconds), or after it: aggregated in the database, not read row by row.
    With `organic`, only ratings that answer none of our lists (no rating feedback for the
    same user and item carries a recommendation id): what users rate of their own accord."""
    when = ratings.c.rated_at > cutoff if after else ratings.c.rated_at <= cutoff
    if organic:
        answered = (
            select(feedback.c.id)
            .where(
                feedback.c.user_id == ratings.c.user_id,
                feedback.c.item_id == ratings.c.item_id,
                feedback.c.kind == RATING,
                feedback.c.recommendation_id.is_not(None),
            )
            .exists()
        )
        when = when & ~answered
    by_value = session.execute(
        select(ratings.c.value, func.count()).where(when).group_by(ratings.c.value)
    ).all()
    by_item = session.execute(
        select(items.c.external_id, func.count())
        .join(ratings, ratings.c.item_id == items.c.id)
        .where(when)
        .group_by(items.c.external_id)
    ).all()
    return {float(v): int(n) for v, n in by_value}, {str(i): int(n) for i, n in by_item}
