"""Logged traffic for off-policy evaluation: the lists served with their propensities, what
their users answered, and what each user had rated when the list was served."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from recsys.store.events import POSITIVE_EVENTS
from recsys.store.queries import in_batches, where_in
from recsys.store.tables import feedback, impressions, items, ratings, users

LEARNED = ("model", "live")
"""The strategies of lists served to users the serving model learned."""


@dataclass
class LoggedList:
    recommendation_id: str
    user_id: str
    model_version: str
    served_at: datetime
    items: list[str]
    propensities: list[float]
    explored: list[bool]
    predicted: list[float | None]
    min_support: int
    positive: set[str] = field(default_factory=set)
    """Items of the list the user answered positively."""
    rated: dict[str, float] = field(default_factory=dict)
    """Ratings the user gave items of the list in answer to it."""
    demoted: dict[str, float] = field(default_factory=dict)
    """The rotation's penalties that drew the list (`recsys.lists.rotation`): the judged
    policy rotates alike."""


@dataclass
class Logged:
    lists: list[LoggedList]
    skipped: dict[str, int]
    """Lists left out, by reason."""
    rated_at: dict[str, dict[str, int]]
    """user -> {item: Unix seconds of their current rating}."""
    rated: dict[str, dict[str, float]] = field(default_factory=dict)
    """user -> {item: their current rating}."""


def load_logged(
    *, session: Session, since: datetime | None, liked_threshold: float, limit: int = 200_000
) -> Logged:
    """The newest `limit` lists served to learned users ("model" and "live" strategies: a live
    list's user was moved by ratings since training, which the judge replays from `rated`)
    since a time, with
    propensities and not narrowed by the request (filters or exclusions change what the policy
    could show), with the answers they got."""
    stmt = (
        select(
            impressions.c.recommendation_id,
            impressions.c.user_external_id,
            impressions.c.model_version,
            impressions.c.served_at,
            impressions.c["items"],
            impressions.c.propensities,
            impressions.c.explored,
            impressions.c.predicted,
            impressions.c.policy,
            impressions.c.strategy,
        )
        .order_by(impressions.c.served_at.desc())
        .limit(limit)
    )
    if since is not None:
        stmt = stmt.where(impressions.c.served_at >= since)
    skipped = {"no propensities": 0, "not a learned user": 0, "narrowed by the request": 0}
    lists: dict[str, LoggedList] = {}
    for row in session.execute(stmt).mappings():
        policy: dict[str, Any] = row["policy"] or {}
        if row["propensities"] is None or row["user_external_id"] is None:
            skipped["no propensities"] += 1
        elif row["strategy"] not in LEARNED:
            skipped["not a learned user"] += 1
        elif policy.get("narrowed", True):
            skipped["narrowed by the request"] += 1
        else:
            lists[row["recommendation_id"]] = LoggedList(
                recommendation_id=row["recommendation_id"],
                user_id=row["user_external_id"],
                model_version=row["model_version"],
                served_at=row["served_at"],
                items=list(row["items"]),
                propensities=[float(p) for p in row["propensities"]],
                explored=list(row["explored"] or [False] * len(row["items"])),
                predicted=list(row["predicted"] or [None] * len(row["items"])),
                min_support=int(policy.get("min_support", 1)),
                # As `Rotation.as_json` records them; none without rotation.
                demoted={
                    str(item): float(penalty)
                    for item, penalty in (
                        (policy.get("rotation") or {}).get("demoted") or {}
                    ).items()
                },
            )
    if lists:
        _answers(session, lists, liked_threshold)
    return Logged(list(lists.values()), skipped, *_ratings(session, lists))


def _answers(session: Session, lists: dict[str, LoggedList], liked_threshold: float) -> None:
    stmt = select(
        feedback.c.recommendation_id, items.c.external_id, feedback.c.kind, feedback.c.value
    ).join(items, items.c.id == feedback.c.item_id)
    for batch in in_batches(session, list(lists)):
        found = session.execute(where_in(session, stmt, feedback.c.recommendation_id, batch))
        for rec_id, item, kind, value in found:
            shown = lists[rec_id]
            if item not in shown.items:
                continue
            if kind == "rating" and value is not None:
                shown.rated[item] = float(value)
                if value >= liked_threshold:
                    shown.positive.add(item)
            elif kind in POSITIVE_EVENTS:
                shown.positive.add(item)


def _ratings(
    session: Session, lists: dict[str, LoggedList]
) -> tuple[dict[str, dict[str, int]], dict[str, dict[str, float]]]:
    """The current ratings of the lists' users: when each was given, and its value."""
    wanted = sorted({x.user_id for x in lists.values()})
    stmt = (
        select(users.c.external_id, items.c.external_id, ratings.c.rated_at, ratings.c.value)
        .join(ratings, ratings.c.user_id == users.c.id)
        .join(items, items.c.id == ratings.c.item_id)
    )
    when: dict[str, dict[str, int]] = {}
    values: dict[str, dict[str, float]] = {}
    for user, item, rated_at, value in session.execute(
        where_in(session, stmt, users.c.external_id, wanted)
    ):
        when.setdefault(user, {})[item] = int(rated_at)
        values.setdefault(user, {})[item] = float(value)
    return when, values
