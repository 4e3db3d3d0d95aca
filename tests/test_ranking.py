"""The ranking head: it learns which items users choose, lists follow it, visitors are folded
into it, and EASE and the NDCG gate judge it."""

from __future__ import annotations

import dataclasses
import gc
import weakref
from pathlib import Path

import numpy as np
import pytest
import torch

from recsys.config import RatingScale, Settings, train_config
from recsys.data.interactions import Interactions
from recsys.data.split import holdout_mask
from recsys.evaluation.ease import Ease
from recsys.evaluation.gates import beats_baselines
from recsys.evaluation.report import Metrics, Report
from recsys.lists.ranker import Ranker
from recsys.lists.scored import ListRequest
from recsys.model import artifact
from recsys.model.card import TwinLink
from recsys.model.network import ChoiceNet
from recsys.model.recommender import Recommender
from recsys.train_config import TrainConfig
from recsys.training.choice import ChoiceTrainer
from recsys.training.choice_parts import ChoiceScorer, Histories, InputDropout, WeightAverage
from recsys.training.pipeline import fit
from recsys.training.ranking import refit_heads
from service.catalog import Catalog, GenreFilter

GROUP = 20  # items 0..19 belong to group 0, 20..39 to group 1

RANK_CONFIG = TrainConfig(
    n_factors=4,
    epochs=20,
    batch_size=64,
    lr=0.05,
    init_std=0.1,
    rank_factors=8,
    rank_lr=0.05,
    rank_members=2,  # an ensemble, so that its path is what these tests hold
)


