"""Is the feedback loop healthy? One check per concern, green, amber or red, each with what
its figure means, why it has that colour and what to do.

Fixed thresholds could not be green: on MovieLens the Gini of exposure is 0.98-0.99 for every
model and baseline, so "Gini above 0.95" was red for ever. Figures about what we show are
therefore judged against the production model's own offline evaluation (the same figure on
its holdout lists) and the most-popular baseline's. And a figure drawn from a handful of
events says nothing: below a minimum sample a check is grey ("too little data"), whatever
its value, so one visitor's five events do not look like an incident.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Literal

from recsys.config import Settings

State = Literal["green", "amber", "red", "grey"]


@dataclass(frozen=True)
class Check:
    name: str
    """Stable id (the Prometheus label of `recsys_alert`)."""
    concern: str
    state: State
    value: float | None
    n: int
    """How many events the figure rests on."""
    min_n: int
    reference: float | None
    """What the value is judged against, where it is judged relatively."""
    meaning: str
    why: str
    action: str

    @property
    def breached(self) -> bool | None:
        """Red: an alert. None: too little data to judge."""
        return None if self.state == "grey" else self.state == "red"

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "breached": self.breached}


def wilson(successes: float, n: float, z: float = 1.96) -> tuple[float, float] | None:
    """The Wilson score interval of a rate (95 % by default): unlike the normal
    approximation it stays inside [0, 1] and is honest for small n and rates near 0 or 1."""
    if n <= 0:
        return None
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class Inputs:
    """What the checks read: the window's figures (`recsys.monitoring.figures`), drift,
    the production model's stored report, and how old the model and the newest data are."""

    figures: Mapping[str, float | None]
    drift: Mapping[str, Any]
    offline: Mapping[str, Any] | None
    """The production model's report as stored (`Report.to_json`), or None."""
    promoted_at: datetime | None
    newest_feedback_at: datetime | None
    now: datetime
    trend: Mapping[str, float | None] = field(default_factory=dict)
    """Production's positive answers per slot, earlier and later (`monitoring.trend`)."""


def _grey(name: str, concern: str, value: float | None, n: int, min_n: int, meaning: str) -> Check:
    return Check(
        name, concern, "grey", value, n, min_n, None, meaning,
        f"too little data: {n} of the {min_n} needed before this can be judged",
        "nothing yet; serve lists and collect feedback",
    )  # fmt: skip


def _graded(value: float, amber: float, red: float, higher_is_worse: bool = True) -> State:
    """Green, amber past `amber`, red past `red` (below them when lower is worse)."""
    sign = 1.0 if higher_is_worse else -1.0
    if sign * value > sign * red:
        return "red"
    return "amber" if sign * value > sign * amber else "green"


def checks(x: Inputs, s: Settings) -> list[Check]:
    """Every check, in the order the dashboard lists them."""
    f = x.figures
    model = (x.offline or {}).get("model") or {}
    popular = (x.offline or {}).get("most_popular") or {}
    catalog = (x.offline or {}).get("_catalog") or {}
    lists = int(f.get("lists_served") or 0)
    # Exposure figures need as many lists as the offline evaluation ranked, to be comparable.
    lists_needed = max(s.alert_min_sample, int(catalog.get("n_ranked_users") or 0))
    out = [
        _accuracy(f, s),
        _coverage(f, model, lists, lists_needed, s),
        _concentration(f, model, lists, lists_needed, s),
        _popularity(f, model, popular, catalog, lists, lists_needed, s),
        _drift(x.drift, s),
        _attribution(f, s),
        _trend(x.trend, s),
        _model_age(x, s),
        _data_age(x, s),
    ]
    return out


def _accuracy(f: Mapping[str, float | None], s: Settings) -> Check:
    n, bias = int(f.get("rated_shown") or 0), f.get("prediction_bias")
    meaning = "mean predicted minus given rating, on items we showed and users then rated"
    if bias is None or n < s.alert_min_sample:
        return _grey(
            "prediction_bias", "accuracy on feedback", bias, n, s.alert_min_sample, meaning
        )
    limit = s.alert_max_abs_prediction_bias
    state = _graded(abs(bias), limit / 2, limit)
    return Check(
        "prediction_bias", "accuracy on feedback", state, bias, n, s.alert_min_sample, 0.0,
        meaning,
        f"|{bias:+.2f}| stars against {limit / 2:.2f} (amber) and {limit:.2f} (red)",
        "retrain: ratings have moved away from what the model learned"
        if state != "green" else "nothing",
    )  # fmt: skip


