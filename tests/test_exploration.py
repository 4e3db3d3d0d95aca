"""The exploration policy: exact propensities, stable lists within a day, a deterministic top."""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest

from recsys.exploration import ExplorePolicy, daily_rng


@pytest.mark.parametrize(("share", "k", "slots"), [(0.1, 10, 1), (0.2, 10, 2), (0.1, 5, 1)])
def test_the_share_of_slots_explores_at_evenly_spaced_positions(
    share: float, k: int, slots: int
) -> None:
    policy = ExplorePolicy(share)
    assert policy.slots(k) == slots
    positions = policy.positions(k)
    assert len(positions) == slots and positions[-1] == k - 1
    assert ExplorePolicy(0.1).slots(3) == 0


@pytest.mark.parametrize("share", [0.1, 0.3])
def test_logged_propensities_match_monte_carlo_frequencies(share: float) -> None:
    rng = np.random.default_rng(0)
    scores = rng.normal(size=40)
    scores[[3, 17]] = -np.inf  # rated or filtered: never shown
    policy = ExplorePolicy(share, temperature=0.7)
    layout = policy.layout(scores, 10)
    draws = 100_000
    counts = np.zeros((10, 40))
    logged = np.zeros((10, 40))
    for _ in range(draws):
        drawn = layout.draw(rng)
        counts[np.arange(10), drawn.candidates] += 1
        logged[np.arange(10), drawn.candidates] = drawn.propensities
    frequencies = counts / draws
    seen = counts > 0
    # Within one percentage point everywhere; the logged value is the exact one.
    assert np.abs(frequencies[seen] - logged[seen]).max() < 0.01
    inclusion = layout.inclusion(40)
    assert np.abs(frequencies.sum(axis=0) - inclusion).max() < 0.01
    assert inclusion.sum() == pytest.approx(10)
    assert inclusion[[3, 17]].sum() == 0
    # Every allowed candidate can be shown: what off-policy estimates need.
    assert (inclusion[np.isfinite(scores)] > 0).all()


def test_the_deterministic_slots_hold_the_best_items_in_order() -> None:
    scores = np.arange(30, dtype=float)
    drawn = ExplorePolicy(0.2).layout(scores, 10).draw(np.random.default_rng(1))
    fixed = drawn.candidates[~drawn.explored]
    assert fixed.tolist() == [29, 28, 27, 26, 25, 24, 23, 22]
    assert (drawn.propensities[~drawn.explored] == 1).all()
    assert not set(drawn.candidates[drawn.explored]) & set(fixed.tolist())
    plain = ExplorePolicy(0.0).layout(scores, 10).draw(np.random.default_rng(1))
    assert plain.candidates.tolist() == list(range(29, 19, -1)) and not plain.explored.any()


def test_a_user_sees_the_same_list_all_day_and_another_the_next() -> None:
    layout = ExplorePolicy(0.3).layout(np.random.default_rng(2).normal(size=500), 10)
    today, tomorrow = date(2026, 11, 28), date(2026, 11, 29)
    first = layout.draw(daily_rng("42", today)).candidates
    assert (layout.draw(daily_rng("42", today)).candidates == first).all()
    others = [
        layout.draw(daily_rng("42", tomorrow)).candidates,
        layout.draw(daily_rng("7", today)).candidates,
    ]
    assert any((other != first).any() for other in others)


def test_fewer_candidates_than_slots_shows_them_all_without_exploring() -> None:
    scores = np.array([0.5, -np.inf, 2.0])
    drawn = ExplorePolicy(0.5).layout(scores, 10).draw(np.random.default_rng(0))
    assert drawn.candidates.tolist() == [2, 0] and not drawn.explored.any()
