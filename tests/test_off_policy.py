"""Off-policy estimators against a simulated world whose truth is known."""

from __future__ import annotations

import numpy as np
import pytest

from recsys.config import Settings
from recsys.exploration import ExplorePolicy
from recsys.offpolicy.estimators import (
    Interval,
    NoSupportError,
    OffPolicyEstimate,
    RewardModel,
    estimate,
    on_policy,
)
from recsys.offpolicy.judge import OffPolicyReport
from recsys.offpolicy.run import off_policy_gate
from recsys.offpolicy.simulator import World, judged

K = 10


@pytest.fixture(scope="module")
def world() -> tuple[World, np.ndarray, np.ndarray]:
    """A low-rank truth; policy A ranks by a noisy copy of it, B by a less noisy one."""
    rng = np.random.default_rng(0)
    users, items, d = 200, 600, 8
    logits = rng.normal(size=(users, d)) @ rng.normal(size=(d, items)) / np.sqrt(d) * 2
    logits += rng.normal(size=items)
    truth = World.from_scores(logits, np.full((users, items), 0.6), offset=4.0)
    return (
        truth,
        logits + rng.normal(scale=2.0, size=logits.shape),
        logits + rng.normal(scale=1.5, size=logits.shape),
    )


def test_the_interval_holds_the_true_rate_in_nine_repetitions_of_ten(
    world: tuple[World, np.ndarray, np.ndarray],
) -> None:
    truth, a, b = world
    la = truth.layouts(ExplorePolicy(0.1), a, K)
    inc_a = truth.inclusion(la)
    inc_b = truth.inclusion(truth.layouts(ExplorePolicy(0.0), b, K))
    value = truth.value(inc_b)
    assert abs(value - truth.value(inc_a)) > 0.02  # B really differs from A
    # B run on the simulator earns what its exact value says.
    ran = truth.log(truth.layouts(ExplorePolicy(0.0), b, K), 20_000, np.random.default_rng(99))
    assert ran.rewards.mean() == pytest.approx(value, abs=0.005)
    reward = np.clip(truth.truth * 1.3, 0, 1)  # a reward model off by 30 %
    hits = {"snips": 0, "dr": 0}
    for rep in range(50):
        logged = truth.log(la, 2_000, np.random.default_rng(rep))
        found = estimate(judged(logged, inc_b, inc_a, reward))
        assert found.dr is not None
        hits["snips"] += found.snips.covers(value)
        hits["dr"] += found.dr.covers(value)
    assert hits["snips"] >= 45 and hits["dr"] >= 45, hits


def test_snips_error_shrinks_as_logged_traffic_grows(
    world: tuple[World, np.ndarray, np.ndarray],
) -> None:
    truth, a, b = world
    la = truth.layouts(ExplorePolicy(0.1), a, K)
    inc_a = truth.inclusion(la)
    inc_b = truth.inclusion(truth.layouts(ExplorePolicy(0.1), b, K))
    value = truth.value(inc_b)
    errors = []
    for lists in (200, 2_000, 20_000):
        runs = [truth.log(la, lists, np.random.default_rng(100 + r)) for r in range(6)]
        errors.append(
            np.mean([abs(estimate(judged(g, inc_b, inc_a)).snips.value - value) for g in runs])
        )
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < errors[0] / 3, errors


def test_on_policy_the_estimate_is_the_observed_rate(
    world: tuple[World, np.ndarray, np.ndarray],
) -> None:
    truth, a, _ = world
    la = truth.layouts(ExplorePolicy(0.1), a, K)
    inc_a = truth.inclusion(la)
    logged = truth.log(la, 3_000, np.random.default_rng(7))
    found = estimate(judged(logged, inc_a, inc_a))
    observed = on_policy(
        np.arange(len(logged.size)).repeat(logged.size), logged.size, logged.rewards
    )
    assert found.ips.value == pytest.approx(observed.value)
    assert found.max_weight == pytest.approx(1.0) and found.effective_sample_size == pytest.approx(
        3_000
    )
    assert found.ips.covers(truth.value(inc_a))


