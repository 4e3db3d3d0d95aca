"""Rotation (`recsys.lists.rotation`): the documented rule, lists that demote what a user
ignored, and exact propensities for rotated lists."""

from __future__ import annotations

import math

import numpy as np
import pytest

from recsys.config import RatingScale, Settings
from recsys.exploration import ExplorePolicy, Exploring
from recsys.lists.ranker import Ranker
from recsys.lists.rotation import DAY_S, Rotation
from recsys.lists.scored import ListRequest
from recsys.model.recommender import Recommender
from recsys.training.pipeline import fit
from tests.test_ranking import RANK_CONFIG, chosen_by_group


@pytest.fixture(scope="module")
def rec() -> Recommender:
    return fit(chosen_by_group(), RANK_CONFIG, RatingScale(min=1.0, max=5.0)).deployed


def test_the_rule_counts_unanswered_days_and_fades_by_half_lives() -> None:
    rotation = Rotation(after=3, half_life_days=7.0)
    now = 100 * DAY_S
    shown = {
        "twice": [now - DAY_S, now],
        "thrice": [now - 2 * DAY_S, now - DAY_S, now],
        "long ago": [now - 40 * DAY_S, now - 39 * DAY_S, now - 38 * DAY_S],
    }
    demoted = rotation.demotions(shown, now)
    assert set(demoted) == {"thrice"}  # under `after` days, or beyond the horizon: none
    expected = math.log(2) * (1 + 0.5 ** (1 / 7) + 0.5 ** (2 / 7))
    assert demoted["thrice"] == pytest.approx(expected, abs=1e-6)
    # A week later the same three days weigh half as much.
    later = rotation.demotions(shown, now + 7 * DAY_S)["thrice"]
    assert later == pytest.approx(expected / 2, abs=1e-6)
    recorded = rotation.as_json(demoted)
    assert recorded == {"after": 3, "half_life_days": 7.0, "demoted": demoted}
    assert Settings(rotation=True, rotation_after=2).rotation_policy == Rotation(2, 7.0)
    assert Settings().rotation_policy is None  # off by default


def test_an_ignored_item_leaves_the_top_and_comes_back_when_forgiven(rec: Recommender) -> None:
    ranker = Ranker(rec, cache_users=10)
    before = [s.item_id for s in ranker.recommend("0", ListRequest(5))]
    demoted = {before[0]: 3.0, before[1]: 3.0}
    after = [s.item_id for s in ranker.recommend("0", ListRequest(5, demoted=demoted))]
    # The next three move up; the two demoted fall below them.
    assert after[:3] == before[2:5]
    assert before[0] not in after[:3] and before[1] not in after[:3]
    # The cached ranking is untouched: without demotions the list is the learned one.
    assert [s.item_id for s in ranker.recommend("0", ListRequest(5))] == before
    # What the judge recomputes carries the same penalties.
    plain = ranker.candidate_logits("0", min_support=1, exclude=[])
    lowered = ranker.candidate_logits("0", min_support=1, exclude=[], demoted=demoted)
    assert plain is not None and lowered is not None
    changed = np.flatnonzero(plain[1] != lowered[1])
    assert sorted(rec.item_vocab.ids_of(plain[0][changed].tolist())) == sorted(demoted)
    assert np.allclose(plain[1][changed] - lowered[1][changed], 3.0)


def test_a_rotated_lists_propensities_match_monte_carlo_frequencies(rec: Recommender) -> None:
    """Issue 33: rotation is part of the policy: the propensities a rotated, exploring list
    logs are how often each item fills each slot, within 1 point."""
    ranker = Ranker(rec)
    top = [s.item_id for s in ranker.recommend("0", ListRequest(3))]
    demoted = {top[0]: 1.5, top[2]: 0.7}
    policy = ExplorePolicy(0.4, temperature=0.5)
    rng = np.random.default_rng(0)
    draws, k = 20_000, 5
    counts: dict[tuple[int, str], int] = {}
    logged: dict[tuple[int, str], float] = {}
    for _ in range(draws):
        ask = ListRequest(k, exploring=Exploring(policy, rng), demoted=demoted)
        for slot, s in enumerate(ranker.recommend("0", ask)):
            counts[slot, s.item_id] = counts.get((slot, s.item_id), 0) + 1
            assert logged.setdefault((slot, s.item_id), s.propensity) == s.propensity
    assert any(p < 1 for p in logged.values())
    worst = max(abs(n / draws - logged[key]) for key, n in counts.items())
    assert worst < 0.01, worst
