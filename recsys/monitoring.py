"""Feedback-loop figures: pure functions over a window of the tally of served lists and
their feedback (`recsys.loop_tally`), and over plain rows (`Shown` lists and `Answer` events,
as `recsys.store.events.load_served` returns them, a test makes them by hand or a notebook
exports them), which are tallied first: one piece of maths for both. Plain Python and numpy,
no pandas: pandas would be a third of a serving worker's memory.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from recsys.data import timestamps
from recsys.evaluation.metrics import gini
from recsys.exploration import ExplorePolicy
from recsys.health import wilson
from recsys.loop_tally import (
    ListCell,
    Reply,
    ReplyCell,
    Served,
    Tally,
    Window,
    shown_score,
    width_for,
)
from recsys.store.records import Answer, Shown

# --- rows into cells -----------------------------------------------------------------------


def served_row(s: Shown) -> Served:
    """A logged list as the tally counts it."""
    share = ExplorePolicy.from_json(s.policy).share
    return Served(timestamps.unix(s.served_at), str(s.model_version), share, s.items)


def reply_rows(impressions: Sequence[Shown], feedback: Iterable[Answer]) -> list[Reply]:
    """Feedback as the tally counts it: answers to one of `impressions` carry that list."""
    by_id = {s.recommendation_id: s for s in impressions}
    out = []
    for a in feedback:
        shown = by_id.get(a.recommendation_id) if a.recommendation_id is not None else None
        at = timestamps.unix(a.received_at)
        if shown is None:
            out.append(Reply(at, a.kind, a.value))
            continue
        score = shown_score(shown.items, shown.predicted, a.item_id)
        share = ExplorePolicy.from_json(shown.policy).share
        out.append(Reply(at, a.kind, a.value, timestamps.unix(shown.served_at),
                         str(shown.model_version), share, score))  # fmt: skip
    return out


def window_of(
    impressions: Sequence[Shown], feedback: Iterable[Answer], *, liked_threshold: float
) -> Window:
    """All of `impressions` and `feedback` as one window, in 10-second buckets."""
    rows = [served_row(s) for s in impressions]
    tally = Tally.of(rows, reply_rows(impressions, feedback), liked_threshold)
    return tally.window(float("-inf"))


# --- figures of a window -------------------------------------------------------------------


@dataclass(frozen=True)
class Catalog:
    """What the figures compare exposure with: the catalog's size and each item's
    popularity (training ratings by external id) under the serving model."""

    n_items: int
    popularity: Mapping[str, float]
    _by_index: dict[int, np.ndarray] = field(default_factory=dict, compare=False, repr=False)

    def of_index(self, item_ids: Sequence[str]) -> np.ndarray:
        """Popularity by the tally's item index; kept, as a window's figures ask it of
        every period and share."""
        n = len(item_ids)  # the index only grows: its length says which one it is
        if n not in self._by_index:
            self._by_index[n] = np.array(
                [self.popularity.get(i, 0.0) for i in item_ids], dtype=np.float64
            )
        return self._by_index[n]


def _ratio(a: float, b: float) -> float | None:
    return a / b if b else None


def _figures(
    w: Window,
    catalog: Catalog,
    lists: Sequence[ListCell],
    replies: Sequence[ReplyCell],
    answering: Sequence[ReplyCell],
) -> dict[str, float | None]:
    """The loop figures of some lists, the feedback of their time (`replies`) and the part
    of it that answers those lists (`answering`)."""
    n_lists = sum(c.lists for c in lists)
    slots = sum(c.slots for c in lists)
    feedback = sum(r.n for r in replies)
    ratings = sum(r.ratings for r in replies)
    positives = sum(r.positives for r in replies)
    gap_n = sum(a.gap_n for a in answering)
    shown = w.exposure(lists)
    nonzero = shown[shown > 0].astype(np.float64)
    exposed = n_lists > 0 and catalog.n_items > 0
    padded = np.concatenate([nonzero, np.zeros(max(0, catalog.n_items - len(nonzero)))])
    # Every rate carries its sample size and a Wilson interval: one visitor's five events
    # must not read like an incident.
    interval = wilson(float(positives), feedback)
    pop = catalog.popularity
    return {
        "lists_served": float(n_lists),
        "feedback": float(feedback),
        "feedback_ratings": float(ratings),
        "rated_shown": float(gap_n),
        "positive_rate_low": interval[0] if interval else None,
        "positive_rate_high": interval[1] if interval else None,
        "coverage": len(nonzero) / catalog.n_items if exposed else None,
        "gini": gini(padded) if exposed else None,
        "shown_popularity": _ratio(float(shown @ catalog.of_index(w.item_ids)), slots),
        "catalog_popularity": float(np.mean(list(pop.values()))) if pop else None,
        "attribution_share": _ratio(sum(a.ratings for a in answering), ratings),
        "positive_rate": _ratio(positives, feedback),
        "click_through": _ratio(sum(a.clicks for a in answering), slots),
        "prediction_bias": _ratio(sum(a.gap_sum for a in answering), gap_n),
    }


def figures(w: Window, catalog: Catalog) -> dict[str, float | None]:
    """Every feedback-loop figure of the window: lists, feedback, positive rate, exposure
    (coverage and Gini over the catalog, mean popularity of what was shown), attribution
    (share of ratings answering our lists), click-through and prediction bias."""
    answering = [c for _, c in w.answering()]
    return _figures(w, catalog, [c for _, c in w.lists], [c for _, c in w.replies], answering)


def versions(w: Window) -> dict[str, dict[str, Any]]:
    """Per model version: lists served, feedback answering them, the positive share of that
    feedback, and the prediction bias on it (shown score minus the rating given, over rated
    items that were in the list). Compare a canary with production on these."""
    served: Counter[str] = Counter()
    for key, cell in w.lists:
        served[key[2]] += cell.lists
    answers: dict[str, ReplyCell] = defaultdict(ReplyCell)
    for rkey, reply in w.answering():
        answers[str(rkey[3])].merge(reply)
    out: dict[str, dict[str, Any]] = {}
    for version in sorted(served):
        mine = answers[version]
        out[version] = {
            "lists_served": served[version],
            "feedback": mine.n,
            "positive_rate": _ratio(mine.positives, mine.n),
            "rated_shown_items": mine.gap_n,
            "prediction_bias": _ratio(mine.gap_sum, mine.gap_n),
        }
    return out


def shares(w: Window, catalog: Catalog) -> list[dict[str, Any]]:
    """Exposure and response per exploration share the lists were served with (lists logged
    without a policy count as 0): what exploring costs in positive answers per slot, and what
    it buys in coverage of the long tail. Coverage grows with the number of lists, so compare
    shares over similar counts."""
    out = []
    for share in sorted({key[3] for key, _ in w.lists}):
        lists = [c for key, c in w.lists if key[3] == share]
        answering = [c for key, c in w.answering() if key[4] == share]
        f = _figures(w, catalog, lists, [], answering)
        slots = sum(c.slots for c in lists)
        out.append(
            {
                "explore_share": share,
                "lists": sum(c.lists for c in lists),
                "slots": slots,
                "coverage": f["coverage"],
                "gini": f["gini"],
                "shown_popularity": f["shown_popularity"],
                "positive_per_slot": _ratio(sum(c.positives for c in answering), slots),
            }
        )
    return out


def trend(w: Window, *, version: str) -> dict[str, float | None]:
    """`version`'s positive answers per slot shown, on the earlier and the later half of its
    lists in the window (split at the bucket where their median time falls), each with a 95 %
    Wilson interval: whether production's own observed rate is falling, which off-policy
    comparisons are made against. A slot counts one positive answer at most."""
    mine = sorted(((k[0], c) for k, c in w.lists if k[2] == version), key=lambda x: x[0])
    half = sum(c.lists for _, c in mine) / 2
    before = 0
    split = float("inf")  # the first bucket of the later half
    for start, cell in mine:
        if before + cell.lists / 2 > half:
            split = start
            break
        before += cell.lists
    halves = {"earlier": (float("-inf"), split), "later": (split, float("inf"))}
    out: dict[str, float | None] = {}
    for name, (lo, hi) in halves.items():
        slots = sum(c.slots for start, c in mine if lo <= start < hi)
        answered = sum(
            c.positives
            for k, c in w.answering()
            if k[3] == version and k[2] is not None and lo <= k[2] < hi
        )
        positives = min(slots, answered)
        interval = wilson(float(positives), slots)
        out[f"{name}_slots"] = float(slots)
        out[f"{name}_rate"] = _ratio(positives, slots)
        out[f"{name}_low"], out[f"{name}_high"] = interval if interval else (None, None)
    return out


def periods(w: Window, catalog: Catalog, *, freq: str) -> list[dict[str, Any]]:
    """`figures` per period ("10s", "min", "h" or "D" buckets) and model version: the lists
    served in the period and the feedback that arrived in it answering them. Needs buckets
    no wider than `freq` (`Window.widest`)."""
    width = BUCKET_SECONDS[freq]
    lists: dict[tuple[int, str], list[ListCell]] = defaultdict(list)
    for key, cell in w.lists:
        lists[(key[0] // width * width, key[2])].append(cell)
    ratings: Counter[int] = Counter()
    answers: dict[tuple[int, str], list[ReplyCell]] = defaultdict(list)
    for rkey, reply in w.replies:
        period = rkey[0] // width * width
        ratings[period] += reply.ratings
        if rkey[2] is not None and rkey[2] // width * width == period:
            answers[(period, str(rkey[3]))].append(reply)
    rows = []
    for (period, version), cells in sorted(lists.items()):
        mine = answers[(period, version)]
        f = _figures(w, catalog, cells, mine, mine)
        # Of all ratings that arrived in the period, the share answering this version's lists.
        f["attribution_share"] = _ratio(sum(a.ratings for a in mine), ratings[period])
        at = datetime.fromtimestamp(period, UTC)
        rows.append({"period": timestamps.iso(at), "model_version": version, **f})
    return rows


def freq_for(w: Window) -> str:
    """The bucket that charts the span of the window's lists in a readable number of points
    (`recsys.loop_tally.width_for`), by day beyond three days."""
    span = w.span()
    if span is None:
        return "h"
    if span > 3 * 86_400:
        return "D"
    return _FREQ_OF[width_for(span)]


_FREQ_OF = {10: "10s", 60: "min", 3600: "h"}


# --- the same over plain rows --------------------------------------------------------------


def loop_figures(
    impressions: Sequence[Shown],
    feedback: Sequence[Answer],
    *,
    n_catalog: int,
    popularity: Mapping[str, float],
    liked_threshold: float,
) -> dict[str, float | None]:
    """`figures` of these rows."""
    w = window_of(impressions, feedback, liked_threshold=liked_threshold)
    return figures(w, Catalog(n_catalog, popularity))


def online_by_version(
    impressions: Sequence[Shown], feedback: Sequence[Answer], *, liked_threshold: float
) -> dict[str, dict[str, Any]]:
    """`versions` of these rows."""
    return versions(window_of(impressions, feedback, liked_threshold=liked_threshold))


# --- time buckets --------------------------------------------------------------------------

BUCKET_SECONDS = {"10s": 10, "min": 60, "h": 3600, "D": 86400}
"""The buckets a time series may use, in seconds (UTC, so days start at midnight UTC)."""


def floor_to(when: datetime, freq: str) -> datetime:
    """The start of the bucket `when` falls in."""
    width = BUCKET_SECONDS[freq]
    return datetime.fromtimestamp(timestamps.unix(when) // width * width, UTC)


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
