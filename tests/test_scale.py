"""Training costs that grow with the ratings: the sampled softmax, sizes that follow the
data, and a strong baseline on a catalog too large for EASE's full inversion."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from recsys.config import RatingScale
from recsys.data.interactions import Interactions
from recsys.evaluation.ease import Ease
from recsys.evaluation.gates import beats_baselines
from recsys.evaluation.report import BaselineCache, Metrics, Report, evaluate, format_report
from recsys.lists.ranker import Ranker
from recsys.lists.scored import ListRequest
from recsys.model.network import ChoiceNet
from recsys.train_config import (
    RANK_MAX_STEPS,
    RANK_MIN_EPOCHS,
    RANK_STEPS_PER_EPOCH,
    RATING_STEPS_PER_EPOCH,
    TrainConfig,
)
from recsys.training.choice_parts import SampledNormaliser, normaliser_for
from recsys.training.pipeline import fit
from tests.test_ranking import RANK_CONFIG, chosen_by_group, group


def test_the_sampled_normaliser_estimates_the_full_softmaxs() -> None:
    """exp of the estimate is unbiased for Z: its mean over many draws is the exact sum."""
    gen = torch.Generator().manual_seed(0)
    n_items = 300
    net = ChoiceNet(5, n_items, 8, init_std=0.5, generator=gen)
    with torch.no_grad():
        net.item_bias.normal_(0.0, 1.0, generator=gen)
    counts = np.random.default_rng(0).zipf(1.5, n_items) % 1000
    vectors = torch.randn(5, 8, generator=gen)
    with torch.no_grad():
        exact = torch.logsumexp(net(vectors), dim=1)
    sampler = SampledNormaliser(counts, 64, seed=1, device=torch.device("cpu"))
    with torch.no_grad():
        estimates = []
        for _ in range(3000):
            outputs, bias = sampler.candidates(net)
            estimates.append(torch.logsumexp(vectors @ outputs.T + bias, dim=1).exp())
        z = torch.stack(estimates).mean(0)
    # Within 5 % of Z: without the correction it would be off by a factor of ~Q.
    np.testing.assert_allclose(z.log().numpy(), exact.numpy(), atol=0.05)


def test_the_softmax_is_sampled_only_above_rank_negatives() -> None:
    data = chosen_by_group()  # 40 items
    cpu = torch.device("cpu")
    assert normaliser_for(TrainConfig(rank_negatives=10), data, 0, cpu) is None
    assert normaliser_for(TrainConfig(rank_negatives=0), data, 0, cpu) is None
    assert normaliser_for(TrainConfig(rank_negatives=9), data, 0, cpu) is not None


def test_a_sampled_softmax_head_learns_what_users_choose() -> None:
    """8 sampled negatives of 40 items: the lists still hold each user's own group."""
    cfg = RANK_CONFIG.model_copy(update={"rank_negatives": 8})
    rec = fit(chosen_by_group(), cfg, RatingScale(min=1.0, max=5.0)).recommender
    own = [
        group(s.item_id) == u % 2
        for u in range(40)
        for s in Ranker(rec).recommend(str(u), ListRequest(5))
    ]
    assert np.mean(own) == 1.0


