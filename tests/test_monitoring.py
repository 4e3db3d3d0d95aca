"""Monitoring figures against hand-computed values."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import Engine

from recsys import monitoring
from recsys.config import Settings
from recsys.data.ingest import ingest_csv
from recsys.health import Inputs, checks
from recsys.monitoring import online_by_version
from recsys.store.db import session_scope
from recsys.store.events import FeedbackEvent, rating_counts, record_feedback
from recsys.store.records import Answer, Shown

T0 = datetime(2026, 11, 20, 10, tzinfo=UTC)


def test_online_by_version_by_hand() -> None:
    impressions = [
        Shown("r1", "A", ["x", "y"], T0, [4.5, 4.0]),
        Shown("r2", "A", ["z"], T0, [3.0]),
        Shown("r3", "B", ["x"], T0, [5.0]),
    ]
    feedback = [
        Answer("r1", "x", "rating", 3.5, T0),
        Answer("r1", "q", "click", None, T0),
        Answer("r2", "z", "rating", 5.0, T0),
        Answer("r3", "x", "skip", None, T0),
        Answer(None, "x", "rating", 1.0, T0),
    ]
    got = online_by_version(impressions, feedback, liked_threshold=4.0)
    # A: r1 rating x 3.5 (shown 4.5), click on q (not shown), r2 rating z 5 (shown 3.0).
    assert got["A"]["lists_served"] == 2 and got["A"]["feedback"] == 3
    assert got["A"]["positive_rate"] == 2 / 3  # the click and the 5-star rating
    assert got["A"]["rated_shown_items"] == 2
    assert got["A"]["prediction_bias"] == ((4.5 - 3.5) + (3.0 - 5.0)) / 2
    # B: one skip; the unattributed rating counts nowhere.
    assert got["B"] == {
        "lists_served": 1, "feedback": 1, "positive_rate": 0.0,
        "rated_shown_items": 0, "prediction_bias": None,
    }  # fmt: skip


def rows() -> tuple[list[Shown], list[Answer]]:
    day = timedelta(days=1)
    impressions = [
        Shown("r1", "A", ["a", "b"], T0, [5.0, 4.0]),
        Shown("r2", "A", ["a", "c"], T0, [4.5, 4.0]),
        Shown("r3", "A", ["a", "b"], T0 + day, [5.0, 4.0]),
        Shown("r4", "B", ["d", "a"], T0 + day, [3.0, 3.0]),
    ]
    feedback = [
        Answer("r1", "a", "rating", 4.0, T0),
        Answer("r1", "b", "click", None, T0),
        Answer("r4", "d", "rating", 2.0, T0 + day),
        Answer(None, "z", "rating", 5.0, T0 + day),
    ]
    return impressions, feedback


def test_exposure_figures_by_hand() -> None:
    impressions, _ = rows()
    popularity = {"a": 100.0, "b": 10.0, "c": 1.0, "d": 0.0, "e": 5.0}
    got = monitoring.loop_figures(
        impressions, [], n_catalog=10, popularity=popularity, liked_threshold=4.0
    )
    # Shown: a x4, b x2, c x1, d x1 over a catalog of 10 items.
    assert got["coverage"] == 4 / 10
    counts = np.array([4, 2, 1, 1, 0, 0, 0, 0, 0, 0], dtype=float)
    x = np.sort(counts)
    expected = ((2 * np.arange(1, 11) - 11) * x).sum() / (10 * x.sum())
    assert got["gini"] == pytest.approx(expected)
    assert got["shown_popularity"] == (400 + 20 + 1 + 0) / 8
    assert got["catalog_popularity"] == (100 + 10 + 1 + 0 + 5) / 5
    empty = monitoring.loop_figures([], [], n_catalog=10, popularity={}, liked_threshold=4.0)
    assert empty["coverage"] is None and empty["gini"] is None
    assert empty["shown_popularity"] is None and empty["positive_rate"] is None


def test_response_figures_by_hand() -> None:
    impressions, feedback = rows()
    figures = monitoring.loop_figures(
        impressions, feedback, n_catalog=10, popularity={"a": 1.0}, liked_threshold=4
    )
    # Ratings: r1 (answers), r4 (answers), the unattributed one: 2 of 3.
    assert figures["attribution_share"] == 2 / 3
    # One click answering a list, eight items shown.
    assert figures["click_through"] == 1 / 8
    assert figures["positive_rate"] == 3 / 4  # rating 4, click, rating 5 (not the 2)
    # Shown scores minus the ratings given: a 5.0 - 4.0, d 3.0 - 2.0.
    assert figures["prediction_bias"] == 1.0
    assert figures["catalog_popularity"] == 1.0 and figures["lists_served"] == 4


def test_positive_trend_halves_productions_lists_by_time() -> None:
    lists = [Shown(f"r{n}", "A", ["x", "y"], T0 + timedelta(hours=n)) for n in range(4)]
    lists.append(Shown("other", "B", ["x"], T0))
    feedback = [
        Answer("r0", "x", "click", None, T0),
        Answer("r0", "y", "rating", 4.5, T0),
        Answer("r1", "x", "like", None, T0),
        Answer("r3", "y", "rating", 2.0, T0 + timedelta(hours=3)),  # not positive
        Answer("other", "x", "click", None, T0),  # another version's list
    ]
    got = trend(lists, feedback, "A")
    # Earlier: r0 and r1, 4 slots, 3 positive answers; later: r2 and r3, 4 slots, none.
    assert got["earlier_slots"] == got["later_slots"] == 4.0
    assert got["earlier_rate"] == 3 / 4 and got["later_rate"] == 0.0
    assert got["later_low"] == 0.0 and got["earlier_low"] is not None and got["earlier_low"] > 0
    assert trend([], [], "A")["later_rate"] is None


def trend(lists: list[Shown], feedback: list[Answer], version: str) -> dict[str, float | None]:
    return monitoring.trend(
        monitoring.window_of(lists, feedback, liked_threshold=4.0), version=version
    )


def test_by_period_splits_days_and_versions() -> None:
    impressions, feedback = rows()
    window = monitoring.window_of(impressions, feedback, liked_threshold=4.0)
    series = monitoring.periods(window, monitoring.Catalog(10, {"a": 1.0}), freq="D")
    keys = [(r["period"][:10], r["model_version"]) for r in series]
    assert keys == [("2026-11-20", "A"), ("2026-11-21", "A"), ("2026-11-21", "B")]
    day1, day2a, day2b = series
    assert day1["period"] == "2026-11-20T00:00:00Z"  # days start at midnight UTC
    assert day1["lists_served"] == 2 and day1["attribution_share"] == 1.0
    # Day 2: two ratings arrived, one answers B's list, none answers A's.
    assert day2a["attribution_share"] == 0.0 and day2b["attribution_share"] == 0.5
    assert monitoring.freq_for(window) == "h"
    close = [Shown("p", "A", ["a"], T0), Shown("q", "A", ["a"], T0 + timedelta(minutes=5))]
    assert monitoring.freq_for(monitoring.window_of(close, [], liked_threshold=4.0)) == "10s"
    # A naive time (as SQLite hands back) is UTC.
    naive = datetime(2026, 11, 20, 10, 59, 59)
    assert monitoring.floor_to(naive, "h") == T0


def test_exposure_and_response_per_exploration_share() -> None:
    impressions, feedback = rows()
    explored = [
        Shown(s.recommendation_id, s.model_version, s.items, s.served_at, s.predicted,
              {"explore_share": 0.1} if s.recommendation_id in ("r1", "r2") else None)
        for s in impressions
    ]  # fmt: skip
    window = monitoring.window_of(explored, feedback, liked_threshold=4.0)
    shares = monitoring.shares(window, monitoring.Catalog(10, {}))
    assert [r["explore_share"] for r in shares] == [0.0, 0.1]
    plain, exploring = shares
    assert exploring["lists"] == 2 and exploring["coverage"] == 3 / 10
    assert exploring["positive_per_slot"] == 2 / 4  # r1's 4-star rating and click
    assert plain["positive_per_slot"] == 0.0  # r4's 2-star rating is no positive


def test_drift_by_hand() -> None:
    assert monitoring.psi(np.array([50, 50]), np.array([50, 50])) == 0.0
    e, a = np.array([0.5, 0.5]), np.array([0.25, 0.75])
    expected = (0.25 - 0.5) * np.log(0.25 / 0.5) + (0.75 - 0.5) * np.log(0.75 / 0.5)
    assert monitoring.psi(e * 100, a * 100) == pytest.approx(expected)
    # A real shift keeps its PSI but for the little that 1,000 ratings show by chance.
    shifted = monitoring.rating_drift({3.0: 500, 4.0: 500}, {4.0: 750, 3.0: 250})
    assert shifted is not None and expected - 0.005 < shifted < expected
    items_before = {"a": 50, "b": 30, "c": 20}
    items_after = {"a": 25, "b": 15, "c": 10}  # same shares
    assert monitoring.popularity_drift(items_before, items_after, top=2) == pytest.approx(0.0)
    assert monitoring.psi(np.array([0, 0]), np.array([1, 1])) is None
    assert monitoring.popularity_drift({}, {"a": 1}) is None


def test_a_small_sample_from_the_same_distribution_is_no_drift() -> None:
    """273 ratings drawn from the snapshot's own popularity over 51 bins: a raw PSI that
    would read as a shift, nothing beyond chance."""
    rng = np.random.default_rng(3)
    before = {f"i{n}": int(10_000 / (n + 1)) for n in range(400)}
    items, counts = list(before), np.array(list(before.values()), dtype=np.float64)
    drawn = rng.choice(len(items), 273, p=counts / counts.sum())
    after = {items[i]: int(c) for i, c in zip(*np.unique(drawn, return_counts=True), strict=True)}
    head = sorted(before, key=lambda i: -before[i])[:50]
    raw = monitoring.psi(
        np.array([*(before[i] for i in head), sum(before.values()) - sum(before[i] for i in head)]),
        np.array([*(after.get(i, 0) for i in head), 273 - sum(after.get(i, 0) for i in head)]),
    )
    assert raw is not None and raw > 0.1
    beyond = monitoring.popularity_drift(before, after)
    assert beyond is not None and beyond < 0.05


def test_drift_is_judged_on_ratings_that_answer_none_of_our_lists(
    engine: Engine, tmp_path: Path
) -> None:
    """Ratings answering our lists follow what we showed: counted as drift, they turned the
    alert red minutes after a demo's retrain. Only the others are compared."""
    rows = [f"u{n},i{n % 4},4,{1_000 + n}" for n in range(12)]
    csv = tmp_path / "r.csv"
    csv.write_text("user_id,item_id,rating,timestamp\n" + "\n".join(rows) + "\n")
    ingest_csv(engine, csv)
    events = [
        FeedbackEvent("u1", "i3", "rating", 5.0, recommendation_id="list-1"),  # an answer
        FeedbackEvent("u2", "i3", "rating", 5.0, recommendation_id="list-2"),
        FeedbackEvent("u3", "i0", "rating", 2.0),  # of their own accord
    ]
    with session_scope(engine) as s:
        record_feedback(session=s, events=events)
        every = rating_counts(session=s, cutoff=2_000, after=True)
        organic = rating_counts(session=s, cutoff=2_000, after=True, organic=True)
    assert every == ({5.0: 2, 2.0: 1}, {"i3": 2, "i0": 1})
    assert organic == ({2.0: 1}, {"i0": 1})


def test_the_drift_alert_says_which_distribution_moved() -> None:
    drift = {"new_ratings": 5000, "rating_psi": 0.05, "popularity_psi": 0.4}
    [check] = [c for c in checks(_inputs(drift), Settings()) if c.name == "drift_psi"]
    assert check.state == "red" and "items rated" in check.why and "5,000" in check.why
    assert "PSI, no unit" in check.meaning and "answer none of our lists" in check.meaning
    drift = {"new_ratings": 5000, "rating_psi": 0.3, "popularity_psi": 0.01}
    [check] = [c for c in checks(_inputs(drift), Settings()) if c.name == "drift_psi"]
    assert "stars given" in check.why


def _inputs(drift: dict[str, float]) -> Inputs:
    now = datetime.now(UTC)
    return Inputs(figures={}, drift=drift, offline=None, promoted_at=now,
                  newest_feedback_at=now, now=now)  # fmt: skip
