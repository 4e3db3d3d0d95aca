"""Feedback-loop figures: pure functions over logged impressions and feedback.

Inputs are the rows `recsys.store.events.load_served` returns (`Shown` lists and `Answer`
events), so the same maths runs on a database, a test's hand-made rows or a notebook's
export. Plain Python and numpy, no pandas: every serving worker computes these for its
health checks, and pandas would be a third of a worker's memory.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from recsys.data import timestamps
from recsys.evaluation.metrics import gini
from recsys.exploration import ExplorePolicy
from recsys.health import wilson
from recsys.store.events import POSITIVE_EVENTS
from recsys.store.records import Answer, Shown


@dataclass(frozen=True)
class _Answered:
    answer: Answer
    model_version: str | None
    shown_score: float | None
    """The rating we predicted when we showed the item (None: not in the list, or a list
    logged without predictions, whose scores are ranking scores, not ratings)."""


def _answers(impressions: Sequence[Shown], feedback: Sequence[Answer]) -> list[_Answered]:
    """Feedback that answers a served list, with the version that served it."""
    by_id = {s.recommendation_id: s for s in impressions}
    out = []
    for a in feedback:
        shown = by_id.get(a.recommendation_id) if a.recommendation_id is not None else None
        if shown is None:
            continue
        score = None
        if a.item_id in shown.items and shown.predicted is not None:
            score = shown.predicted[shown.items.index(a.item_id)]
        out.append(_Answered(a, shown.model_version, score))
    return out


def is_positive(kind: str, value: float | None, liked_threshold: float) -> bool:
    if kind == "rating":
        return value is not None and value >= liked_threshold
    return kind in POSITIVE_EVENTS


def _positive_count(feedback: Iterable[Answer], liked_threshold: float) -> int:
    return sum(is_positive(a.kind, a.value, liked_threshold) for a in feedback)


def _mean(values: Sequence[float]) -> float | None:
    return float(np.mean(values)) if values else None


def _rating_gaps(answered: Iterable[_Answered]) -> list[float]:
    """Shown score minus the rating given, for rated items that were in the list."""
    return [
        x.shown_score - x.answer.value
        for x in answered
        if x.answer.kind == "rating" and x.shown_score is not None and x.answer.value is not None
    ]


def online_by_version(
    impressions: Sequence[Shown], feedback: Sequence[Answer], *, liked_threshold: float
) -> dict[str, dict[str, Any]]:
    """Per model version: lists served, feedback answering them, the positive share of that
    feedback, and the prediction bias on it (shown score minus the rating given, over rated
    items that were in the list). Compare a canary with production on these."""
    served = Counter(str(s.model_version) for s in impressions)
    answers: dict[str, list[_Answered]] = defaultdict(list)
    for x in _answers(impressions, feedback):
        answers[str(x.model_version)].append(x)
    out: dict[str, dict[str, Any]] = {}
    for version in sorted(served):
        mine = answers[version]
        gaps = _rating_gaps(mine)
        positives = _positive_count((x.answer for x in mine), liked_threshold)
        out[version] = {
            "lists_served": served[version],
            "feedback": len(mine),
            "positive_rate": positives / len(mine) if mine else None,
            "rated_shown_items": len(gaps),
            "prediction_bias": _mean(gaps),
        }
    return out


# --- exposure: what we show --------------------------------------------------------------


def exposure(impressions: Iterable[Shown]) -> Counter[str]:
    """How many times each item was shown (one count per slot of a served list)."""
    return Counter(item for s in impressions for item in s.items)


def shown_coverage(impressions: Sequence[Shown], n_catalog: int) -> float | None:
    """Share of the catalog shown at least once."""
    if n_catalog <= 0 or not impressions:
        return None
    return len(exposure(impressions)) / n_catalog


def exposure_gini(impressions: Sequence[Shown], n_catalog: int) -> float | None:
    """Gini of exposure over the whole catalog, never-shown items counted as zeros."""
    if not impressions or n_catalog <= 0:
        return None
    counts = np.fromiter(exposure(impressions).values(), dtype=np.float64)
    padded = np.concatenate([counts, np.zeros(max(0, n_catalog - len(counts)))])
    return gini(padded)


def shown_popularity(impressions: Sequence[Shown], popularity: Mapping[str, float]) -> float | None:
    """Mean popularity (training ratings) of the items shown, slot-weighted; compare it
    with the catalog's mean. A rising ratio is the loop narrowing."""
    values = [popularity.get(item, 0.0) for s in impressions for item in s.items]
    return _mean(values)


