"""Monitoring figures against hand-computed values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recsys import monitoring
from recsys.monitoring import online_by_version


def test_online_by_version_by_hand() -> None:
    impressions = pd.DataFrame(
        {
            "recommendation_id": ["r1", "r2", "r3"],
            "model_version": ["A", "A", "B"],
            "items": [["x", "y"], ["z"], ["x"]],
            "predicted": [[4.5, 4.0], [3.0], [5.0]],
        }
    )
    feedback = pd.DataFrame(
        {
            "recommendation_id": ["r1", "r1", "r2", "r3", None],
            "item_id": ["x", "q", "z", "x", "x"],
            "kind": ["rating", "click", "rating", "skip", "rating"],
            "value": [3.5, None, 5.0, None, 1.0],
        }
    )
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


def frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    t0 = pd.Timestamp("2026-11-20T10:00:00Z")
    impressions = pd.DataFrame(
        {
            "recommendation_id": ["r1", "r2", "r3", "r4"],
            "model_version": ["A", "A", "A", "B"],
            "items": [["a", "b"], ["a", "c"], ["a", "b"], ["d", "a"]],
            "predicted": [[5.0, 4.0], [4.5, 4.0], [5.0, 4.0], [3.0, 3.0]],
            "served_at": [t0, t0, t0 + pd.Timedelta(days=1), t0 + pd.Timedelta(days=1)],
        }
    )
    feedback = pd.DataFrame(
        {
            "recommendation_id": ["r1", "r1", "r4", None],
            "item_id": ["a", "b", "d", "z"],
            "kind": ["rating", "click", "rating", "rating"],
            "value": [4.0, None, 2.0, 5.0],
            "received_at": [t0, t0, t0 + pd.Timedelta(days=1), t0 + pd.Timedelta(days=1)],
        }
    )
    return impressions, feedback


def test_exposure_figures_by_hand() -> None:
    impressions, _ = frames()
    # Shown: a x4, b x2, c x1, d x1 over a catalog of 10 items.
    assert monitoring.shown_coverage(impressions, 10) == 4 / 10
    counts = np.array([4, 2, 1, 1, 0, 0, 0, 0, 0, 0], dtype=float)
    x = np.sort(counts)
    expected = ((2 * np.arange(1, 11) - 11) * x).sum() / (10 * x.sum())
    assert monitoring.exposure_gini(impressions, 10) == pytest.approx(expected)
    popularity = pd.Series({"a": 100.0, "b": 10.0, "c": 1.0, "d": 0.0, "e": 5.0})
    assert monitoring.shown_popularity(impressions, popularity) == (400 + 20 + 1 + 0) / 8


def test_response_figures_by_hand() -> None:
    impressions, feedback = frames()
    # Ratings: r1 (answers), r4 (answers), the unattributed one: 2 of 3.
    assert monitoring.attribution_share(impressions, feedback) == 2 / 3
    # One click answering a list, eight items shown.
    assert monitoring.click_through(impressions, feedback) == 1 / 8
    figures = monitoring.loop_figures(
        impressions, feedback, n_catalog=10, popularity=pd.Series({"a": 1.0}), liked_threshold=4
    )
    assert figures["positive_rate"] == 3 / 4  # rating 4, click, rating 5 (not the 2)
    # Shown scores minus the ratings given: a 5.0 - 4.0, d 3.0 - 2.0.
    assert figures["prediction_bias"] == 1.0


def test_by_period_splits_days_and_versions() -> None:
    impressions, feedback = frames()
    rows = monitoring.by_period(
        impressions, feedback, n_catalog=10, popularity=pd.Series({"a": 1.0}), freq="D"
    )
    keys = [(r["period"][:10], r["model_version"]) for r in rows]
    assert keys == [("2026-11-20", "A"), ("2026-11-21", "A"), ("2026-11-21", "B")]
    day1, day2a, day2b = rows
    assert day1["lists_served"] == 2 and day1["attribution_share"] == 1.0
    # Day 2: two ratings arrived, one answers B's list, none answers A's.
    assert day2a["attribution_share"] == 0.0 and day2b["attribution_share"] == 0.5
    assert monitoring.auto_freq(impressions["served_at"]) == "h"


def test_drift_by_hand() -> None:
    assert monitoring.psi(np.array([50, 50]), np.array([50, 50])) == 0.0
    e, a = np.array([0.5, 0.5]), np.array([0.25, 0.75])
    expected = (0.25 - 0.5) * np.log(0.25 / 0.5) + (0.75 - 0.5) * np.log(0.75 / 0.5)
    assert monitoring.psi(e * 100, a * 100) == pytest.approx(expected)
    before = pd.Series({3.0: 50, 4.0: 50})
    after = pd.Series({4.0: 75, 3.0: 25})
    assert monitoring.rating_drift(before, after) == pytest.approx(expected)
    items_before = pd.Series({"a": 50, "b": 30, "c": 20})
    items_after = pd.Series({"a": 25, "b": 15, "c": 10})  # same shares
    assert monitoring.popularity_drift(items_before, items_after, top=2) == pytest.approx(0.0)
    assert monitoring.psi(np.array([0, 0]), np.array([1, 1])) is None
