"""Recommender contract, fallbacks, cold start, similar items, artifacts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from recsys.config import RatingScale
from recsys.data.interactions import Interactions
from recsys.errors import ArtifactError
from recsys.lists.ranker import Ranker
from recsys.lists.scored import ListRequest
from recsys.model import artifact
from recsys.model.network import DotProductBias
from recsys.model.recommender import Recommender
from recsys.model.similar import SimilarItems
from recsys.training.pipeline import fit
from tests.conftest import CHECKERBOARD_CONFIG, checkerboard


@pytest.fixture(scope="module")
def rec() -> Recommender:
    data, _ = checkerboard(40, 40, holdout=0.0)
    # Drop user 0's ratings of odd items so there is something to recommend to them.
    keep = ~((data.users == 0) & (data.items % 2 == 1) & (data.items < 20))
    cfg = CHECKERBOARD_CONFIG.model_copy(update={"test_fraction": 0.1, "seed": 3})
    return fit(data.subset(keep), cfg, RatingScale(min=1.0, max=5.0)).recommender


def test_recommend_excludes_seen_and_respects_k(rec: Recommender) -> None:
    row = rec.user_vocab.index("0")
    seen = set(rec.item_vocab.ids_of(rec.seen(row)))
    lists = Ranker(rec)
    out = lists.recommend("0", ListRequest(5))
    assert len(out) == 5
    assert not {s.item_id for s in out} & seen
    assert [s.score for s in out] == sorted((s.score for s in out), reverse=True)
    # user 0 is in the even group: what is left to recommend are odd items, which they dislike
    with_seen = lists.recommend("0", ListRequest(5, include_seen=True))
    assert all(int(s.item_id) % 2 == 0 for s in with_seen)
    excluded = lists.recommend("0", ListRequest(3, exclude=[out[0].item_id]))
    assert out[0].item_id not in {s.item_id for s in excluded}


def test_unknown_ids_fall_back(rec: Recommender) -> None:
    pred = rec.predict(["0", "0", "nobody", "nobody"], ["2", "nothing", "2", "nothing"])
    assert pred[0] > 4.0  # known pair: the pattern
    mean = rec.predict(["nobody"], ["nothing"])[0]
    assert 1.0 < mean < 5.0 and pred[3] == pytest.approx(mean)
    assert np.isfinite(pred).all()
    assert Ranker(rec).recommend("nobody") == []
    assert len(Ranker(rec).cold_start(ListRequest(5, min_support=1))) == 5


def test_similar_items_are_the_same_group_without_self(rec: Recommender) -> None:
    similar = SimilarItems(rec)
    sims = similar.similar("4", k=5)
    assert "4" not in {s.item_id for s in sims}
    assert all(int(s.item_id) % 2 == 0 for s in sims)
    assert similar.similar("nope") == []
    assert similar.similar("4", k=5, min_support=10_000) == []


def test_fold_in_new_user_gets_their_group() -> None:
    # The rating head alone: on a checkerboard every user rated every item, so which items
    # a user chose says nothing and the ranking head has nothing to add.
    data, _ = checkerboard(40, 40, holdout=0.0)
    cfg = CHECKERBOARD_CONFIG.model_copy(update={"seed": 3, "ranking": False})
    rec = fit(data, cfg, RatingScale(min=1.0, max=5.0)).recommender
    out = Ranker(rec).recommend_for_ratings(["1", "3", "2"], [5.0, 5.0, 1.0], ListRequest(6))
    assert {"1", "3", "2"}.isdisjoint({s.item_id for s in out})
    assert all(int(s.item_id) % 2 == 1 for s in out)


def test_artifact_round_trip_and_corruption(rec: Recommender, tmp_path: Path) -> None:
    folder, checksum = artifact.save(rec, tmp_path, "v1")
    loaded = artifact.load(folder, checksum)
    users, items = ["0", "5", "x"], ["3", "8", "1"]
    np.testing.assert_allclose(loaded.predict(users, items), rec.predict(users, items), rtol=1e-6)
    assert loaded.user_vocab == rec.user_vocab
    with pytest.raises(ArtifactError, match="already exists"):
        artifact.save(rec, tmp_path, "v1")

    tensors = folder / "model.safetensors"
    data = bytearray(tensors.read_bytes())
    data[-5] ^= 0xFF
    tensors.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="corrupted"):
        artifact.load(folder)
    tensors.write_bytes(bytes(data[: len(data) // 2]))
    with pytest.raises(ArtifactError, match="corrupted"):
        artifact.load(folder)
    (folder / "manifest.json").write_text("{not json")
    with pytest.raises(ArtifactError, match="manifest"):
        artifact.load(folder)


def test_artifact_with_a_different_registered_checksum_is_refused(
    rec: Recommender, tmp_path: Path
) -> None:
    folder, _ = artifact.save(rec, tmp_path, "v2")
    with pytest.raises(ArtifactError, match="registered"):
        artifact.load(folder, "0" * 64)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["files"] and manifest["version"] == "v2"
    assert not list(tmp_path.glob(".tmp-*"))


def test_the_model_card_reads_back_typed_and_tolerates_older_artifacts(
    rec: Recommender, tmp_path: Path
) -> None:
    folder, checksum = artifact.save(rec, tmp_path, "v3")
    loaded = artifact.load(folder, checksum)
    assert loaded.card == rec.card and loaded.card.version == "v3"
    assert loaded.card.config is not None and loaded.card.config.test_fraction == 0.1
    assert loaded.card.data is not None and loaded.card.data.ratings == rec.card.data.ratings  # type: ignore[union-attr]
    assert loaded.scale == (1.0, 5.0)  # from the card's rating scale

    # An older artifact: a setting since removed, no ranking record, no data counts.
    manifest = json.loads((folder / "manifest.json").read_text())
    info = manifest["info"]
    info["config"]["a_setting_since_removed"] = 3
    del info["ranking"], info["data"]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    old = artifact.load(folder, checksum)
    assert old.card.config == loaded.card.config
    assert old.card.ranking is None and old.card.max_timestamp is None

    info["data"] = {"ratings": "many"}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="cannot be read"):
        artifact.load(folder, checksum)


def test_data_without_database_round_trip() -> None:
    data = Interactions.from_arrays(
        np.array(["a", "b"]), np.array(["x", "y"]), np.array([1.0, 5.0])
    )
    assert data.user_vocab.ids == ["a", "b"]


def _random_model() -> tuple[Interactions, DotProductBias]:
    # 400 items, more than the candidates a ranking keeps, so that deep pages and long
    # exclusion lists must score the catalog again rather than trust a short cached list.
    rng = np.random.default_rng(1)
    users = rng.integers(0, 30, 6000)
    items = rng.integers(0, 400, 6000)
    data = Interactions.from_arrays(users, items, rng.uniform(1, 5, 6000))
    net = DotProductBias(
        data.n_users, data.n_items, 8, (0.0, 5.5), init_std=1.0, generator=torch.manual_seed(2)
    )
    return data, net


def _asks(data: Interactions) -> list[ListRequest]:
    some_items = data.item_vocab.ids_of(list(range(0, data.n_items, 7)))
    return [
        ListRequest(10),
        ListRequest(10, exclude=some_items[:5]),
        ListRequest(10, include_seen=True),
        ListRequest(10, min_support=20),
        ListRequest(95, exclude=some_items),  # 95 + 58 excluded: deeper than the cached list
        ListRequest(300),
        ListRequest(3, exclude=["not-an-item"]),
    ]


def test_cached_rankings_answer_as_a_fresh_scoring_would() -> None:
    data, net = _random_model()
    model = Recommender.from_network(net, data)
    fresh, cached = Ranker(model), Ranker(model, cache_users=10)
    assert data.n_items > fresh.RANKING_DEPTH
    asks = _asks(data)
    for user in data.user_vocab.ids_of([0, 1, 2, 0, 1]):
        for ask in asks:
            assert cached.recommend(user, ask) == fresh.recommend(user, ask), (user, ask)
    assert len(cached._rankings) == 9  # 3 users x 3 (min_support, include_seen)
    for user in data.user_vocab.ids_of(list(range(3, 12))):
        cached.recommend(user)
    assert len(cached._rankings) == 10  # the least recently served beyond the bound forgotten


@pytest.mark.parametrize("cache", [0, 50])
def test_rankings_scored_together_answer_as_one_at_a_time(cache: int) -> None:
    # As the service batches first visits: every user and ask of a batch ranked in one
    # rank_many, then each list cut from its own ranking.
    data, net = _random_model()
    model = Recommender.from_network(net, data)
    alone, together = Ranker(model), Ranker(model, cache_users=cache)
    users = data.user_vocab.ids_of(list(range(12)))
    pairs = [(user, ask) for user in users for ask in _asks(data)]
    keys = [together.ranking_key(user, ask) for user, ask in pairs]
    assert all(key is not None for key in keys)
    rankings = together.rank_many([key for key in keys if key is not None])
    assert len({(key.min_support, key.include_seen) for key in keys if key}) == 3
    for (user, ask), ranked in zip(pairs, rankings, strict=True):
        expected = alone.recommend(user, ask)
        got = together.recommend(user, ask, ranked=ranked)
        assert expected  # every ask has a list to compare
        assert [s.item_id for s in got] == [s.item_id for s in expected], (user, ask)
        assert [s.predicted_rating for s in got] == [s.predicted_rating for s in expected]
        # A matrix product rounds its sums in another order than one user's product does.
        assert [s.score for s in got] == pytest.approx(
            [s.score for s in expected], rel=1e-6, abs=1e-5
        )
    # The cache, when on, holds what was ranked together: no key is left to score.
    cached_keys = [together.ranking_key(user, ask) for user, ask in pairs]
    assert all(key is None for key in cached_keys) == bool(cache)
    assert together.ranking_key("nobody") is None
