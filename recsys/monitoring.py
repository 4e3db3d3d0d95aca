"""Feedback-loop figures: pure functions over logged impressions and feedback.

Inputs are pandas frames as `recsys.store.events.load_served` returns them, so the same maths
runs on a database, a test's hand-made rows or a notebook's export.

    impressions: recommendation_id, model_version, strategy, items (list), scores (list), served_at,
                 policy (dict with explore_share; optional)
    feedback:    recommendation_id, item_id, kind, value, received_at
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from recsys.data import timestamps
from recsys.evaluation.metrics import gini
from recsys.health import wilson

POSITIVE_EVENTS = ("click", "like", "purchase")


def _answers(impressions: pd.DataFrame, feedback: pd.DataFrame) -> pd.DataFrame:
    """Feedback that answers a served list, with the version that served it and, where the
    item was in the list, the rating we predicted when we showed it (`shown_score`; NaN for
    lists logged without predictions: their scores are ranking scores, not ratings)."""
    answered = feedback.dropna(subset=["recommendation_id"]).merge(
        impressions[["recommendation_id", "model_version", "items", "predicted"]],
        on="recommendation_id",
        how="inner",
    )
    shown: list[float] = []
    for items, predicted, item in zip(
        answered["items"], answered["predicted"], answered["item_id"], strict=True
    ):
        position = items.index(item) if item in items else -1
        value = predicted[position] if position >= 0 and isinstance(predicted, list) else None
        shown.append(np.nan if value is None else float(value))
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


# --- exposure: what we show --------------------------------------------------------------


def exposure(impressions: pd.DataFrame) -> pd.Series:
    """How many times each item was shown (one count per slot of a served list)."""
    slots = impressions["items"].explode().dropna()
    return slots.value_counts()


def shown_coverage(impressions: pd.DataFrame, n_catalog: int) -> float | None:
    """Share of the catalog shown at least once."""
    if n_catalog <= 0 or impressions.empty:
        return None
    return float(len(exposure(impressions)) / n_catalog)


def exposure_gini(impressions: pd.DataFrame, n_catalog: int) -> float | None:
    """Gini of exposure over the whole catalog, never-shown items counted as zeros."""
    counts = exposure(impressions).to_numpy(dtype=np.float64)
    if impressions.empty or n_catalog <= 0:
        return None
    padded = np.concatenate([counts, np.zeros(max(0, n_catalog - len(counts)))])
    return gini(padded)


def shown_popularity(impressions: pd.DataFrame, popularity: pd.Series) -> float | None:
    """Mean popularity (training ratings) of the items shown, slot-weighted; compare it
    with `popularity.mean()`, the catalog's. A rising ratio is the loop narrowing."""
    slots = impressions["items"].explode().dropna()
    if slots.empty:
        return None
    return float(popularity.reindex(slots.to_numpy()).fillna(0).mean())


def by_explore_share(
    impressions: pd.DataFrame,
    feedback: pd.DataFrame,
    *,
    n_catalog: int,
    popularity: pd.Series,
    liked_threshold: float = 4.0,
) -> list[dict[str, Any]]:
    """Exposure and response per exploration share the lists were served with (lists logged
    without a policy count as 0): what exploring costs in positive answers per slot, and what
    it buys in coverage of the long tail. Coverage grows with the number of lists, so compare
    shares over similar counts."""
    if impressions.empty:
        return []
    policy = impressions.get("policy", pd.Series(None, index=impressions.index))
    share = policy.map(lambda p: float(p.get("explore_share", 0.0)) if isinstance(p, dict) else 0.0)
    answered = feedback.dropna(subset=["recommendation_id"])
    positive = answered[is_positive(answered["kind"], answered["value"], liked_threshold)]
    out = []
    for value, lists in impressions.groupby(share):
        slots = int(lists["items"].map(len).sum())
        hits = positive[positive["recommendation_id"].isin(set(lists["recommendation_id"]))]
        out.append(
            {
                "explore_share": float(value),
                "lists": len(lists),
                "slots": slots,
                "coverage": shown_coverage(lists, n_catalog),
                "gini": exposure_gini(lists, n_catalog),
                "shown_popularity": shown_popularity(lists, popularity),
                "positive_per_slot": len(hits) / slots if slots else None,
            }
        )
    return out


# --- response: what users did with it ----------------------------------------------------


def attribution_share(impressions: pd.DataFrame, feedback: pd.DataFrame) -> float | None:
    """Share of new ratings that answer a list we served: the strength of the loop."""
    ratings = feedback[feedback["kind"] == "rating"]
    if ratings.empty:
        return None
    served = set(impressions["recommendation_id"])
    return float(ratings["recommendation_id"].isin(served).mean())


def click_through(impressions: pd.DataFrame, feedback: pd.DataFrame) -> float | None:
    """Clicks answering served lists per item shown."""
    shown = int(impressions["items"].map(len).sum()) if not impressions.empty else 0
    if shown == 0:
        return None
    clicks = feedback[(feedback["kind"] == "click")]
    clicks = clicks[clicks["recommendation_id"].isin(set(impressions["recommendation_id"]))]
    return float(len(clicks) / shown)