def _coverage(
    f: Mapping[str, float | None], model: Mapping[str, Any], lists: int, needed: int, s: Settings
) -> Check:
    value, reference = f.get("coverage"), model.get("coverage")
    meaning = "share of the catalog that appeared in any list of the window"
    if value is None or reference is None or lists < needed:
        return _grey("coverage", "breadth of what we show", value, lists, needed, meaning)
    ratio = value / reference if reference else math.inf
    state = _graded(ratio, 0.8, s.alert_min_coverage_ratio, higher_is_worse=False)
    return Check(
        "coverage", "breadth of what we show", state, value, lists, needed, reference, meaning,
        f"{ratio:.2f}x the production model's offline coverage ({reference:.3f}); red below "
        f"{s.alert_min_coverage_ratio}x",
        "look for a filter, cache or cold-start path that serves the same items to everyone"
        if state != "green" else "nothing",
    )  # fmt: skip


def _concentration(
    f: Mapping[str, float | None], model: Mapping[str, Any], lists: int, needed: int, s: Settings
) -> Check:
    value, reference = f.get("gini"), model.get("gini")
    meaning = "Gini of how often each item was shown: 1 = all exposure on one item"
    if value is None or reference is None or lists < needed:
        return _grey("gini", "concentration of exposure", value, lists, needed, meaning)
    excess = value - reference
    state = _graded(excess, s.alert_max_gini_increase / 2, s.alert_max_gini_increase)
    return Check(
        "gini", "concentration of exposure", state, value, lists, needed, reference, meaning,
        f"{excess:+.3f} against the production model's offline Gini ({reference:.3f}); red "
        f"above +{s.alert_max_gini_increase}",
        "the loop is narrowing what people see: check the share of cold-start lists, and "
        "retrain" if state != "green" else "nothing",
    )  # fmt: skip


def _popularity(
    f: Mapping[str, float | None],
    model: Mapping[str, Any],
    popular: Mapping[str, Any],
    catalog: Mapping[str, Any],
    lists: int,
    needed: int,
    s: Settings,
) -> Check:
    shown, catalog_mean = f.get("shown_popularity"), f.get("catalog_popularity")
    meaning = "mean training ratings of the items shown, as a multiple of the catalog's mean"
    offline_mean = catalog.get("catalog_mean_popularity")
    ours, chart = model.get("mean_popularity"), popular.get("mean_popularity")
    value = shown / catalog_mean if shown is not None and catalog_mean else None
    if value is None or ours is None or chart is None or not offline_mean or lists < needed:
        return _grey("popularity_ratio", "popularity bias", value, lists, needed, meaning)
    # Where the window lies between the model's own offline lists (0) and a popularity
    # chart (1), both as multiples of the catalog's mean.
    low, high = ours / offline_mean, chart / offline_mean
    share = (value - low) / (high - low) if high > low else 0.0
    state = _graded(share, s.alert_max_popularity_share / 2, s.alert_max_popularity_share)
    return Check(
        "popularity_ratio", "popularity bias", state, value, lists, needed, low, meaning,
        f"{share:.0%} of the way from the model's offline lists ({low:.1f}x) to a "
        f"most-popular chart ({high:.1f}x); red above {s.alert_max_popularity_share:.0%}",
        "lists are drifting towards the chart: check cold-start traffic and retrain"
        if state != "green" else "nothing",
    )  # fmt: skip


_DISTRIBUTIONS = {
    "rating_psi": "the stars given (how many of each value)",
    "popularity_psi": "the items rated (the snapshot's 50 most rated, and all others)",
}


def _drift(drift: Mapping[str, Any], s: Settings) -> Check:
    n = int(drift.get("new_ratings") or 0)
    found = {k: float(drift[k]) for k in _DISTRIBUTIONS if drift.get(k) is not None}
    worst = max(found, key=found.__getitem__, default=None)
    value = found[worst] if worst is not None else None
    meaning = (
        "population stability index (PSI, no unit) of the stars given and of the items "
        "rated, since the serving model's snapshot, over ratings that answer none of our "
        "lists (those that do follow what we showed), less what a sample of that size "
        "shows by chance"
    )
    min_n = 5 * s.alert_min_sample
    if value is None or worst is None or n < min_n:
        return _grey("drift_psi", "drift since training", value, n, min_n, meaning)
    state = _graded(value, 0.1, s.alert_max_psi)
    return Check(
        "drift_psi", "drift since training", state, value, n, min_n, None, meaning,
        f"PSI {value:.3f} beyond chance of {_DISTRIBUTIONS[worst]} over {n:,} new ratings "
        f"not answering our lists: below 0.1 is stable, above {s.alert_max_psi} a shift",
        "retrain on the new data" if state != "green" else "nothing",
    )  # fmt: skip


