"""The ranking head's place in a training run: fit it beside the rating head, choose how the
two are blended on validation NDCG (`select_ranking`), refit (`refit_ranking`), and hand the
recommender its `RankingHead`."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch

from recsys.data.interactions import Interactions
from recsys.evaluation.baselines import Scorer
from recsys.evaluation.report import RankingTask
from recsys.model.card import RankingRecord
from recsys.model.network import ChoiceNet, DotProductBias
from recsys.model.ranking import RankingHead
from recsys.train_config import RANK_BLENDS, TrainConfig
from recsys.training.choice import ChoiceTrainer, Ensemble
from recsys.training.distributed import World
from recsys.training.trainer import EpochStats

JUDGED_USERS = 5_000
"""Validation users whose NDCG chooses the epoch and the blend (a sample, for time)."""


class _Blended:
    """A scorer of choice score + blend x rating logit, for choosing the blend."""

    name = "blend"

    def __init__(self, choice: RankingHead, rating: DotProductBias, blend: float) -> None:
        self.choice, self.blend = choice, blend
        with torch.no_grad():
            self.factors = rating.user_factors.detach().cpu().float()
            self.item_factors = rating.item_factors.detach().cpu().float()
            self.item_bias = rating.item_bias.detach().cpu().float()

    def predict_rows(self, users: np.ndarray, items: np.ndarray) -> None:
        return None

    def rank_scores(self, users: np.ndarray) -> torch.Tensor:
        rows = torch.from_numpy(np.asarray(users, dtype=np.int64))
        vectors = torch.from_numpy(self.choice.user_vectors[users])
        scores = vectors @ torch.from_numpy(self.choice.item_out).T
        scores += torch.from_numpy(self.choice.item_bias)
        if self.blend:
            rating = self.factors[rows] @ self.item_factors.T + self.item_bias
            scores += self.blend * rating
        return scores


class _Judge:
    """NDCG@k on the validation ratings of (up to JUDGED_USERS) users; under torchrun, each
    rank judges its own users and the figure is the mean over all of them."""

    def __init__(
        self, inner: Interactions, valid: Interactions, config: TrainConfig, world: World | None
    ) -> None:
        sample = JUDGED_USERS if world is None else math.ceil(JUDGED_USERS / world.size)
        self.task = RankingTask(
            inner, valid, config.liked_threshold, config.top_k, sample, config.seed
        )
        self.key = f"ndcg@{config.top_k}"
        self.world = world

    def __call__(self, scorer: Scorer) -> float:
        n = len(self.task.users)
        ndcg = (self.task.evaluate(scorer)[self.key] or 0.0) if n else 0.0
        if self.world is None:
            return ndcg
        total, users = self.world.sum(ndcg * n, n)
        return total / users if users else 0.0


def head_of(net: ChoiceNet, data: Interactions, config: TrainConfig, blend: float) -> RankingHead:
    return RankingHead.from_network(
        net,
        data.users,
        data.items,
        data.ratings,
        blend=blend,
        liked_threshold=config.liked_threshold,
        disliked_input=config.rank_disliked_input,
        history_exponent=config.rank_history_exponent,
        members=net.members,
    )


@dataclass
class Selection:
    """The ranking head as chosen on validation: its heads (each member's kept epoch), the
    blend with the rating head, and the run's record."""

    ensemble: Ensemble
    blend: float
    record: RankingRecord


def select_ranking(
    inner: Interactions,
    valid: Interactions,
    rating_selected: Callable[[], DotProductBias],
    config: TrainConfig,
    *,
    on_epoch: Callable[[EpochStats], None] | None = None,
    world: World | None = None,
) -> Selection:
    """Train the choice head on `inner` with early stopping on `valid`, and choose the blend
    with the rating head of the same data (what `rating_selected` returns once the choice
    head is trained: the rating head may still be training beside it; it never saw `valid`)
    by NDCG@k on `valid`. With a `world`, `inner` and `valid` are this rank's users; every
    rank returns the same heads."""
    t0 = time.perf_counter()
    trainer = ChoiceTrainer(config, on_epoch=on_epoch, world=world)
    n_valid = world.sum(len(valid))[0] if world else len(valid)
    judge = _Judge(inner, valid, config, world) if n_valid else None
    ensemble = trainer.fit_ensemble(inner, valid, judge=judge)
    selected = ensemble.members[0]
    blend_ndcg: dict[str, float | None] = {}
    blend = config.rank_blend
    if judge is not None:
        head = head_of(ensemble.network, inner, config, 0.0)
        candidates = RANK_BLENDS if blend is None else (blend,)
        rating = rating_selected()
        for b in candidates:
            blend_ndcg[str(b)] = judge(_Blended(head, rating, b))
        if blend is None:
            blend = max(candidates, key=lambda b: blend_ndcg[str(b)] or 0.0)
    blend = 0.0 if blend is None else blend
    # The learning curve and kept epoch shown are the first head's; each head's kept epoch
    # is in `member_epochs`.
    record = RankingRecord(
        history=[asdict(h) for h in selected.history],
        best_epoch=selected.best_epoch,
        member_epochs=ensemble.epochs,
        stopped_early=selected.stopped_early,
        blend=blend,
        validation_ndcg_by_blend=blend_ndcg,
        seconds=time.perf_counter() - t0,
    )
    return Selection(ensemble, blend, record)


FINE_TUNE_MAX_SHARE = 0.4
"""A refit fine-tunes the chosen heads only where `rank_refit_epochs` is at most this share of
each head's kept epoch (the head was kept at epoch 10 or later, with the default 4); else it
trains fresh heads for the kept epochs. Measured (benchmarks/README.md): on MovieLens, heads
kept at epoch 30-40 fine-tuned for 4 rank as fresh refits do (test NDCG@10 0.2458 against
0.2452), and one kept at epoch 11 ranked better fine-tuned (0.1961 against 0.1940); at 25M
ratings, a head kept at epoch 7 of 64-step epochs ranked worse fine-tuned for 1, 2 or 4
epochs (0.1623, 0.1619, 0.1608) than refit fresh (0.1630), and at 4 below most-popular
(0.1618): the gate rejected the model. Where the head is kept that early a fresh refit costs
few epochs anyway."""


def fine_tunes(ensemble: Ensemble, config: TrainConfig) -> bool:
    """Whether the refits fine-tune `ensemble`'s heads (else they train fresh heads for their
    kept epochs): with `config.rank_refit_epochs`, where that is at most FINE_TUNE_MAX_SHARE of
    every head's kept epoch."""
    wanted = config.rank_refit_epochs
    return bool(wanted) and all(wanted <= FINE_TUNE_MAX_SHARE * e for e in ensemble.epochs)


def refit_heads(
    ensemble: Ensemble,
    data: Interactions,
    config: TrainConfig,
    *,
    on_epoch: Callable[[EpochStats], None] | None = None,
    world: World | None = None,
) -> tuple[ChoiceNet, list[int]]:
    """The heads chosen on validation (`ensemble`) trained on `data`, as both refits do it
    (the evaluated twin's, the served model's), and the epochs each trained: where
    `fine_tunes`, `config.rank_refit_epochs` from the chosen heads' weights at
    `config.rank_refit_lr_share` of the learning rate; else a fresh head for each one's kept
    epoch (a fresh refit costs few epochs where the kept epoch is early)."""
    nothing = data.subset(np.arange(0))
    if not fine_tunes(ensemble, config):
        trainer = ChoiceTrainer(config, on_epoch=on_epoch, world=world)
        return trainer.fit_ensemble(data, nothing, epochs=ensemble.epochs).network, ensemble.epochs
    warm = config.model_copy(update={"rank_lr": config.rank_lr * config.rank_refit_lr_share})
    epochs = [config.rank_refit_epochs] * len(ensemble.epochs)
    trainer = ChoiceTrainer(warm, on_epoch=on_epoch, world=world)
    network = trainer.fit_ensemble(data, nothing, epochs=epochs, start=ensemble).network
    return network, epochs


def refit_ranking(
    selection: Selection,
    inner: Interactions,
    valid: Interactions,
    config: TrainConfig,
    *,
    on_epoch: Callable[[EpochStats], None] | None = None,
    world: World | None = None,
) -> tuple[ChoiceNet, float, RankingRecord]:
    """The network the evaluated twin ranks with: the selected heads refit on inner + valid
    (`refit_heads`) when `config.refit` (else the selected heads themselves), with the blend
    and the run's record."""
    network = selection.ensemble.network
    record = selection.record
    n_valid = world.sum(len(valid))[0] if world else len(valid)
    if config.refit and n_valid:
        t1 = time.perf_counter()
        network, epochs = refit_heads(
            selection.ensemble, inner.concat(valid), config, on_epoch=on_epoch, world=world
        )
        refit_s = time.perf_counter() - t1
        update = {
            "refit_s": refit_s,
            "seconds": record.seconds + refit_s,
            "refit_epochs": epochs,
            "refit_warm": fine_tunes(selection.ensemble, config),
        }
        record = record.model_copy(update=update)
    return network, selection.blend, record
