"""Logged traffic read back for off-policy evaluation, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, select

from recsys.store.db import session_scope
from recsys.store.events import (
    FeedbackEvent,
    _decimals,
    _shortened,
    _significant,
    insert_impressions,
    record_feedback,
)
from recsys.store.logged import load_logged
from recsys.store.queries import upsert_items
from recsys.store.tables import impressions


def _list(n: int, user: str, **policy: object) -> dict[str, object]:
    return {
        "recommendation_id": f"r{n}",
        "user_external_id": user,
        "model_version": "v1",
        "strategy": "model",
        "items": ["a", "b", "c"],
        "scores": [3.0, 2.0, 0.5],
        "predicted": [4.2, 3.9, 3.1],
        "explored": [False, False, True],
        "propensities": [1.0, 1.0, 1.234567e-7],
        "policy": {"explore_share": 0.3, "min_support": 5, "narrowed": False, **policy},
        "served_at": datetime.now(UTC) - timedelta(minutes=5),
    }


def test_lists_come_back_with_their_answers_when_read_in_batches(engine: Engine) -> None:
    # More lists and users than one batch of ids (5,000 on SQLite, whose IN (...) has a
    # parameter limit): read in batches.
    n = 6_000
    rows = [_list(i, f"u{i}") for i in range(n)]
    rows += [_list(n, "u0", narrowed=True), {**_list(n + 1, "u1"), "propensities": None}]
    with session_scope(engine) as s:
        upsert_items(session=s, rows=[{"external_id": x} for x in "abcd"])
        insert_impressions(session=s, rows=rows)
        record_feedback(
            session=s,
            events=[
                FeedbackEvent("u7", "a", "rating", 4.5, recommendation_id="r7"),
                FeedbackEvent("u7", "b", "rating", 2.0, recommendation_id="r7"),
                FeedbackEvent("u5999", "c", "click", recommendation_id="r5999"),
                FeedbackEvent("u8", "d", "like", recommendation_id="r8"),  # not in the list
                FeedbackEvent("u9", "a", "rating", 5.0),  # answers no list
            ],
        )
    with session_scope(engine) as s:
        logged = load_logged(session=s, since=None, liked_threshold=4.0)
    assert len(logged.lists) == n
    assert logged.skipped["narrowed by the request"] == 1
    assert logged.skipped["no propensities"] == 1
    by_id = {x.recommendation_id: x for x in logged.lists}
    assert by_id["r7"].positive == {"a"} and by_id["r7"].rated == {"a": 4.5, "b": 2.0}
    assert by_id["r5999"].positive == {"c"} and by_id["r8"].positive == set()
    # A tiny propensity survives storage (significant digits, not decimals).
    assert by_id["r0"].propensities[2] == 1.23457e-07
    assert by_id["r0"].min_support == 5 and by_id["r0"].explored == [False, False, True]
    assert set(logged.rated_at) == {"u7", "u9"} and set(logged.rated_at["u7"]) == {"a", "b"}


def test_stored_figures_are_cut_per_list_in_one_batch() -> None:
    # The writer cuts a whole batch's figures in one numpy call; each list must get back its
    # own values, a missing list stays missing and a missing slot stays missing.
    lists: list[list[float | None] | None] = [
        [1.23456789, 2.0],
        None,
        [3.000004, None],
        [9.87654321],
    ]
    assert _shortened(lists, _decimals) == [[1.23457, 2.0], None, [3.0, None], [9.87654]]
    tiny = [[1.0, 2.345678e-9, 0.0], [0.1234564]]
    assert _shortened(tiny, _significant) == [[1.0, 2.34568e-9, 0.0], [0.123456]]


def test_a_batch_written_twice_is_stored_once_as_given(engine: Engine) -> None:
    # The writer retries a batch whose commit it could not confirm: the driver-level insert
    # must skip the lists already stored, and keep every column's value and type.
    rows = [_list(1, "u1"), {**_list(2, None), "predicted": None, "policy": None}]  # type: ignore[arg-type]
    for _ in range(2):
        with session_scope(engine) as s:
            insert_impressions(session=s, rows=rows)
    with session_scope(engine) as s:
        stored = s.execute(select(impressions).order_by(impressions.c.recommendation_id)).all()
    assert [r.recommendation_id for r in stored] == ["r1", "r2"]
    first, second = stored
    assert first.items == ["a", "b", "c"] and first.explored == [False, False, True]
    assert first.policy["explore_share"] == 0.3 and first.predicted == [4.2, 3.9, 3.1]
    assert second.user_external_id is None and second.predicted is None and second.policy is None
    served = first.served_at if first.served_at.tzinfo else first.served_at.replace(tzinfo=UTC)
    assert abs(served - rows[0]["served_at"]) < timedelta(seconds=1)
