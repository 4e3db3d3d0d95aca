"""The health checks: green on a healthy loop, grey on too little data, red where the loop
narrows, relative to the production model's own offline figures."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from recsys.config import Settings
from recsys.health import Inputs, checks, wilson

NOW = datetime(2026, 11, 28, 12, tzinfo=UTC)
# The offline report of a production model as the registry stores it (MovieLens-like: Gini
# near 0.98 for the model too, so a fixed threshold of 0.95 could never be green).
OFFLINE = {
    "model": {"coverage": 0.07, "gini": 0.977, "mean_popularity": 60.0},
    "most_popular": {"coverage": 0.001, "gini": 0.998, "mean_popularity": 200.0},
    "_catalog": {"n_ranked_users": 600.0, "catalog_mean_popularity": 10.0},
}


def healthy(**changes: float | None) -> dict[str, float | None]:
    figures: dict[str, float | None] = {
        "lists_served": 5000.0,
        "feedback": 2000.0,
        "feedback_ratings": 800.0,
        "rated_shown": 400.0,
        "coverage": 0.075,
        "gini": 0.975,
        "shown_popularity": 65.0,
        "catalog_popularity": 10.0,
        "attribution_share": 0.3,
        "prediction_bias": 0.05,
    }
    figures.update(changes)
    return figures


def inputs(figures: dict[str, float | None], **changes: Any) -> Inputs:
    values: dict[str, Any] = {
        "figures": figures,
        "drift": {"new_ratings": 5000, "rating_psi": 0.02, "popularity_psi": 0.04},
        "offline": OFFLINE,
        "promoted_at": NOW - timedelta(hours=20),
        "newest_feedback_at": NOW - timedelta(minutes=3),
        "now": NOW,
        "trend": trend(0.18, 0.17),
    }
    values.update(changes)
    return Inputs(**values)


def trend(earlier: float, later: float, slots: float = 5000.0) -> dict[str, float | None]:
    """Production's positive answers per slot on the two halves of the window."""
    out: dict[str, float | None] = {}
    for name, rate in (("earlier", earlier), ("later", later)):
        low, high = wilson(rate * slots, slots)  # type: ignore[misc]
        out |= {f"{name}_slots": slots, f"{name}_rate": rate}
        out |= {f"{name}_low": low, f"{name}_high": high}
    return out


def by_name(x: Inputs) -> dict[str, str]:
    return {c.name: c.state for c in checks(x, Settings())}


def test_a_healthy_loop_is_green_everywhere() -> None:
    states = by_name(inputs(healthy()))
    assert len(states) == 9
    assert set(states.values()) == {"green"}, states


def test_one_visitors_request_is_too_little_data_not_an_incident() -> None:
    # One list, five events, a +3 star bias on the one rated item: grey, not red.
    tiny = healthy(
        lists_served=1.0, feedback=5.0, feedback_ratings=1.0, rated_shown=1.0,
        prediction_bias=3.0, coverage=0.001, gini=0.9999, attribution_share=1.0,
    )  # fmt: skip
    states = by_name(inputs(tiny, drift={"new_ratings": 1, "rating_psi": 2.0}))
    for name in ("prediction_bias", "coverage", "gini", "popularity_ratio", "drift_psi",
                 "attribution_share"):  # fmt: skip
        assert states[name] == "grey", (name, states)
    [bias] = [c for c in checks(inputs(tiny), Settings()) if c.name == "prediction_bias"]
    assert bias.breached is None and bias.n == 1 and "1 of the 30" in bias.why


@pytest.mark.parametrize(
    ("changes", "name", "state"),
    [
        ({"gini": 0.977 + 0.02}, "gini", "amber"),
        ({"gini": 0.977 + 0.04}, "gini", "red"),
        ({"coverage": 0.05}, "coverage", "amber"),
        ({"coverage": 0.03}, "coverage", "red"),
        # Mean popularity 6x -> 14x the catalog's; the chart is 20x: 57 % of the way.
        ({"shown_popularity": 140.0}, "popularity_ratio", "red"),
        ({"shown_popularity": 110.0}, "popularity_ratio", "amber"),
        ({"prediction_bias": -0.3}, "prediction_bias", "amber"),
        ({"prediction_bias": 0.8}, "prediction_bias", "red"),
        ({"attribution_share": 0.9}, "attribution_share", "red"),
    ],
)
def test_a_narrowing_loop_turns_its_check_amber_then_red(
    changes: dict[str, float], name: str, state: str
) -> None:
    states = by_name(inputs(healthy(**changes)))
    assert states[name] == state, states
    assert [n for n, s in states.items() if s != "green"] == [name]


def test_stale_models_and_data_and_an_empty_registry() -> None:
    old = by_name(inputs(healthy(), promoted_at=NOW - timedelta(days=8),
                         newest_feedback_at=NOW - timedelta(days=2)))  # fmt: skip
    assert old["model_age_days"] == "red" and old["data_age_hours"] == "red"
    empty = checks(inputs(healthy(), promoted_at=None, offline=None), Settings())
    states = {c.name: c.state for c in empty}
    assert states["model_age_days"] == "red"
    # Without offline figures there is nothing to judge exposure against.
    assert states["gini"] == states["coverage"] == "grey"


@pytest.mark.parametrize(
    ("earlier", "later", "state"),
    [(0.18, 0.17, "green"), (0.18, 0.166, "amber"), (0.18, 0.12, "red")],
)
def test_a_fall_in_productions_own_positive_rate_is_flagged(
    earlier: float, later: float, state: str
) -> None:
    """0.18 -> 0.12 per slot over 5,000 slots each is a fall no chance explains."""
    [check] = [c for c in checks(inputs(healthy(), trend=trend(earlier, later)), Settings())
               if c.name == "positive_trend"]  # fmt: skip
    assert check.state == state, check
    assert check.value == later and check.reference == earlier
    if state != "green":
        assert f"fell from {earlier:.3f} to {later:.3f}" in check.why
    few = checks(inputs(healthy(), trend=trend(0.18, 0.0, slots=20)), Settings())
    assert {c.name: c.state for c in few}["positive_trend"] == "grey"


def test_wilson_interval() -> None:
    low, high = wilson(5, 10)  # type: ignore[misc]
    assert low == pytest.approx(0.2366, abs=1e-4) and high == pytest.approx(0.7634, abs=1e-4)
    low, high = wilson(0, 10)  # type: ignore[misc]
    assert low == 0.0 and high == pytest.approx(0.2775, abs=1e-4)
    assert wilson(0, 0) is None