def test_with_exploration_off_the_estimators_refuse(
    world: tuple[World, np.ndarray, np.ndarray],
) -> None:
    truth, a, b = world
    la = truth.layouts(ExplorePolicy(0.0), a, K)
    inc_b = truth.inclusion(truth.layouts(ExplorePolicy(0.0), b, K))
    logged = truth.log(la, 500, np.random.default_rng(0))
    with pytest.raises(NoSupportError, match="exploration on"):
        estimate(judged(logged, inc_b, truth.inclusion(la)))


def test_weights_above_the_clip_are_counted_and_clipped(
    world: tuple[World, np.ndarray, np.ndarray],
) -> None:
    truth, a, b = world
    la = truth.layouts(ExplorePolicy(0.1), a, K)
    inc_b = truth.inclusion(truth.layouts(ExplorePolicy(0.0), b, K))
    logged = truth.log(la, 2_000, np.random.default_rng(3))
    slots = judged(logged, inc_b, truth.inclusion(la))
    loose, tight = estimate(slots, clip=1e9), estimate(slots, clip=5.0)
    assert loose.clipped == 0 and tight.clipped > 0
    assert tight.max_weight == loose.max_weight > 5.0
    assert tight.ips.value < loose.ips.value


def test_the_reward_model_recovers_a_logistic_link() -> None:
    rng = np.random.default_rng(0)
    predicted = rng.uniform(0.5, 5.0, size=20_000)
    reward = (rng.random(20_000) < 1 / (1 + np.exp(-(-6.0 + 1.5 * predicted)))).astype(float)
    model = RewardModel.fit(predicted, reward)
    assert model.intercept == pytest.approx(-6.0, abs=0.4)
    assert model.slope == pytest.approx(1.5, abs=0.1)


def _report(dr: Interval | None, ess: float, observed: float | None) -> OffPolicyReport:
    snips = Interval(0.10, 0.08, 0.12)
    found = OffPolicyEstimate(
        lists=500, slots=5000, ips=snips, snips=snips, dr=dr, effective_sample_size=ess,
        max_weight=40.0, clipped=0, clip=1000.0, unsupported_share=0.0,
    )  # fmt: skip
    rate = {"value": observed, "low": 0.0, "high": 1.0}
    logging = {} if observed is None else {"vprod": {"lists": 500, "positive_rate": rate}}
    return OffPolicyReport(
        version="candidate", target_policy={"explore_share": 0.1, "temperature": 1.0},
        judged_on="test", lists=500, skipped={}, estimate=found, refused=None,
        mean_rating=None, reward_model=None, logging=logging,
    )  # fmt: skip


def test_the_off_policy_gate_compares_the_lower_bound_with_production() -> None:
    settings = Settings(gate_ope_min_ess=100, gate_ope_tolerance=0.01)
    good = _report(Interval(0.11, 0.095, 0.125), ess=300, observed=0.10)
    assert off_policy_gate(good, "vprod", settings)[0] == []
    bad = _report(Interval(0.09, 0.07, 0.11), ess=300, observed=0.10)
    reasons, info = off_policy_gate(bad, "vprod", settings)
    assert info["applied"] and info["estimator"] == "DR"
    assert len(reasons) == 1 and "0.0700 (DR, 95 %)" in reasons[0] and "0.1000" in reasons[0]
    # Without a reward model, SNIPS's interval judges.
    assert off_policy_gate(_report(None, 300, 0.15), "vprod", settings)[1]["estimator"] == "SNIPS"


def test_the_off_policy_gate_stands_aside_on_thin_evidence() -> None:
    settings = Settings(gate_ope_min_ess=100)
    thin = _report(Interval(0.05, 0.0, 0.1), ess=20, observed=0.10)
    reasons, info = off_policy_gate(thin, "vprod", settings)
    assert reasons == [] and not info["applied"] and "RECSYS_GATE_OPE_MIN_ESS" in info["why_not"]
    unseen = _report(Interval(0.05, 0.0, 0.1), ess=300, observed=None)
    reasons, info = off_policy_gate(unseen, "vprod", settings)
    assert reasons == [] and "production logged no lists" in info["why_not"]