def by_explore_share(
    impressions: Sequence[Shown],
    feedback: Sequence[Answer],
    *,
    n_catalog: int,
    popularity: Mapping[str, float],
    liked_threshold: float,
) -> list[dict[str, Any]]:
    """Exposure and response per exploration share the lists were served with (lists logged
    without a policy count as 0): what exploring costs in positive answers per slot, and what
    it buys in coverage of the long tail. Coverage grows with the number of lists, so compare
    shares over similar counts."""
    groups: dict[float, list[Shown]] = defaultdict(list)
    for s in impressions:
        groups[ExplorePolicy.from_json(s.policy).share].append(s)
    positive = [a for a in feedback if is_positive(a.kind, a.value, liked_threshold)]
    out = []
    for share in sorted(groups):
        lists = groups[share]
        ids = {s.recommendation_id for s in lists}
        slots = sum(len(s.items) for s in lists)
        hits = sum(a.recommendation_id in ids for a in positive)
        out.append(
            {
                "explore_share": share,
                "lists": len(lists),
                "slots": slots,
                "coverage": shown_coverage(lists, n_catalog),
                "gini": exposure_gini(lists, n_catalog),
                "shown_popularity": shown_popularity(lists, popularity),
                "positive_per_slot": hits / slots if slots else None,
            }
        )
    return out


# --- response: what users did with it ----------------------------------------------------


def attribution_share(impressions: Sequence[Shown], feedback: Sequence[Answer]) -> float | None:
    """Share of new ratings that answer a list we served: the strength of the loop."""
    ratings = [a for a in feedback if a.kind == "rating"]
    if not ratings:
        return None
    served = {s.recommendation_id for s in impressions}
    return sum(a.recommendation_id in served for a in ratings) / len(ratings)


def click_through(impressions: Sequence[Shown], feedback: Sequence[Answer]) -> float | None:
    """Clicks answering served lists per item shown."""
    shown = sum(len(s.items) for s in impressions)
    if shown == 0:
        return None
    served = {s.recommendation_id for s in impressions}
    clicks = sum(a.kind == "click" and a.recommendation_id in served for a in feedback)
    return clicks / shown


def loop_figures(
    impressions: Sequence[Shown],
    feedback: Sequence[Answer],
    *,
    n_catalog: int,
    popularity: Mapping[str, float],
    liked_threshold: float,
) -> dict[str, float | None]:
    """Every feedback-loop figure for one slice of impressions and feedback."""
    gaps = _rating_gaps(_answers(impressions, feedback))
    positives = _positive_count(feedback, liked_threshold)
    # Every rate carries its sample size and a Wilson interval: one visitor's five events
    # must not read like an incident.
    interval = wilson(float(positives), len(feedback))
    return {
        "lists_served": float(len(impressions)),
        "feedback": float(len(feedback)),
        "feedback_ratings": float(sum(a.kind == "rating" for a in feedback)),
        "rated_shown": float(len(gaps)),
        "positive_rate_low": interval[0] if interval else None,
        "positive_rate_high": interval[1] if interval else None,
        "coverage": shown_coverage(impressions, n_catalog),
        "gini": exposure_gini(impressions, n_catalog),
        "shown_popularity": shown_popularity(impressions, popularity),
        "catalog_popularity": _mean(list(popularity.values())),
        "attribution_share": attribution_share(impressions, feedback),
        "positive_rate": positives / len(feedback) if feedback else None,
        "click_through": click_through(impressions, feedback),
        "prediction_bias": _mean(gaps),
    }


def positive_trend(
    impressions: Sequence[Shown],
    feedback: Sequence[Answer],
    *,
    version: str,
    liked_threshold: float,
) -> dict[str, float | None]:
    """`version`'s positive answers per slot shown, on the earlier and the later half of its
    lists in the window (split at their median time), each with a 95 % Wilson interval:
    whether production's own observed rate is falling, which off-policy comparisons are made
    against. A slot counts one positive answer at most."""
    mine = sorted(
        (s for s in impressions if s.model_version == version), key=lambda s: _seconds(s.served_at)
    )
    half = len(mine) // 2
    out: dict[str, float | None] = {}
    for name, lists in (("earlier", mine[:half]), ("later", mine[half:])):
        ids = {s.recommendation_id for s in lists}
        slots = sum(len(s.items) for s in lists)
        answering = (a for a in feedback if a.recommendation_id in ids)
        positives = min(slots, _positive_count(answering, liked_threshold))
        interval = wilson(float(positives), slots)
        out[f"{name}_slots"] = float(slots)
        out[f"{name}_rate"] = positives / slots if slots else None
        out[f"{name}_low"], out[f"{name}_high"] = interval if interval else (None, None)
    return out


