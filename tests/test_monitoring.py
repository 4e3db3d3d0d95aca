"""Monitoring figures against hand-computed values."""

from __future__ import annotations

import pandas as pd

from recsys.monitoring import online_by_version


def test_online_by_version_by_hand() -> None:
    impressions = pd.DataFrame(
        {
            "recommendation_id": ["r1", "r2", "r3"],
            "model_version": ["A", "A", "B"],
            "items": [["x", "y"], ["z"], ["x"]],
            "scores": [[4.5, 4.0], [3.0], [5.0]],
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
