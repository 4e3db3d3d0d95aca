"""Feedback-loop figures: pure functions over logged impressions and feedback.

Inputs are pandas frames as `recsys.store.events.load_served` returns them, so the same maths
runs on a database, a test's hand-made rows or a notebook's export.

    impressions: recommendation_id, model_version, strategy, items (list), scores (list), served_at
    feedback:    recommendation_id, item_id, kind, value, received_at
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

POSITIVE_EVENTS = ("click", "like", "purchase")


def _answers(impressions: pd.DataFrame, feedback: pd.DataFrame) -> pd.DataFrame:
    """Feedback that answers a served list, with the version that served it and, where the
    item was in the list, the score (predicted rating) it was shown with."""
    answered = feedback.dropna(subset=["recommendation_id"]).merge(
        impressions[["recommendation_id", "model_version", "items", "scores"]],
        on="recommendation_id",
        how="inner",
    )
    shown: list[float] = []
    for items, scores, item in zip(
        answered["items"], answered["scores"], answered["item_id"], strict=True
    ):
        position = items.index(item) if item in items else -1
        shown.append(float(scores[position]) if position >= 0 else np.nan)
    return answered.assign(shown_score=np.asarray(shown, dtype=float))


def is_positive(kind: pd.Series, value: pd.Series, liked_threshold: float) -> pd.Series:
    rating_liked = (kind == "rating") & (value >= liked_threshold)
    return rating_liked | kind.isin(POSITIVE_EVENTS)


def online_by_version(
    impressions: pd.DataFrame, feedback: pd.DataFrame, liked_threshold: float = 4.0
) -> dict[str, dict[str, Any]]:
    """Per model version: lists served, feedback answering them, the positive share of that
    feedback, and the prediction bias on it (shown score minus the rating given, over rated
    items that were in the list). Compare a canary with production on these."""
    out: dict[str, dict[str, Any]] = {}
    answers = _answers(impressions, feedback)
    for version, served in impressions.groupby("model_version"):
        mine = answers[answers["model_version"] == version]
        rated = mine[(mine["kind"] == "rating") & mine["shown_score"].notna()]
        positive = is_positive(mine["kind"], mine["value"], liked_threshold)
        out[str(version)] = {
            "lists_served": len(served),
            "feedback": len(mine),
            "positive_rate": float(positive.mean()) if len(mine) else None,
            "rated_shown_items": len(rated),
            "prediction_bias": float((rated["shown_score"] - rated["value"]).mean())
            if len(rated)
            else None,
        }
    return out
