"""What the operator's pages and the catalog routes read and write in the database, so the
routes stay thin: each function opens its own short session."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from recsys.store import queries, user_activity
from recsys.store.db import session_scope
from recsys.store.events import load_served
from recsys.store.records import Answer, Shown
from service.state import AppState


def served_since(state: AppState, hours: float) -> tuple[list[Shown], list[Answer]]:
    """The lists served in the last `hours` and the feedback answering them."""
    with session_scope(state.engine) as s:
        return load_served(session=s, since=datetime.now(UTC) - timedelta(hours=hours))


def search_items(state: AppState, text: str) -> list[dict[str, str | None]]:
    """Items whose title contains `text`."""
    with session_scope(state.engine) as s:
        return [{"item_id": i, "title": t} for i, t in queries.search_items(session=s, text=text)]


def write_items(state: AppState, rows: list[dict[str, object]]) -> None:
    """Upsert catalog rows, then refresh this replica's catalog (others do on their next
    refresh)."""
    with session_scope(state.engine) as s:
        queries.upsert_items(session=s, rows=rows)
    state.models.catalog.refresh(state.engine)


@dataclass(frozen=True)
class UserActivity:
    rated: list[dict[str, Any]]
    """Their latest ratings."""
    lists: list[dict[str, Any]]
    """The lists we served them."""
    answers: list[dict[str, Any]]
    """The feedback they gave on those lists."""


def of_user(state: AppState, user_id: str) -> UserActivity:
    with session_scope(state.engine) as s:
        return UserActivity(
            user_activity.rated(session=s, user_id=user_id),
            user_activity.served(session=s, user_id=user_id),
            user_activity.answers(session=s, user_id=user_id),
        )
