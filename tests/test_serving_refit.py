"""The work beside the caller's steps (threads of their own on small data and the CPU: the
rating head, its selection and refits, beside the ranking head's selection; the serving
refit beside the twin's ranking refit) give the model that running them in turn gives, leave
torch's threads as they found them, and a failure in one reaches the caller."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from recsys.config import RatingScale
from recsys.data.interactions import Interactions
from recsys.errors import EmptyDataError
from recsys.train_config import TrainConfig
from recsys.training import beside as side_work
from recsys.training import ranking
from recsys.training.assess import Fitted
from recsys.training.beside import Beside, trains_beside
from recsys.training.choice import ChoiceTrainer
from recsys.training.choice_parts import ChoiceScorer, Histories
from recsys.training.pipeline import fit
from recsys.training.splits import split
from tests.test_ranking import RANK_CONFIG, chosen_by_group

SCALE = RatingScale(min=1.0, max=5.0)


@pytest.fixture(autouse=True)
def two_threads() -> object:
    """The refit goes beside only where torch has threads to share."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def _fitted(data: Interactions, beside: bool, monkeypatch: pytest.MonkeyPatch) -> Fitted:
    monkeypatch.setattr(side_work, "BESIDE_MAX_RATINGS", 10**9 if beside else 0)
    fitted = fit(data, RANK_CONFIG, SCALE)
    assert fitted.served is not None and fitted.served.ranking is not None
    assert torch.get_num_threads() == 2  # given back
    return fitted


def test_the_work_beside_gives_the_models_and_report_of_the_work_in_turn(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = chosen_by_group()
    users = np.arange(data.n_users)
    alone = _fitted(data, beside=False, monkeypatch=monkeypatch)
    beside = _fitted(data, beside=True, monkeypatch=monkeypatch)
    for a, b in ((alone.served, beside.served), (alone.recommender, beside.recommender)):
        assert a is not None and b is not None
        # One thread against two may sum floats in another order: the same model, not the
        # bits.
        torch.testing.assert_close(b.rank_scores(users), a.rank_scores(users), rtol=1e-3, atol=1e-3)
    assert alone.report is not None and beside.report is not None
    for name in ("global_mean", "biases", "most_popular", "ease"):  # computed beside
        for metric, value in alone.report[name].items():
            other = beside.report[name][metric]
            assert other == value if value is None else other == pytest.approx(value, rel=1e-4)
    assert alone.result.best_epoch == beside.result.best_epoch


def test_a_failure_beside_reaches_the_caller_and_gives_the_threads_back() -> None:
    data = chosen_by_group()
    empty = data.subset(np.arange(0))
    trainer = ChoiceTrainer(RANK_CONFIG)
    refit = Beside(
        lambda: trainer.fit_ensemble(empty, empty, epochs=[2]),
        beside=trains_beside(len(empty), RANK_CONFIG, None),
        name="refit",
        share_threads=True,
    )
    assert refit.beside
    with pytest.raises(EmptyDataError), refit:
        assert torch.get_num_threads() == 1  # the caller's share while the thread runs
        refit.result()
    assert torch.get_num_threads() == 2


def test_torchrun_large_data_and_one_thread_train_in_the_caller(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    n = len(chosen_by_group())
    monkeypatch.setattr(side_work, "BESIDE_MAX_RATINGS", n - 1)
    assert not trains_beside(n, RANK_CONFIG, None)
    monkeypatch.setattr(side_work, "BESIDE_MAX_RATINGS", n)
    assert trains_beside(n, RANK_CONFIG, None)
    torch.set_num_threads(1)
    assert not trains_beside(n, RANK_CONFIG, None)


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


def test_the_caller_takes_its_threads_back_once_the_work_beside_is_done() -> None:
    work = Beside(lambda: 1, beside=True, name="quick", share_threads=True)
    with work:
        assert torch.get_num_threads() == 1
        deadline = time.monotonic() + 30
        while torch.get_num_threads() == 1 and time.monotonic() < deadline:
            work.reclaim()  # the work's thread may not have run yet: poll
            time.sleep(0.01)
        assert torch.get_num_threads() == 2
        assert work.result() == 1