# --- time buckets --------------------------------------------------------------------------

BUCKET_SECONDS = {"10s": 10, "min": 60, "h": 3600, "D": 86400}
"""The buckets a time series may use, in seconds (UTC, so days start at midnight UTC)."""


def _seconds(when: datetime) -> float:
    # SQLite hands back naive datetimes, stored as UTC.
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def floor_to(when: datetime, freq: str) -> datetime:
    """The start of the bucket `when` falls in."""
    width = BUCKET_SECONDS[freq]
    return datetime.fromtimestamp(_seconds(when) // width * width, UTC)


def auto_freq(times: Sequence[datetime]) -> str:
    """A bucket size giving a readable number of points for the span of the data."""
    if not times:
        return "h"
    seconds = [_seconds(t) for t in times]
    span = max(seconds) - min(seconds)
    for limit, freq in ((600, "10s"), (3 * 3600, "min"), (3 * 86400, "h")):
        if span <= limit:
            return freq
    return "D"


def by_period(
    impressions: Sequence[Shown],
    feedback: Sequence[Answer],
    *,
    n_catalog: int,
    popularity: Mapping[str, float],
    freq: str = "D",
    liked_threshold: float,
) -> list[dict[str, Any]]:
    """`loop_figures` per period ("10s", "min", "h" or "D" buckets) and model version."""
    lists: dict[tuple[datetime, str], list[Shown]] = defaultdict(list)
    for s in impressions:
        lists[(floor_to(s.served_at, freq), str(s.model_version))].append(s)
    arrived: dict[datetime, list[Answer]] = defaultdict(list)
    for a in feedback:
        arrived[floor_to(a.received_at, freq)].append(a)
    rows = []
    for (period, version), served in sorted(lists.items()):
        in_period = arrived[period]
        ids = {s.recommendation_id for s in served}
        answering = [a for a in in_period if a.recommendation_id in ids]
        figures = loop_figures(
            served,
            answering,
            n_catalog=n_catalog,
            popularity=popularity,
            liked_threshold=liked_threshold,
        )
        # Of all ratings that arrived in the period, the share answering this version's lists.
        period_ratings = sum(a.kind == "rating" for a in in_period)
        answered = sum(a.kind == "rating" for a in answering)
        figures["attribution_share"] = answered / period_ratings if period_ratings else None
        rows.append({"period": timestamps.iso(period), "model_version": version, **figures})
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


def psi_beyond_chance(
    expected: np.ndarray, actual: np.ndarray, draws: int = 200, seed: int = 0
) -> float | None:
    """`psi` of `actual` against `expected`, less the median PSI of samples of the same size
    drawn from `expected` itself, floored at 0: the shift beyond sampling noise. A small
    sample over many bins has a large PSI with no drift at all (273 ratings drawn from the
    snapshot's own popularity, 51 bins: about 0.2, which read as a red alert on a fresh
    demo); the noise falls as 1 / sample size, so a real shift keeps nearly all its PSI."""
    value = psi(expected, actual)
    if value is None:
        return None
    shares = np.asarray(expected, dtype=np.float64)
    shares = shares / shares.sum()
    n = int(np.asarray(actual).sum())
    rng = np.random.default_rng(seed)
    noise = [psi(shares, rng.multinomial(n, shares)) or 0.0 for _ in range(draws)]
    return max(0.0, value - float(np.median(noise)))


def rating_drift(before: Mapping[float, int], after: Mapping[float, int]) -> float | None:
    """PSI beyond chance of the rating distribution; arguments are counts by rating value,
    for ratings in the production model's training snapshot and for those that arrived
    since."""
    levels = sorted(set(before) | set(after))
    return psi_beyond_chance(
        np.array([before.get(v, 0) for v in levels]), np.array([after.get(v, 0) for v in levels])
    )


def popularity_drift(
    before: Mapping[str, int], after: Mapping[str, int], top: int = 50
) -> float | None:
    """PSI beyond chance of item popularity; arguments are rating counts by item. Bins: the
    `top` items of the snapshot, and one for all others."""
    total_before, total_after = sum(before.values()), sum(after.values())
    if total_before == 0 or total_after == 0:
        return None
    head = sorted(before, key=lambda item: -before[item])[:top]
    e = [before[item] for item in head]
    a = [after.get(item, 0) for item in head]
    return psi_beyond_chance(
        np.array([*e, total_before - sum(e)]), np.array([*a, total_after - sum(a)])
    )
