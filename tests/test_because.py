"""Why an item is in a list (`recsys.lists.because`): the liked items it names are the user's
own, at or above the liked threshold, near the item, the nearest first, never the item
itself; an explored slot says so; with nothing liked near, "popular". The liked marks travel
with the artifact, and an older artifact without them names nothing rather than guess. And a
live user's list (moved by what they rated since training) is drawn with exact propensities."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from recsys.config import RatingScale
from recsys.data.interactions import Interactions
from recsys.exploration import ExplorePolicy, Exploring
from recsys.lists.because import AT_MOST, MIN_SIMILARITY, POPULAR, explain, liked_rows
from recsys.lists.ranker import Ranker
from recsys.lists.scored import ListRequest
from recsys.model import artifact
from recsys.model.recommender import Recommender
from recsys.training.pipeline import fit
from tests.test_ranking import RANK_CONFIG, chosen_by_group


@pytest.fixture(scope="module")
def data() -> Interactions:
    """Users choose within their group; every third choice is rated 2 (not liked)."""
    chosen = chosen_by_group()
    ratings = np.where(np.arange(len(chosen)) % 3 == 0, 2.0, 4.5).astype(np.float32)
    return Interactions.from_arrays(
        chosen.users.astype(np.int64), chosen.items.astype(np.int64), ratings
    )


@pytest.fixture(scope="module")
def rec(data: Interactions) -> Recommender:
    return fit(data, RANK_CONFIG, RatingScale(min=1.0, max=5.0)).deployed


def test_liked_rows_are_the_users_ratings_at_the_threshold(
    rec: Recommender, data: Interactions
) -> None:
    assert rec.liked_threshold == RANK_CONFIG.liked_threshold
    for user in range(data.n_users):
        mine = data.users == user
        expected = data.items[mine & (data.ratings >= rec.liked_threshold)]
        row = rec.user_vocab.index(data.user_vocab.id_of(user))
        got = rec.item_vocab.ids_of(rec.liked(row).tolist())
        assert sorted(got) == sorted(data.item_vocab.ids_of(expected.tolist()))
        assert 0 < len(got) < mine.sum()  # some liked, some not


def test_reasons_name_near_liked_items_nearest_first(rec: Recommender) -> None:
    vectors = rec.reason_vectors
    named = 0
    for user in ("0", "1", "2", "3"):
        row = rec.user_vocab.index(user)
        out = Ranker(rec).recommend(user, ListRequest(5))
        ids = [s.item_id for s in out]
        reasons = explain(rec, ids, [False] * len(ids), rec.liked(row))
        mine = set(rec.item_vocab.ids_of(rec.liked(row).tolist()))
        for item, why in zip(ids, reasons, strict=True):
            if why.reason == "popular":
                continue
            assert why.reason == "liked" and 0 < len(why.items) <= AT_MOST
            assert set(why.items) <= mine and item not in why.items
            sims = [float(vectors[rec.item_vocab.index(item)] @ vectors[
                rec.item_vocab.index(i)]) for i in why.items]  # fmt: skip
            assert sims == sorted(sims, reverse=True) and min(sims) >= MIN_SIMILARITY
            named += 1
    assert named > 0  # the groups' items are near each other: most lists name some


def test_an_explored_slot_says_so_and_nothing_liked_is_popular(rec: Recommender) -> None:
    ids = rec.item_vocab.ids_of([0, 1, 2])
    liked = rec.liked(rec.user_vocab.index("0"))
    reasons = explain(rec, ids, [True, False, False], liked)
    assert reasons[0].reason == "exploration" and reasons[0].items == ()
    assert explain(rec, ids, [False] * 3, np.empty(0, dtype=np.int32)) == [POPULAR] * 3
    assert explain(rec, [], [], liked) == []


def test_a_visitors_liked_items_are_their_high_ratings_of_known_items(rec: Recommender) -> None:
    a, b, c = rec.item_vocab.ids_of([0, 1, 2])
    rows = liked_rows(rec, [a, b, c, "never-seen"], [5.0, 3.0, 4.0, 5.0])
    assert rec.item_vocab.ids_of(rows.tolist()) == [a, c]


def test_the_liked_marks_travel_with_the_artifact(rec: Recommender, tmp_path: Path) -> None:
    folder, checksum = artifact.save(rec, tmp_path, "v1")
    loaded = artifact.load(folder, checksum)
    assert loaded.seen_liked is not None and rec.seen_liked is not None
    assert np.array_equal(loaded.seen_liked, rec.seen_liked)
    # An artifact from before the marks: no liked items, so every reason is "popular".
    older, older_checksum = artifact.save(dataclasses.replace(rec, seen_liked=None), tmp_path, "v0")
    old = artifact.load(older, older_checksum)
    assert old.seen_liked is None and len(old.liked(0)) == 0
    ids = rec.item_vocab.ids_of([0, 1])
    assert explain(old, ids, [False, False], old.liked(0)) == [POPULAR, POPULAR]


def test_marks_that_do_not_match_the_seen_items_are_refused(rec: Recommender) -> None:
    assert rec.seen_liked is not None
    with pytest.raises(ValueError, match="liked bits"):
        dataclasses.replace(rec, seen_liked=rec.seen_liked[:-1])


def test_a_live_lists_logged_propensities_match_monte_carlo_frequencies(
    rec: Recommender,
) -> None:
    """Issue 33: exploration stays exact for a live user: over many days' draws, how often
    each item fills each slot is the propensity the list logs for it, within 1 point."""
    user, draws, k = "0", 20_000, 5
    since = rec.item_vocab.ids_of([1, 3])  # one liked since training, one disliked
    policy = ExplorePolicy(0.4, temperature=0.5)
    ranker = Ranker(rec)
    rng = np.random.default_rng(0)
    counts: dict[tuple[int, str], int] = {}
    logged: dict[tuple[int, str], float] = {}
    for _ in range(draws):
        ask = ListRequest(k, exploring=Exploring(policy, rng))
        for slot, s in enumerate(ranker.recommend_live(user, since, [5.0, 1.0], ask)):
            counts[slot, s.item_id] = counts.get((slot, s.item_id), 0) + 1
            assert logged.setdefault((slot, s.item_id), s.propensity) == s.propensity
    assert any(p < 1 for p in logged.values())  # some slots explored
    worst = max(abs(n / draws - logged[key]) for key, n in counts.items())
    assert worst < 0.01, worst


def test_a_learned_users_reasons_are_remembered_for_their_next_visit(rec: Recommender) -> None:
    """The reasons of a returning user's list cost more than finding the list: the list-maker
    keeps them, and they are the reasons `explain` gives."""
    ranker = Ranker(rec, cache_users=10)
    user = "0"
    ids = [s.item_id for s in ranker.recommend(user, ListRequest(5))]
    explored = [False, True, False, False, False]
    first = ranker.reasons(user, ids, explored)
    assert first == explain(rec, ids, explored, rec.liked(rec.user_vocab.index(user)))
    assert ranker.reasons(user, ids, explored) is first
    assert first[1].reason == "exploration"
    # Another list, or none kept: computed again.
    assert ranker.reasons(user, ids[::-1], explored) is not first
    assert Ranker(rec).reasons(user, ids, explored) == first
