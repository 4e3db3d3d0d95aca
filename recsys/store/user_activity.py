"""One user's activity, for the dashboard's user page: what they rated, which lists we
served them (by which version), and the feedback they gave on those lists."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from recsys.store.tables import feedback, impressions, items, ratings, users


def _user_row(session: Session, user_id: str) -> int | None:
    found: int | None = session.scalar(select(users.c.id).where(users.c.external_id == user_id))
    return found


def rated(*, session: Session, user_id: str, limit: int = 50) -> list[dict[str, Any]]:
    """The user's latest ratings, newest first, with titles."""
    row = _user_row(session, user_id)
    if row is None:
        return []
    stmt = (
        select(items.c.external_id, items.c.title, ratings.c.value, ratings.c.rated_at)
        .join(items, items.c.id == ratings.c.item_id)
        .where(ratings.c.user_id == row)
        .order_by(ratings.c.rated_at.desc(), items.c.external_id)
        .limit(limit)
    )
    return [
        {"item_id": i, "title": t, "rating": float(v), "rated_at": int(at)}
        for i, t, v, at in session.execute(stmt)
    ]


def served(*, session: Session, user_id: str, limit: int = 20) -> list[dict[str, Any]]:
    """The latest lists served to the user, newest first."""
    stmt = (
        select(
            impressions.c.recommendation_id,
            impressions.c.model_version,
            impressions.c.strategy,
            impressions.c["items"],
            impressions.c.served_at,
        )
        .where(impressions.c.user_external_id == user_id)
        .order_by(impressions.c.served_at.desc())
        .limit(limit)
    )
    return [dict(r) for r in session.execute(stmt).mappings()]


def answers(*, session: Session, user_id: str, limit: int = 50) -> list[dict[str, Any]]:
    """The user's feedback that answers one of our lists, newest first, with the version and
    strategy of the list it answers."""
    row = _user_row(session, user_id)
    if row is None:
        return []
    stmt = (
        select(
            feedback.c.received_at,
            items.c.external_id.label("item_id"),
            items.c.title,
            feedback.c.kind,
            feedback.c.value,
            feedback.c.recommendation_id,
            impressions.c.model_version,
            impressions.c.strategy,
        )
        .join(items, items.c.id == feedback.c.item_id)
        .join(impressions, impressions.c.recommendation_id == feedback.c.recommendation_id)
        .where(feedback.c.user_id == row)
        .order_by(feedback.c.received_at.desc())
        .limit(limit)
    )
    return [dict(r) for r in session.execute(stmt).mappings()]
