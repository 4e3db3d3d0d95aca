"""Candidate sets: scoring only the items a list may hold ranks as scoring the whole catalog."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recsys.data.interactions import Interactions
from recsys.lists.candidates import CandidateSet
from recsys.lists.ranker import Ranker
from recsys.lists.scored import ListRequest
from recsys.model.fold_in import fold_in
from recsys.model.network import DotProductBias
from recsys.model.recommender import Recommender


@pytest.mark.parametrize(
    ("share", "by_popularity"),
    [(0.2, False), (0.2, True), (0.9, True)],
    ids=["compact", "compact-most-popular-first", "whole-catalog"],
)
def test_a_candidate_set_scores_bans_and_maps_back_like_a_masked_catalog(
    share: float, by_popularity: bool
) -> None:
    rng = np.random.default_rng(0)
    factors = rng.normal(size=(300, 8)).astype(np.float32)
    bias = rng.normal(size=300).astype(np.float32)
    eligible = rng.random(300) < share
    popularity = rng.integers(1, 50, 300) if by_popularity else None
    candidates = CandidateSet(np.asfortranarray(factors), bias, eligible, popularity)
    if by_popularity and share < 0.5:  # laid out most popular first
        laid_out = candidates.item_rows(np.arange(candidates.size))
        assert popularity is not None
        assert (np.diff(popularity[laid_out]) <= 0).all()
    assert candidates.size == eligible.sum()
    vector = rng.normal(size=8).astype(np.float32)

    logits = candidates.score(vector, 0.5)
    banned = np.array([int(np.flatnonzero(eligible)[0]), int(np.flatnonzero(~eligible)[0])])
    candidates.ban(logits, banned)  # one candidate, one row outside the set
    allowed = np.isfinite(logits)
    rows = candidates.item_rows(np.flatnonzero(allowed)).tolist()
    got = dict(zip(rows, logits[allowed].tolist(), strict=True))

    expected = factors @ vector + bias + 0.5
    keep = eligible.copy()
    keep[banned] = False
    assert sorted(got) == np.flatnonzero(keep).tolist()
    assert np.allclose([got[r] for r in sorted(got)], expected[keep], atol=1e-5)


def brute_force(
    rec: Recommender, vector: np.ndarray, offset: float, allowed: np.ndarray, k: int
) -> list[str]:
    logits = rec.item_factors @ vector + rec.item_bias + offset
    logits[~allowed] = -np.inf
    rows = np.argsort(-logits, kind="stable")[:k]
    return rec.item_vocab.ids_of(rows[np.isfinite(logits[rows])].tolist())


def test_recommendations_at_every_support_are_the_brute_force_top_k() -> None:
    # Popularity follows a power law, so that some supports keep most items (the whole
    # catalog is scored) and others few (their factors are copied out).
    rng = np.random.default_rng(3)
    n_users, n_items = 40, 500
    items = np.minimum(rng.zipf(1.4, 20_000) - 1, n_items - 1)
    users = rng.integers(0, n_users, len(items))
    data = Interactions.from_arrays(users, items, rng.uniform(1, 5, len(items)))
    net = DotProductBias(
        data.n_users, data.n_items, 8, (0.0, 5.5), init_std=1.0, generator=torch.manual_seed(4)
    )
    rec = Recommender.from_network(net, data)
    counts = rec.item_counts
    shares = {m: float((counts >= m).mean()) for m in (1, 3, 30)}
    assert shares[1] > 0.5 > shares[30], shares  # both layouts are exercised

    for m in shares:
        for user in range(0, n_users, 7):
            allowed = counts >= m
            allowed[rec.seen(user)] = False
            vector = rec.user_factors[user]
            offset = float(rec.user_bias[user]) + rec.global_bias
            uid = rec.user_vocab.ids[user]
            got = Ranker(rec).recommend(uid, ListRequest(15, min_support=m))
            assert [s.item_id for s in got] == brute_force(rec, vector, offset, allowed, 15)

        liked = rec.item_vocab.ids_of([0, 1, 2])
        fitted, fitted_bias = fold_in(rec, liked, [5.0, 4.0, 1.0])
        allowed = counts >= m
        allowed[[0, 1, 2]] = False
        got = Ranker(rec).recommend_for_ratings(
            liked, [5.0, 4.0, 1.0], ListRequest(15, min_support=m)
        )
        expected = brute_force(rec, fitted, fitted_bias + rec.global_bias, allowed, 15)
        assert [s.item_id for s in got] == expected