def _attribution(f: Mapping[str, float | None], s: Settings) -> Check:
    n, value = int(f.get("feedback_ratings") or 0), f.get("attribution_share")
    meaning = "share of new ratings that answer one of our lists"
    if value is None or n < s.alert_min_sample:
        return _grey("attribution_share", "feedback loop strength", value, n,
                     s.alert_min_sample, meaning)  # fmt: skip
    state = _graded(value, 0.5, s.alert_max_attribution_share)
    return Check(
        "attribution_share", "feedback loop strength", state, value, n, s.alert_min_sample,
        None, meaning,
        f"{value:.0%} of ratings come from our lists; red above "
        f"{s.alert_max_attribution_share:.0%}: the next model learns mostly from its own choices",
        "explore more, or weigh organic ratings up in training" if state != "green" else "nothing",
    )  # fmt: skip


def _trend(t: Mapping[str, float | None], s: Settings) -> Check:
    name, concern = "positive_trend", "production's positive answers"
    meaning = (
        "positive answers per slot on production's lists: the later half of the window "
        "against the earlier half"
    )
    n = int(min(t.get("earlier_slots") or 0, t.get("later_slots") or 0))
    earlier, later = t.get("earlier_rate"), t.get("later_rate")
    low, high = t.get("earlier_low"), t.get("later_high")
    if earlier is None or later is None or low is None or high is None or n < s.alert_min_sample:
        return _grey(name, concern, later, n, s.alert_min_sample, meaning)
    fell = f"fell from {earlier:.3f} to {later:.3f} per slot"
    if high < low:
        state: State = "red"
        why = f"{fell}: the later 95 % interval ends ({high:.3f}) below the earlier's start"
    elif later < low:
        state, why = "amber", f"{fell}: below the earlier 95 % interval ({low:.3f} and up)"
    else:
        state, why = "green", f"{later:.3f} against {earlier:.3f} earlier: no fall beyond chance"
    action = (
        "look for what changed: drift, a new version or canary, the catalog; compare versions "
        "on the Models page, and roll back if a new version did it"
        if state != "green"
        else "nothing"
    )
    return Check(name, concern, state, later, n, s.alert_min_sample, earlier, meaning, why, action)


def _model_age(x: Inputs, s: Settings) -> Check:
    meaning = "days since the production model was promoted"
    if x.promoted_at is None:
        return Check("model_age_days", "freshness of the model", "red", None, 0, 0, None,
                     meaning, "nothing is in production", "train: recsys train")  # fmt: skip
    days = (x.now - x.promoted_at).total_seconds() / 86400
    state = _graded(days, s.alert_max_model_age_days / 2, s.alert_max_model_age_days)
    return Check(
        "model_age_days", "freshness of the model", state, days, 1, 1,
        s.alert_max_model_age_days, meaning,
        f"{days:.1f} days old; red after {s.alert_max_model_age_days:g}",
        "check that the nightly retrain runs and passes its gates (Jobs)"
        if state != "green" else "nothing",
    )  # fmt: skip


def _data_age(x: Inputs, s: Settings) -> Check:
    meaning = "hours since the newest feedback arrived"
    if x.newest_feedback_at is None:
        return Check("data_age_hours", "freshness of the data", "grey", None, 0, 1, None,
                     meaning, "no feedback has arrived yet",
                     "send feedback (POST /v1/feedback) from the client")  # fmt: skip
    hours = (x.now - x.newest_feedback_at).total_seconds() / 3600
    state = _graded(hours, s.alert_max_data_age_hours / 2, s.alert_max_data_age_hours)
    return Check(
        "data_age_hours", "freshness of the data", state, hours, 1, 1,
        s.alert_max_data_age_hours, meaning,
        f"{hours:.1f} h since the last event; red after {s.alert_max_data_age_hours:g} h",
        "check the client's feedback calls and the service's logs" if state != "green"
        else "nothing",
    )  # fmt: skip