def test_batch_sizes_follow_the_data_unless_set() -> None:
    small = TrainConfig().sized_for(90_000, 671)
    # MovieLens: as tuned.
    assert (small.batch_size, small.rank_batch_users, small.rank_epochs) == (512, 64, 40)
    large = TrainConfig().sized_for(25_000_000, 162_000)
    assert -(-25_000_000 // large.batch_size) <= RATING_STEPS_PER_EPOCH
    steps = -(-162_000 // large.rank_batch_users)
    assert steps <= RANK_STEPS_PER_EPOCH
    assert large.rank_epochs == max(RANK_MIN_EPOCHS, -(-RANK_MAX_STEPS // steps)) < 40
    chosen = TrainConfig(batch_size=1024, rank_batch_users=32, rank_epochs=30).sized_for(
        25_000_000, 162_000
    )
    assert (chosen.batch_size, chosen.rank_batch_users, chosen.rank_epochs) == (1024, 32, 30)
    # The sizes a run used travel with its config: sizing again changes nothing.
    assert large.sized_for(25_000_000, 162_000) == large


def popular_and_rest(n_users: int = 80, seed: int = 0) -> Interactions:
    """Items 0-9 are chosen by everyone's half of the group structure, items 10-59 rarely."""
    rng = np.random.default_rng(seed)
    users, items = [], []
    for u in range(n_users):
        own = np.arange(5) + 5 * (u % 2)
        rare = rng.choice(np.arange(10, 60), 2, replace=False)
        picks = [*rng.choice(own, 3, replace=False), *rare]
        users += [u] * len(picks)
        items += picks
    return Interactions.from_arrays(np.array(users), np.array(items), np.full(len(users), 4.0))


def test_ease_on_the_most_rated_items_ranks_the_rest_after_them() -> None:
    data = popular_and_rest()
    counts = data.item_counts()
    top = np.sort(np.argsort(-counts, kind="stable")[:10])
    part = Ease(data, 5.0, max_items=10)
    whole = Ease(data.subset(np.isin(data.items, top)), 5.0)
    assert f"10 most-rated of {data.n_items}" in part.description
    assert whole.description.startswith("EASE on all")
    users = np.arange(data.n_users)
    scores = part.rank_scores(users)
    # On the learned items, the scores are those of EASE on those items alone.
    np.testing.assert_allclose(scores[:, top].numpy(), whole.rank_scores(users)[:, top], atol=1e-4)
    rest = np.setdiff1d(np.arange(data.n_items), top)
    assert float(scores[:, rest].max()) < float(scores[:, top].min())


def test_the_report_says_which_strong_baseline_ran() -> None:
    data = popular_and_rest()
    model = Ease(data, 5.0)  # any scorer stands in for the model here
    model.name = "model"
    report = evaluate(model, data, data, threshold=4.0, k=5, ease_max_items=10)
    assert "10 most-rated" in report.notes["ease"] and "ease" in report
    assert "10 most-rated" in format_report(report)
    assert Report.from_json(report.to_json()) == report
    none = evaluate(model, data, data, threshold=4.0, k=5, ease_max_items=0)
    assert "ease" not in none and "RECSYS_EASE_MAX_ITEMS is 0" in none.notes["ease"]


def test_the_ndcg_gate_holds_a_model_to_the_strong_baseline() -> None:
    scorers: dict[str, Metrics] = {
        "model": {"rmse": 0.8, "ndcg@10": 0.20},
        "global_mean": {"rmse": 1.0, "ndcg@10": None},
        "biases": {"rmse": 0.9, "ndcg@10": 0.04},
        "most_popular": {"rmse": None, "ndcg@10": 0.10},
        "ease": {"rmse": None, "ndcg@10": 0.25},
    }
    report = Report(scorers, 10, 5, 2.0, notes={"ease": "EASE on all 40 items"})
    gate = beats_baselines(report, 10, 1.0, 0.9)
    assert not gate["passed"] and "ease's 0.2500" in gate["reasons"][0]
    assert beats_baselines(report, 10, 1.0, 0.8)["passed"]
    del scorers["ease"]
    alone = Report(scorers, 10, 5, 2.0, notes={"ease": "not computed: RECSYS_EASE_MAX_ITEMS is 0"})
    gate = beats_baselines(alone, 10, 1.0, 0.9)
    assert gate["passed"] and any("no strong baseline" in w for w in gate["warnings"])


def test_a_report_on_unchanged_data_reads_the_baselines_back(tmp_path: Path) -> None:
    whole = popular_and_rest()
    held = np.random.default_rng(0).random(len(whole)) < 0.2
    data, test = whole.subset(~held), whole.subset(held)
    model = Ease(data, 5.0)
    model.name = "model"
    cache = BaselineCache(tmp_path)
    first = evaluate(model, data, test, threshold=4.0, k=5, cache=cache)
    (stored,) = tmp_path.glob("*.json")
    # Mark the stored EASE row: a second report on the same data must show the mark, which
    # proves it read the file instead of fitting EASE again.
    body = json.loads(stored.read_text())
    body["ease"]["ndcg@5"] = 0.123
    stored.write_text(json.dumps(body))
    second = evaluate(model, data, test, threshold=4.0, k=5, cache=cache)
    assert second["ease"]["ndcg@5"] == 0.123
    assert second["model"] == first["model"] and second.notes == first.notes
    assert list(second.scorers) == list(first.scorers)
    # Other test data, or another k, is another entry.
    evaluate(model, data, test.subset(np.arange(len(test) // 2)), threshold=4.0, k=5, cache=cache)
    third = evaluate(model, data, test, threshold=4.0, k=3, cache=cache)
    assert len(list(tmp_path.glob("*.json"))) == 3 and third["ease"]["ndcg@3"] is not None
