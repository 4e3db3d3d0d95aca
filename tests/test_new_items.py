"""Items added after training (`recsys.model.new_items`): vectors from the genres the model
learned, kept in the artifact; the users of a genre score its new items above everyone else;
an extended model lists, explains and explores them with exact propensities, and is never
saved as if trained."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from recsys.config import RatingScale
from recsys.data.interactions import Interactions
from recsys.errors import ArtifactError
from recsys.exploration import ExplorePolicy, Exploring
from recsys.lists.because import NEW, explain
from recsys.lists.ranker import Ranker
from recsys.lists.scored import ListRequest
from recsys.model import artifact
from recsys.model.new_items import addable, with_new_items
from recsys.model.recommender import Recommender
from recsys.model.similar import SimilarItems
from recsys.training.pipeline import fit
from tests.test_ranking import GROUP, RANK_CONFIG, chosen_by_group, group

NEW_ITEMS = {"new-a": ["Group0"], "new-b": ["Group1"], "new-ab": ["Group0", "Group1"]}


@pytest.fixture(scope="module")
def rec() -> Recommender:
    """Users choose within their group (even users group 0, odd group 1); the catalog names
    each item's group as its genre."""
    data = chosen_by_group()
    genres = {i: f"Group{group(i)}" for i in data.item_vocab.ids}
    with_genres: Interactions = data.with_genres(genres)
    return fit(with_genres, RANK_CONFIG, RatingScale(min=1.0, max=5.0)).deployed


@pytest.fixture(scope="module")
def extended(rec: Recommender) -> Recommender:
    return with_new_items(rec, addable(rec, NEW_ITEMS))


def test_only_unknown_items_with_a_learned_genre_are_added(rec: Recommender) -> None:
    assert rec.genre_prior is not None and set(rec.genre_prior.names) == {"Group0", "Group1"}
    catalog = {**NEW_ITEMS, "0": ["Group0"], "no-genre": [], "other": ["Western"]}
    # Known items stay learned; unknown genres give nothing; names match without case.
    assert addable(rec, {**catalog, "lower": ["group1"]}) == {**NEW_ITEMS, "lower": ["Group1"]}
    assert with_new_items(rec, {}) is rec


def test_a_new_item_is_scored_by_its_genres_audience(
    rec: Recommender, extended: Recommender
) -> None:
    assert extended.new_items == 3 and extended.is_new[-3:].all() and not extended.is_new[:-3].any()
    # Users and what the model learned are shared, not copied.
    assert extended.user_factors is rec.user_factors
    assert np.array_equal(extended.item_factors[: len(rec.item_vocab)], rec.item_factors)
    users = np.flatnonzero(extended.user_counts > 0)
    scores = extended.rank_scores(users).numpy()
    even = np.array([int(u) % 2 == 0 for u in extended.user_vocab.ids_of(users.tolist())])
    a, b = extended.item_vocab.index("new-a"), extended.item_vocab.index("new-b")
    assert scores[even, a].mean() > scores[~even, a].mean()
    assert scores[~even, b].mean() > scores[even, b].mean()
    # Predicted like the genre's films, and near them.
    assert extended.is_known_item("new-a") and not rec.is_known_item("new-a")
    near = SimilarItems(extended).similar("new-a", 5)
    learned = [group(s.item_id) for s in near if not s.item_id.startswith("new")]
    assert learned and set(learned) == {0}


def test_the_prior_travels_with_the_artifact(
    rec: Recommender, extended: Recommender, tmp_path: Path
) -> None:
    folder, checksum = artifact.save(rec, tmp_path, "v1")
    loaded = artifact.load(folder, checksum)
    assert loaded.genre_prior is not None and rec.genre_prior is not None
    assert loaded.genre_prior.names == rec.genre_prior.names
    again = with_new_items(loaded, addable(loaded, NEW_ITEMS))
    assert np.array_equal(again.item_factors, extended.item_factors)
    assert again.ranking is not None and extended.ranking is not None
    assert np.array_equal(again.ranking.item_out, extended.ranking.item_out)
    with pytest.raises(ArtifactError, match="new items"):
        artifact.save(extended, tmp_path, "v2")


def test_new_items_say_so_and_are_explored_with_exact_propensities(extended: Recommender) -> None:
    """Issue 33: an exploring list over a catalog with new items logs, for each item and
    slot, the probability with which it is drawn there (Monte Carlo, within 1 point)."""
    ranker = Ranker(extended)
    out = ranker.recommend("0", ListRequest(GROUP))
    ids = [s.item_id for s in out]
    assert "new-a" in ids and "new-b" not in ids[: len(ids) // 2]
    reasons = explain(extended, ids, [False] * len(ids), extended.liked(0))
    assert reasons[ids.index("new-a")] == NEW
    user, draws, k = "0", 20_000, 5
    policy = ExplorePolicy(0.4, temperature=0.5)
    rng = np.random.default_rng(0)
    counts: dict[tuple[int, str], int] = {}
    logged: dict[tuple[int, str], float] = {}
    for _ in range(draws):
        for slot, s in enumerate(
            ranker.recommend(user, ListRequest(k, exploring=Exploring(policy, rng)))
        ):
            counts[slot, s.item_id] = counts.get((slot, s.item_id), 0) + 1
            assert logged.setdefault((slot, s.item_id), s.propensity) == s.propensity
    assert {"new-a", "new-b", "new-ab"} <= {item for _, item in counts}
    worst = max(abs(n / draws - logged[key]) for key, n in counts.items())
    assert worst < 0.01, worst


def test_live_new_and_rotated_together_keep_exact_propensities(extended: Recommender) -> None:
    """Issue 33: a live user's list (feedback since training), over a catalog with new items,
    rotated: the logged propensities are the Monte Carlo frequencies, within 1 point."""
    ranker = Ranker(extended)
    user, draws, k = "1", 20_000, 5
    since = extended.item_vocab.ids_of([21, 3])  # one liked since training, one disliked
    top = [s.item_id for s in ranker.recommend_live(user, since, [5.0, 1.0], ListRequest(3))]
    demoted = {top[0]: 1.2, "new-b": 0.5}
    policy = ExplorePolicy(0.4, temperature=0.5)
    rng = np.random.default_rng(1)
    counts: dict[tuple[int, str], int] = {}
    logged: dict[tuple[int, str], float] = {}
    for _ in range(draws):
        ask = ListRequest(k, exploring=Exploring(policy, rng), demoted=demoted)
        for slot, s in enumerate(ranker.recommend_live(user, since, [5.0, 1.0], ask)):
            counts[slot, s.item_id] = counts.get((slot, s.item_id), 0) + 1
            assert logged.setdefault((slot, s.item_id), s.propensity) == s.propensity
    assert {"new-a", "new-b", "new-ab"} & {item for _, item in counts}
    worst = max(abs(n / draws - logged[key]) for key, n in counts.items())
    assert worst < 0.01, worst
