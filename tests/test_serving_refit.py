"""The serving refit beside the evaluated twin's refit and evaluation (a thread of its own on
small data and the CPU) gives the model that running it alone gives, leaves torch's threads
as it found them, and a failure in it reaches the caller."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recsys.config import RatingScale
from recsys.data.interactions import Interactions
from recsys.errors import EmptyDataError
from recsys.train_config import TrainConfig
from recsys.training import deploy, ranking
from recsys.training.choice import ChoiceTrainer
from recsys.training.choice_parts import ChoiceScorer, Histories
from recsys.training.deploy import ServingRefit
from recsys.training.pipeline import fit, split
from tests.test_ranking import RANK_CONFIG, chosen_by_group

SCALE = RatingScale(min=1.0, max=5.0)


@pytest.fixture(autouse=True)
def two_threads() -> object:
    """The refit goes beside only where torch has threads to share."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def _scores(data: Interactions, beside: bool, monkeypatch: pytest.MonkeyPatch) -> torch.Tensor:
    monkeypatch.setattr(deploy, "BESIDE_MAX_RATINGS", 10**9 if beside else 0)
    fitted = fit(data, RANK_CONFIG, SCALE)
    served = fitted.served
    assert served is not None and served.ranking is not None
    assert torch.get_num_threads() == 2  # given back
    return served.rank_scores(np.arange(data.n_users))


def test_the_refit_beside_serves_the_model_of_the_refit_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = chosen_by_group()
    alone = _scores(data, beside=False, monkeypatch=monkeypatch)
    beside = _scores(data, beside=True, monkeypatch=monkeypatch)
    # One thread against two may sum floats in another order: the same model, not the bits.
    torch.testing.assert_close(beside, alone, rtol=1e-3, atol=1e-3)


def test_a_failure_beside_reaches_the_caller_and_gives_the_threads_back() -> None:
    data = chosen_by_group()
    empty = data.subset(np.arange(0))
    refit = ServingRefit(empty, 2, [2], RANK_CONFIG, SCALE)
    assert refit.beside
    with pytest.raises(EmptyDataError), refit:
        assert torch.get_num_threads() == 1  # the caller's share while the thread runs
        refit.result()
    assert torch.get_num_threads() == 2


def test_torchrun_large_data_and_one_thread_run_the_refit_in_the_caller(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = chosen_by_group()
    monkeypatch.setattr(deploy, "BESIDE_MAX_RATINGS", len(data) - 1)
    assert not ServingRefit(data, 2, [2], RANK_CONFIG, SCALE).beside
    monkeypatch.setattr(deploy, "BESIDE_MAX_RATINGS", len(data))
    assert ServingRefit(data, 2, [2], RANK_CONFIG, SCALE).beside
    torch.set_num_threads(1)
    assert not ServingRefit(data, 2, [2], RANK_CONFIG, SCALE).beside


def test_the_judges_scores_give_the_validation_nll_of_a_separate_pass(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The validation NLL summed from the judge's scores (its users) and a pass over the
    rest equals the NLL of a pass over every validation user."""
    config = TrainConfig(**{**RANK_CONFIG.model_dump(), "rank_members": 1})
    parts = split(chosen_by_group(n_users=80), config)
    net = ChoiceTrainer(config).fit(parts.inner, parts.valid, epochs=3).network
    trainer = ChoiceTrainer(config)
    inputs, targets = Histories.of(parts.inner, config), Histories.of(parts.valid, config)
    device = torch.device("cpu")
    whole = trainer._validation_loss(net, inputs, targets, device)
    # A judge of some of the validation users only: the rest come from the separate pass.
    monkeypatch.setattr(ranking, "JUDGED_USERS", 10)
    judge = ranking._Judge(parts.inner, parts.valid, config, None)
    scored = ChoiceScorer(net, inputs, device, targets)
    judge(scored)
    assert 0 < sum(len(u) for u in scored.scored) < len(np.unique(parts.valid.users))
    merged = trainer._validation_loss(net, inputs, targets, device, scored=scored)
    assert merged == pytest.approx(whole, rel=1e-5)