def chosen_by_group(n_users: int = 60, seed: int = 0) -> Interactions:
    """Users choose half of their group's items at random and rate every choice 4: the
    ratings carry no taste at all, only the choices do."""
    rng = np.random.default_rng(seed)
    users, items = [], []
    for u in range(n_users):
        own = np.arange(GROUP) + GROUP * (u % 2)
        picked = rng.choice(own, GROUP // 2, replace=False)
        users += [u] * len(picked)
        items += picked.tolist()
    return Interactions.from_arrays(np.array(users), np.array(items), np.full(len(users), 4.0))


def group(item_id: str) -> int:
    return int(item_id) // GROUP


@pytest.fixture(scope="module")
def ranked() -> Recommender:
    data = chosen_by_group()
    return fit(data, RANK_CONFIG, RatingScale(min=1.0, max=5.0)).recommender


def test_lists_follow_what_users_choose(ranked: Recommender) -> None:
    assert ranked.ranking is not None
    for user in ("0", "1", "2", "3"):
        out = Ranker(ranked).recommend(user, ListRequest(5))
        assert len(out) == 5
        assert all(group(s.item_id) == int(user) % 2 for s in out), (user, out)


def test_without_the_ranking_head_the_same_data_ranks_no_better_than_chance() -> None:
    # The counterfactual the head exists for: every rating is 4, so predicted ratings
    # cannot tell a user's group from the other.
    data = chosen_by_group()
    cfg = RANK_CONFIG.model_copy(update={"ranking": False})
    plain = fit(data, cfg, RatingScale(min=1.0, max=5.0)).recommender
    own = [
        group(s.item_id) == u % 2
        for u in range(0, 40)
        for s in Ranker(plain).recommend(str(u), ListRequest(5))
    ]
    assert np.mean(own) < 0.8


def test_visitor_is_folded_into_the_ranking(ranked: Recommender) -> None:
    for g in (0, 1):
        rated = [str(GROUP * g + i) for i in (0, 3, 7)]
        out = Ranker(ranked).recommend_for_ratings(rated, [4.0] * 3, ListRequest(5, min_support=1))
        assert not {s.item_id for s in out} & set(rated)
        assert all(group(s.item_id) == g for s in out), (g, out)


def test_predicted_ratings_stay_on_the_scale(ranked: Recommender) -> None:
    lo, hi = ranked.scale
    assert (lo, hi) == (1.0, 5.0)
    # The sigmoid's range is wider than the scale; answers are clipped to it.
    assert ranked.y_range[0] < lo and ranked.y_range[1] > hi
    pairs = [(str(u), str(i)) for u in range(10) for i in range(40)]
    pred = ranked.predict([p[0] for p in pairs], [p[1] for p in pairs])
    assert pred.min() >= lo and pred.max() <= hi
    lists = Ranker(ranked)
    for s in lists.recommend("0", ListRequest(10)) + lists.cold_start(
        ListRequest(5, min_support=1)
    ):
        assert s.predicted_rating is not None and lo <= s.predicted_rating <= hi


def test_ranking_head_survives_the_artifact(ranked: Recommender, tmp_path: Path) -> None:
    path, checksum = artifact.save(ranked, tmp_path, "v-rank")
    loaded = artifact.load(path, checksum)
    assert loaded.ranking is not None and loaded.ranking.blend == ranked.ranking.blend  # type: ignore[union-attr]
    assert loaded.ranking.members == ranked.ranking.members == 2  # type: ignore[union-attr]
    for user in ("0", "1"):
        assert Ranker(loaded).recommend(user, ListRequest(5)) == Ranker(ranked).recommend(
            user, ListRequest(5)
        )


def test_training_records_the_ranking_learning_curve(ranked: Recommender) -> None:
    record = ranked.card.ranking
    assert record is not None and record.best_epoch is not None
    assert record.history and 1 <= record.best_epoch <= len(record.history)
    assert all(h["val_ndcg"] is not None for h in record.history)
    assert record.blend in (0.0, 0.25, 0.5, 1.0)
    # Each head of the ensemble kept its own epoch; the served arrays average them all.
    assert len(record.kept_epochs) == RANK_CONFIG.rank_members == 2
    assert ranked.ranking is not None and ranked.ranking.members == 2
    assert ranked.ranking.n_factors == 2 * RANK_CONFIG.rank_factors


@pytest.mark.parametrize("n_users", [12, 90])
def test_ease_matches_the_closed_form_by_users_and_by_items(n_users: int) -> None:
    data = chosen_by_group(n_users, seed=4)
    lam = 5.0
    x = np.zeros((data.n_users, data.n_items))
    x[data.users, data.items] = 1.0
    p = np.linalg.inv(x.T @ x + lam * np.eye(data.n_items))
    b = -p / np.diag(p)
    np.fill_diagonal(b, 0.0)
    users = np.arange(data.n_users)
    chosen = Ease(data, lam)
    by_items = Ease(data, lam, item_weights=True)
    for ease in (chosen, by_items):
        assert ease.description == f"EASE on all {data.n_items} items"
        np.testing.assert_allclose(ease.rank_scores(users).numpy(), x @ b, atol=1e-4)
    np.testing.assert_allclose(by_items.weights.numpy(), b, atol=1e-4)
    if data.n_users < data.n_items:
        # Fewer users than items: the users' Gram matrix (Woodbury), which has no B.
        with pytest.raises(ValueError, match="item_weights=True"):
            chosen.weights  # noqa: B018  # the property raises
    else:
        np.testing.assert_allclose(chosen.weights.numpy(), b, atol=1e-4)


def test_ease_learns_every_item_where_the_users_side_fits_its_budget() -> None:
    data = chosen_by_group(12, seed=4)  # 12 users, 2 x GROUP items
    # max_items 10: the items' Gram matrix (items^2 cells) is over its 100 cells, 12 users'
    # scores of every item are not...
    assert data.n_items > 10 and 12 * data.n_items > 100
    assert "10 most-rated" in Ease(data, 5.0, max_items=10).description
    # ...and with 25 (625 cells) they are: EASE learns every item, by users, though the
    # items are more than 25.
    assert data.n_items > 25 and 12 * data.n_items <= 625
    assert Ease(data, 5.0, max_items=25).description == f"EASE on all {data.n_items} items"


def test_gate_refuses_a_ranking_below_most_popular() -> None:
    row: Metrics = {"rmse": 0.8, "ndcg@10": 0.05}
    scorers: dict[str, Metrics] = {
        "model": row,
        "global_mean": {"rmse": 1.0, "ndcg@10": None},
        "biases": {"rmse": 0.9, "ndcg@10": 0.04},
        "most_popular": {"rmse": None, "ndcg@10": 0.10},
    }
    report = Report(scorers, n_test=10, n_ranked_users=5, catalog_mean_popularity=2.0)
    gate = beats_baselines(report, 10)
    assert not gate["passed"] and "most_popular" in gate["reasons"][0]
    assert beats_baselines(report, 10, min_ndcg_vs_popular=0.5)["passed"]
    # What the registry stores reads back as the same report.
    assert Report.from_json(report.to_json()) == report


def test_train_config_takes_what_settings_decide() -> None:
    settings = Settings(liked_threshold=3.0, ease_max_items=7, gate_min_ndcg_vs_popular=0.8)
    config = train_config(settings, epochs=3, seed=None)
    assert (config.liked_threshold, config.ease_max_items, config.min_ndcg_vs_popular) == (
        3.0,
        7,
        0.8,
    )
    assert config.epochs == 3 and config.seed == TrainConfig().seed


def test_user_time_split_holds_out_each_users_latest() -> None:
    users = np.repeat(np.arange(3), 10)
    items = np.tile(np.arange(10), 3)
    stamps = np.random.default_rng(0).permutation(30)
    data = Interactions.from_arrays(users, items, np.full(30, 3.0), timestamps=stamps)
    held = holdout_mask(data, 0.2, method="user_time")
    for u in range(3):
        mine = data.users == u
        assert held[mine].sum() == 2
        assert data.timestamps[mine & held].min() > data.timestamps[mine & ~held].max()  # type: ignore[index]


def test_served_model_learns_every_rating_and_keeps_its_evaluated_twin(tmp_path: Path) -> None:
    data = chosen_by_group()
    fitted = fit(data, RANK_CONFIG, RatingScale(min=1.0, max=5.0))
    twin, served = fitted.recommender, fitted.deployed
    assert served is not twin and fitted.report is not None
    # The twin never saw the test holdout; the served model learned all of it.
    assert twin.item_counts.sum() < len(data) - len(fitted.test) + 1
    assert served.item_counts.sum() == len(data)
    assert served.card.served is not None and served.card.served.refit_on_all
    assert served.card.served.rating_epochs == twin.card.best_epoch
    assert served.ranking is not None and served.ranking.blend == twin.ranking.blend  # type: ignore[union-attr]
    # Both refits train the heads chosen on validation for the same epochs, fine-tuning them
    # where the kept epochs are long enough.
    ranking = twin.card.ranking
    assert ranking is not None
    warm = all(RANK_CONFIG.rank_refit_epochs <= 0.4 * e for e in ranking.kept_epochs)
    assert ranking.refit_warm == warm
    refits = [RANK_CONFIG.rank_refit_epochs] * len(ranking.kept_epochs)
    assert ranking.refit_epochs == (refits if warm else ranking.kept_epochs)
    assert ranking.refit_epochs == served.card.served.ranking_epochs
    assert served.card.metrics == fitted.report.to_json()
    # The spread of NDCG over users is kept beside its mean, for the box plots.
    spread = fitted.report.spread["model"]
    assert spread["p05"] <= spread["q1"] <= spread["median"] <= spread["q3"] <= spread["p95"]
    assert spread["mean"] == pytest.approx(fitted.report.model["ndcg@10"])
    # Saved as recsys.training.runs.record_fitted does: the twin beside the served model.
    twin_path, twin_sum = artifact.save(twin, tmp_path, "v1" + artifact.TWIN_SUFFIX)
    served.card.evaluated_twin = TwinLink(artifact=twin_path.name, checksum=twin_sum)
    path, checksum = artifact.save(served, tmp_path, "v1")
    loaded = artifact.load(path, checksum)
    again = artifact.load_twin(path, loaded)
    assert again.item_counts.sum() == twin.item_counts.sum()
    assert artifact.load_twin(twin_path, again) is again  # a twin has no twin of its own


def test_a_filter_looks_past_the_cached_best_items(
    ranked: Recommender, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A cache of 3 items, all of the user's own group: a filter to the other group must rank
    # the allowed items themselves, not return the few cached ones that pass.
    monkeypatch.setattr(Ranker, "RANKING_DEPTH", 3)
    user = "33"  # ranked by no other test of this module
    other = np.array([group(i) != 1 for i in ranked.item_vocab.ids])
    out = Ranker(ranked).recommend(user, ListRequest(5, allowed=other))
    assert len(out) == 5 and all(group(s.item_id) == 0 for s in out), out
    scores = [s.score for s in out]
    assert scores == sorted(scores, reverse=True)
    # Without the filter the same user still gets their own group, from the cache.
    assert all(group(s.item_id) == 1 for s in Ranker(ranked).recommend(user, ListRequest(3)))


def test_the_visitor_fold_in_reaches_the_optimum_of_its_objective(ranked: Recommender) -> None:
    # The gradient of the fold-in's objective (mean NLL of the liked items under the softmax
    # over the candidates, plus the prior's L2 per liked item), computed here in float64,
    # vanishes at the vector found.
    head = ranked.ranking
    assert head is not None
    candidates = np.arange(len(head.item_out))
    prior = ranked.typical_choice
    rows, ratings = np.array([0, 3, 7, 25]), np.array([5.0, 4.5, 4.0, 1.0])
    vector = head.fold_in(rows, ratings, candidates, prior=prior).astype(np.float64)
    out = head.item_out.astype(np.float64)
    logits = out @ vector + head.item_bias
    p = np.exp(logits - logits.max())
    p /= p.sum()
    liked = rows[ratings >= head.liked_threshold]
    l2 = head.fold_in_l2 / len(liked)
    gradient = p @ out - out[liked].mean(0) + 2 * l2 * (vector - prior)
    assert np.abs(gradient).max() < 1e-4 * max(1.0, np.abs(out).max())
    assert np.abs(vector - prior).max() > 0.01  # the films moved the visitor off the prior


def test_a_visitor_is_pulled_less_towards_the_typical_user_the_more_they_liked(
    ranked: Recommender,
) -> None:
    # With no film the visitor is the typical user; liked films move them away from it, and
    # the prior weighs against the number of liked films: the same films counted five times
    # move the visitor further.
    head = ranked.ranking
    assert head is not None
    candidates = np.arange(len(head.item_out))
    prior = ranked.typical_choice
    empty = head.fold_in(np.array([], dtype=np.int64), np.array([]), candidates, prior=prior)
    assert np.allclose(empty, prior)
    few = head.fold_in(np.array([0, 3]), np.array([5.0, 5.0]), candidates, prior=prior)
    many = head.fold_in(np.array([0, 3] * 5), np.array([5.0] * 10), candidates, prior=prior)
    assert np.linalg.norm(many - prior) > np.linalg.norm(few - prior) > 0


def test_genre_masks_let_go_of_models_no_longer_served(ranked: Recommender) -> None:
    # The service swaps models on reload; the catalog's mask cache must not keep old ones
    # (each holds every vector of a model) alive.
    catalog = Catalog(by_genre={"odd": frozenset({"1", "3"})}, names={"odd": "Odd"})
    wanted = GenreFilter.of(["Odd"], [])
    assert wanted is not None
    models = [dataclasses.replace(ranked) for _ in range(3)]
    first = weakref.ref(models[0])
    masks = [catalog.allowed(m, wanted) for m in models]
    assert all(m.sum() == 2 for m in masks)
    assert catalog.allowed(models[2], wanted) is masks[2]  # cached for the current model
    del models[0], masks
    gc.collect()
    assert first() is None


@pytest.mark.parametrize("blend", [0.0, 0.5])
def test_lists_follow_the_blended_score_whatever_the_blend(
    ranked: Recommender, blend: float
) -> None:
    # A blend of 0 leaves the rating half out of the product; the lists must not change for it.
    assert ranked.ranking is not None
    rec = dataclasses.replace(ranked, ranking=dataclasses.replace(ranked.ranking, blend=blend))
    head = rec.ranking
    assert head is not None
    for user in ("0", "1", "5"):
        row = rec.user_vocab.index(user)
        choice = head.user_vectors[row] @ head.item_out.T + head.item_bias
        rating = rec.user_factors[row] @ rec.item_factors.T + rec.item_bias
        expected = choice + blend * (rating + rec.user_bias[row] + rec.global_bias)
        expected[rec.seen(row)] = -np.inf
        best = [rec.item_vocab.ids[i] for i in np.argsort(-expected, kind="stable")[:5]]
        listed = Ranker(rec).recommend(user, ListRequest(5))
        assert [s.item_id for s in listed] == best
        assert np.allclose([s.score for s in listed], np.sort(expected)[::-1][:5], atol=1e-4)
    assert len(Ranker(rec).recommend_for_ratings(["0", "3"], [5.0, 4.0], ListRequest(5))) == 5
    assert len(Ranker(rec).cold_start(ListRequest(5))) == 5


def test_an_ensemble_scores_the_mean_of_its_heads() -> None:
    gen = torch.Generator().manual_seed(3)
    heads = [ChoiceNet(5, 7, 3, init_std=0.5, generator=gen) for _ in range(2)]
    with torch.no_grad():
        for head in heads:
            head.user_offset.normal_(generator=gen)
            head.item_bias.normal_(generator=gen)
    mean = ChoiceNet.mean_of(heads)
    assert mean.members == 2 and mean.item_out.shape == (7, 6)
    users, history = torch.tensor([0, 4]), torch.tensor([1, 2, 6])
    offsets, weights = torch.tensor([0, 2]), torch.tensor([1.0, 0.5, 0.7])

    def scores(net: ChoiceNet) -> torch.Tensor:
        out: torch.Tensor = net(net.user_vectors(net.user_offset[users], history, offsets, weights))
        return out

    with torch.no_grad():
        expected = (scores(heads[0]) + scores(heads[1])) / 2
        assert torch.allclose(scores(mean), expected, atol=1e-6)
        assert not torch.allclose(scores(heads[0]), expected, atol=1e-3)  # the heads differ


def test_the_kept_network_is_a_moving_average_of_the_trained_weights() -> None:
    net = ChoiceNet(3, 4, 2)
    assert WeightAverage(net, 0.0, steps_per_epoch=5).network is net  # off: the net itself
    # A decay of 0.25 an epoch over 2 steps: each step keeps 0.5 of the average.
    average = WeightAverage(net, 0.25, steps_per_epoch=2)
    start = net.item_out.detach().clone()
    with torch.no_grad():
        net.item_out.add_(1.0)
    average.update()
    assert torch.allclose(average.network.item_out, start + 0.5)
    average.update()
    assert torch.allclose(average.network.item_out, start + 0.75)
    assert torch.allclose(net.item_out, start + 1.0)  # the trained weights are untouched


def test_input_dropout_leaves_entries_out_and_keeps_the_expected_vector() -> None:
    weights = np.linspace(0.1, 1.0, 10_000).astype(np.float32)
    assert InputDropout(0.0, seed=0)(weights) is None  # off: the inputs' own weights
    dropped = InputDropout(0.75, seed=0)(weights)
    assert dropped is not None and dropped.dtype == np.float32
    left_out = dropped == 0
    assert 0.72 < left_out.mean() < 0.78
    # What is kept is scaled by 1 / (1 - share): a vector's expectation is the full history's.
    assert np.allclose(dropped[~left_out], weights[~left_out] * 4)
    assert abs(dropped.sum() / weights.sum() - 1) < 0.05


def test_a_head_trained_with_input_dropout_still_learns_the_choices() -> None:
    cfg = RANK_CONFIG.model_copy(update={"rank_input_dropout": 0.5, "rank_members": 1})
    rec = fit(chosen_by_group(), cfg, RatingScale(min=1.0, max=5.0)).recommender
    for user in ("0", "1", "2", "3"):
        out = Ranker(rec).recommend(user, ListRequest(5))
        assert all(group(s.item_id) == int(user) % 2 for s in out), (user, out)


def test_a_refit_fine_tunes_the_chosen_heads_unless_told_to_start_afresh() -> None:
    data = chosen_by_group()
    nothing = data.subset(np.arange(0))
    chosen = ChoiceTrainer(RANK_CONFIG).fit_ensemble(data, nothing, epochs=[30, 25])
    start = chosen.network
    one = RANK_CONFIG.model_copy(update={"rank_refit_epochs": 1})
    warm, epochs = refit_heads(chosen, data, one)
    assert epochs == [1, 1]
    # Fine-tuning adds at most 0.4 of a head's kept epochs (0.4 x 25 = 10): asked for more,
    # each refit trains a fresh head for its kept epoch, the chosen heads again.
    ten = RANK_CONFIG.model_copy(update={"rank_refit_epochs": 10})
    assert refit_heads(chosen, data, ten)[1] == [10, 10]
    many = RANK_CONFIG.model_copy(update={"rank_refit_epochs": 11})
    again, again_epochs = refit_heads(chosen, data, many)
    assert again_epochs == [30, 25]
    fresh = ChoiceTrainer(RANK_CONFIG).fit_ensemble(data, nothing, epochs=[1, 1]).network

    def moved(net: ChoiceNet) -> float:
        with torch.no_grad():
            return float((net.item_out - start.item_out).norm() / start.item_out.norm())

    # One epoch at a third of the learning rate leaves the chosen heads nearly where they were;
    # a fresh head is elsewhere entirely.
    assert moved(warm) < 0.2 < 0.5 < moved(fresh)
    # Users' unrated items of their own group still lead their lists.
    assert _own_group_share(warm, data) == _own_group_share(start, data) == 1.0
    afresh = RANK_CONFIG.model_copy(update={"rank_refit_epochs": 0})
    cold, cold_epochs = refit_heads(chosen, data, afresh)
    # Afresh, from the members' seeds, on the same ratings for the kept epochs: the chosen
    # heads again.
    assert cold_epochs == [30, 25] and moved(cold) < 1e-4 and moved(again) < 1e-4


def _own_group_share(net: ChoiceNet, data: Interactions) -> float:
    """Of each user's 5 best-scored unrated items, the share in the user's own group."""
    users = np.arange(data.n_users)
    scores = ChoiceScorer(net, Histories.of(data, RANK_CONFIG), torch.device("cpu"))
    table = scores.rank_scores(users)
    table[torch.from_numpy(data.users), torch.from_numpy(data.items)] = -torch.inf
    top = torch.topk(table, 5, dim=1).indices.numpy()
    groups = np.array([group(i) for i in data.item_vocab.ids])
    own = np.array([int(u) % 2 for u in data.user_vocab.ids])
    return float((groups[top] == own[:, None]).mean())