def loop_figures(
    impressions: pd.DataFrame,
    feedback: pd.DataFrame,
    *,
    n_catalog: int,
    popularity: pd.Series,
    liked_threshold: float = 4.0,
) -> dict[str, float | None]:
    """Every feedback-loop figure for one slice of impressions and feedback."""
    answers = _answers(impressions, feedback)
    rated = answers[(answers["kind"] == "rating") & answers["shown_score"].notna()]
    positive = is_positive(feedback["kind"], feedback["value"], liked_threshold)
    # Every rate carries its sample size and a Wilson interval: one visitor's five events
    # must not read like an incident.
    interval = wilson(float(positive.sum()), len(feedback))
    return {
        "lists_served": float(len(impressions)),
        "feedback": float(len(feedback)),
        "feedback_ratings": float((feedback["kind"] == "rating").sum()),
        "rated_shown": float(len(rated)),
        "positive_rate_low": interval[0] if interval else None,
        "positive_rate_high": interval[1] if interval else None,
        "coverage": shown_coverage(impressions, n_catalog),
        "gini": exposure_gini(impressions, n_catalog),
        "shown_popularity": shown_popularity(impressions, popularity),
        "catalog_popularity": float(popularity.mean()) if len(popularity) else None,
        "attribution_share": attribution_share(impressions, feedback),
        "positive_rate": float(positive.mean()) if len(feedback) else None,
        "click_through": click_through(impressions, feedback),
        "prediction_bias": float((rated["shown_score"] - rated["value"]).mean())
        if len(rated)
        else None,
    }


def auto_freq(served_at: pd.Series) -> str:
    """A bucket size giving a readable number of points for the span of the data."""
    if served_at.empty:
        return "h"
    times = pd.to_datetime(served_at, utc=True)
    span = (times.max() - times.min()).total_seconds()
    for limit, freq in ((600, "10s"), (3 * 3600, "min"), (3 * 86400, "h")):
        if span <= limit:
            return freq
    return "D"


def by_period(
    impressions: pd.DataFrame,
    feedback: pd.DataFrame,
    *,
    n_catalog: int,
    popularity: pd.Series,
    freq: str = "D",
    liked_threshold: float = 4.0,
) -> list[dict[str, Any]]:
    """`loop_figures` per period (pandas frequency: "D" days, "h" hours) and model version."""
    if impressions.empty:
        return []
    imp = impressions.assign(
        period=pd.to_datetime(impressions["served_at"], utc=True).dt.floor(freq)
    )
    fb = feedback.assign(
        period=pd.to_datetime(feedback["received_at"], utc=True).dt.floor(freq)
        if len(feedback)
        else pd.Series(dtype="datetime64[ns, UTC]")
    )
    rows = []
    for (period, version), served in imp.groupby(["period", "model_version"]):
        in_period = fb[fb["period"] == period]
        answering = in_period[in_period["recommendation_id"].isin(set(served["recommendation_id"]))]
        figures = loop_figures(
            served,
            answering,
            n_catalog=n_catalog,
            popularity=popularity,
            liked_threshold=liked_threshold,
        )
        # Of all ratings that arrived in the period, the share answering this version's lists.
        period_ratings = int((in_period["kind"] == "rating").sum())
        answered = int((answering["kind"] == "rating").sum())
        figures["attribution_share"] = answered / period_ratings if period_ratings else None
        rows.append(
            {
                "period": timestamps.iso(pd.Timestamp(str(period))),
                "model_version": version,
                **figures,
            }
        )
    return rows


# --- drift --------------------------------------------------------------------------------


def psi(expected: np.ndarray, actual: np.ndarray, eps: float = 1e-4) -> float | None:
    """Population stability index between two histograms over the same bins:
    sum((a - e) * ln(a / e)) over bin shares. Rule of thumb: < 0.1 stable, > 0.25 shifted."""
    e = np.asarray(expected, dtype=np.float64)
    a = np.asarray(actual, dtype=np.float64)
    if e.sum() == 0 or a.sum() == 0:
        return None
    e = np.clip(e / e.sum(), eps, None)
    a = np.clip(a / a.sum(), eps, None)
    return float(((a - e) * np.log(a / e)).sum())


def rating_drift(before: pd.Series, after: pd.Series) -> float | None:
    """PSI of the rating distribution; arguments are counts by rating value, for ratings in
    the production model's training snapshot and for those that arrived since."""
    levels = before.index.union(after.index)
    return psi(
        before.reindex(levels, fill_value=0).to_numpy(),
        after.reindex(levels, fill_value=0).to_numpy(),
    )


def popularity_drift(before: pd.Series, after: pd.Series, top: int = 50) -> float | None:
    """PSI of item popularity; arguments are rating counts by item. Bins: the `top` items of
    the snapshot, and one for all others."""
    if before.sum() == 0 or after.sum() == 0:
        return None
    head = before.sort_values(ascending=False).index[:top]
    e = before.reindex(head, fill_value=0)
    a = after.reindex(head, fill_value=0)
    return psi(
        np.append(e.to_numpy(), before.sum() - e.sum()),
        np.append(a.to_numpy(), after.sum() - a.sum()),
    )
