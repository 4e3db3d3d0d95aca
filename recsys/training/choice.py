"""Training the ranking head (`ChoiceNet`): which items a user chooses, every unobserved item
a negative.

A model trained only on the ratings people chose to give learns how much they like what they
watched, not what they would choose to watch (ratings are missing not at random: Steck 2010;
Cremonesi, Koren & Turrin 2010). This head learns the choice itself: for a batch of users, a
softmax over the whole catalog, with each rated item a target. Items rated below the "liked"
threshold are targets with a smaller weight (`rank_disliked_weight`): the user chose them, but
a list should lead to what they will like.

The loss is the mean negative log-likelihood per unit of target weight, plus L2 on the item
embeddings (per unit of target weight, so the balance does not move with the data's size)
and on the free user offsets. Early stopping watches the same loss on validation ratings,
with the training ratings as each user's input.

On a catalog of more than 4 x `rank_negatives` items the softmax's normaliser is estimated, not
summed: each batch draws that many items by popularity ** 0.75 and weighs them by the inverse
of their chance (`SampledNormaliser`), so an epoch costs ratings x factors plus users x
negatives x factors, not users x items x factors. Either way the normaliser and its gradient
are computed a cache-sized block of users at a time (`blocked_softmax`), and the users' offsets
are updated where a batch reads them (`RowAdam`), the whole table only when it is read whole
(a few times an epoch), so a step costs its batch, not the users table. With few steps an
epoch (MovieLens: 11), the weight average reads the table after every step, and dense Adam
(`WholeTableAdam`) is the cheaper way to the same steps.

Under torchrun (a `World`), each rank holds whole users (their histories and validation
ratings) and trains on them; the item side (input and output embeddings, biases, genres) is
shared, its gradients summed over the ranks at every step, so every rank takes the same
steps; each user's free offset lives on the rank that holds the user, and the ranks' offsets
are summed into one table at the end. The ranks share one process's batches of users and its
draws, so together they take that process's steps (up to the order of float sums; input
dropout, off by default, draws per rank).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch

from recsys.data.interactions import Interactions
from recsys.errors import EmptyDataError, TrainingDivergedError
from recsys.model.network import ChoiceNet
from recsys.train_config import TrainConfig
from recsys.training.adam import Adam
from recsys.training.choice_parts import (
    ChoiceScorer,
    Histories,
    InputDropout,
    SampledNormaliser,
    WeightAverage,
    batch_loss,
    normaliser_for,
    optimizers,
    step_totals,
    summed_over_ranks,
)
from recsys.training.distributed import World
from recsys.training.row_adam import RowAdam, WholeTableAdam
from recsys.training.spectral import spectral_items
from recsys.training.stopping import EarlyStopping
from recsys.training.trainer import EpochStats, pick_device


@dataclass
class ChoiceResult:
    network: ChoiceNet
    history: list[EpochStats]
    best_epoch: int
    stopped_early: bool
    seconds: float


@dataclass
class Ensemble:
    """Heads trained alike from different seeds; what serves is `network`, their mean."""

    members: list[ChoiceResult]

    @cached_property
    def network(self) -> ChoiceNet:
        return ChoiceNet.mean_of([m.network for m in self.members])

    @property
    def epochs(self) -> list[int]:
        """Each member's kept epoch: what a refit from scratch trains each for."""
        return [m.best_epoch for m in self.members]


@dataclass
class _Steps:
    """One training run's moving parts, and an epoch of its steps."""

    config: TrainConfig
    net: ChoiceNet
    hist: Histories
    device: torch.device
    world: World | None
    gen: torch.Generator
    dropout: InputDropout
    normaliser: SampledNormaliser | None
    opt: Adam
    offset_opt: RowAdam | WholeTableAdam
    average: WeightAverage
    here: np.ndarray
    """The users with ratings on this rank."""
    anywhere: np.ndarray
    """The users with ratings on any rank."""
    user_weights: np.ndarray
    """Each user's summed target weight."""
    n_steps: int
    total_weight: float

    @classmethod
    def start(
        cls,
        cfg: TrainConfig,
        train: Interactions,
        device: torch.device,
        world: World | None,
        member: int,
        start: ChoiceNet | None = None,
    ) -> _Steps:
        """A head for `train` (this rank's users), fresh or with `start`'s weights, and what
        its steps need."""
        # Heads a prime number of seeds apart: nearby training seeds give other heads. Ranks
        # share the seeds (the same initial tables, batches and draws), not their dropout.
        gen = torch.Generator().manual_seed(cfg.seed + 1 + 7919 * member)
        seed = cfg.seed + 7919 * member
        rank_seed = seed + 104_729 * (world.rank if world else 0)
        dropout = InputDropout(cfg.rank_input_dropout, rank_seed)
        net = ChoiceNet(
            train.n_users,
            train.n_items,
            cfg.rank_factors,
            init_std=cfg.init_std,
            generator=gen,
            genres=train.genres if cfg.rank_genres else None,
        ).to(device)
        hist = Histories.of(train, cfg)
        normaliser = normaliser_for(cfg, train, seed, device, world)
        here = np.diff(hist.indptr) > 0  # the users with ratings on this rank
        if start is not None:
            _warm(net, start, None if world is None else here)
        elif cfg.rank_init == "spectral":
            items = spectral_items(hist, train.n_items, cfg.rank_factors, seed=seed, world=world)
            items = items.to(device)
            with torch.no_grad():  # on each head's own random start: heads stay distinct
                net.item_in.add_(items)
                net.item_out.add_(items)
        anywhere = here
        if world is not None:
            anywhere = world.sum_tensor(torch.from_numpy(here.astype(np.int32))).cpu().numpy() > 0
        n_users, total_weight = summed_over_ranks(world, int(here.sum()), float(hist.targets.sum()))
        # Every rank takes the same steps (each ends in an all-reduce), each with its share
        # of the batch's users.
        n_steps = max(1, math.ceil(n_users / cfg.rank_batch_users))
        average = WeightAverage(net, cfg.rank_average, steps_per_epoch=n_steps)
        opt, offset_opt = optimizers(net, cfg, read_every_step=average.every_step)
        return cls(
            cfg, net, hist, device, world, gen, dropout, normaliser, opt, offset_opt, average,
            here, anywhere, hist.user_weights(), n_steps, total_weight,
        )  # fmt: skip

    def epoch(self) -> tuple[float, float]:
        """One pass over the users; the summed NLL and target weight, over all ranks."""
        self.net.train()
        # The batches of one process, each rank taking its own users of each: with the
        # draws shared too, the ranks together take exactly one process's steps.
        order = torch.randperm(len(self.here), generator=self.gen).numpy()
        order = order[self.anywhere[order]]
        chunks = [chunk[self.here[chunk]] for chunk in np.array_split(order, self.n_steps)]
        # Each step's users and target weight over all ranks: what its loss is a mean over.
        step_users, step_weights = step_totals(self.world, chunks, self.user_weights)
        loss_sum, weight_sum = 0.0, 0.0
        for chunk, n_step, w_step in zip(chunks, step_users, step_weights, strict=True):
            self.opt.zero_grad()
            # Drawn on every rank, users or not, so that the ranks' draws stay the same.
            drawn = self.normaliser.draw() if self.normaliser is not None else None
            index = torch.from_numpy(chunk).to(self.device)
            own = None
            if len(chunk):
                own = self.offset_opt.rows(index)
                nll, weight = batch_loss(
                    self.net, self.hist, self.hist, chunk, self.device, self.dropout,
                    self.normaliser, drawn, own,
                )  # fmt: skip
                loss = nll / w_step + self.config.rank_user_l2 * own.square().sum() / n_step
                loss.backward()  # type: ignore[no-untyped-call]  # torch leaves it untyped
                loss_sum += float(nll.detach())
                weight_sum += weight
            if self.world is not None:
                self.world.sum_grads(self.net.item_side())
            # Items are penalised (rank_l2 x squared norm) per unit of target weight, in
            # proportion to the users in the batch: an epoch applies the penalty once,
            # whatever the batch size. Weight decay is the penalty's gradient.
            self.opt.param_groups[0].weight_decay = (
                2 * self.config.rank_l2 * n_step / self.total_weight
            )
            self.opt.step()
            self.offset_opt.step(index, own)
            self.average.update(prepare=self.offset_opt.flush)
        self.offset_opt.flush()  # validation and early stopping read every user's offset
        summed = summed_over_ranks(self.world, loss_sum, weight_sum)
        return summed[0], summed[1]


def _warm(net: ChoiceNet, start: ChoiceNet, here: np.ndarray | None) -> None:
    """Give `net` the weights of `start`; under torchrun (`here`: this rank's users), only
    this rank's users keep their offsets, as the ranks' offset tables are summed at the end."""
    net.load_state_dict(start.state_dict())
    if here is not None:
        with torch.no_grad():
            net.user_offset[torch.from_numpy(~here).to(net.user_offset.device)] = 0.0


class ChoiceTrainer:
    """Fits a `ChoiceNet`; `fit` returns the network of the best validation epoch, and
    `fit_ensemble` `config.rank_members` of them. With a `world` (torchrun), the data given
    to them is this rank's users, and the losses, the judge's figure and the steps are the
    ranks' together (see the module's docstring)."""

    def __init__(
        self,
        config: TrainConfig,
        *,
        on_epoch: Callable[[EpochStats], None] | None = None,
        world: World | None = None,
    ) -> None:
        self.config = config
        self.on_epoch = on_epoch
        self.world = world

    def fit_ensemble(
        self,
        train: Interactions,
        valid: Interactions,
        *,
        epochs: list[int] | None = None,
        judge: Callable[[ChoiceScorer], float] | None = None,
        start: Ensemble | None = None,
    ) -> Ensemble:
        """`config.rank_members` heads, each fitted as `fit` does from its own seed; or,
        given `epochs` (a refit), one head for each count, each from the weights of its
        member of `start` when given.

        Why: one head's validation NDCG wanders by about 0.003 from epoch to epoch, so early
        stopping sometimes keeps an early epoch (less often since it judges a window of
        epochs, `rank_stop_window`), and heads from different seeds differ by several per
        cent on the same test split (MovieLens hash split, one epoch judged alone:
        0.245-0.262). The mean of two is steadier and better (0.259-0.266), at twice the
        head's training time, which is why one head is the default (benchmarks/README.md).
        A wider single head is no substitute: 128 factors ranked worse than 64, where two
        heads of 64 each learn from their own loss."""
        if epochs is not None:
            starts: list[ChoiceNet | None] = [None] * len(epochs)
            if start is not None:
                starts = [m.network for m in start.members]
            return Ensemble(
                [
                    self.fit(train, valid, epochs=e, member=m, start=s)
                    for m, (e, s) in enumerate(zip(epochs, starts, strict=True))
                ]
            )
        members = [
            self.fit(train, valid, judge=judge, member=m) for m in range(self.config.rank_members)
        ]
        return Ensemble(members)

    def fit(
        self,
        train: Interactions,
        valid: Interactions,
        *,
        epochs: int | None = None,
        judge: Callable[[ChoiceScorer], float] | None = None,
        member: int = 0,
        start: ChoiceNet | None = None,
    ) -> ChoiceResult:
        """Train on `train` for at most `epochs` (default `config.rank_epochs`), stopping when
        validation has not improved for `config.rank_patience` epochs: by `judge` (higher is
        better, such as NDCG@k on `valid`) when given, else by the validation loss. With an
        empty `valid`, train for exactly `epochs` (a refit). `member` numbers a head of an
        ensemble: each starts from its own seed, or from `start`'s weights when given.

        The loss and NDCG disagree: the likelihood of held-out items keeps falling epochs
        after their ranking stops improving, so the ranking is what chooses the epoch."""
        cfg = self.config
        if len(train) == 0:
            raise EmptyDataError("no ratings to train on: ingest ratings first (recsys ingest)")
        epochs = epochs or cfg.rank_epochs
        world = self.world
        device = world.device if world else pick_device(cfg.device)
        steps = _Steps.start(cfg, train, device, world, member, start)
        val_targets, val_drawn = self._validation(valid, steps)
        history: list[EpochStats] = []
        kept = steps.average.network
        stopping = EarlyStopping(
            kept, patience=cfg.rank_patience, min_delta=cfg.min_delta, window=cfg.rank_stop_window
        )
        started = time.perf_counter()
        for epoch in range(1, epochs + 1):
            t0 = time.perf_counter()
            loss_sum, weight_sum = steps.epoch()
            train_loss = loss_sum / weight_sum
            if not math.isfinite(train_loss):
                raise TrainingDivergedError(
                    f"ranking loss became {train_loss} in epoch {epoch}: lower rank_lr "
                    f"(now {cfg.rank_lr})"
                )
            ndcg, val_loss = self._validate(kept, steps, device, judge, val_targets, val_drawn)
            stats = EpochStats(
                epoch, train_loss, val_loss, cfg.rank_lr, time.perf_counter() - t0, ndcg, member
            )
            history.append(stats)
            if self.on_epoch is not None:
                self.on_epoch(stats)
            # Lower is better: the loss, or minus the judge's figure.
            watched = val_loss if ndcg is None else -ndcg
            if stopping.update(epoch, watched, watched=val_targets is not None):
                break
        stopping.restore()
        if world is not None:
            # Each rank trained its own users' offsets; the others' rows stayed zero.
            with torch.no_grad():
                kept.user_offset.copy_(world.sum_tensor(kept.user_offset))
        seconds = time.perf_counter() - started
        return ChoiceResult(
            kept.cpu(), history, stopping.best_epoch, stopping.stopped_early, seconds
        )

    def _validation(
        self, valid: Interactions, steps: _Steps
    ) -> tuple[Histories | None, torch.Tensor | None]:
        """The validation targets (None where no rank holds any) and the items drawn once for
        the whole run to estimate their normaliser (None with the exact softmax), so the
        learning curve's epochs are compared on the same items."""
        # Under torchrun a rank may hold no validation ratings while others do: whether there
        # is validation is decided over all ranks, which all take part in judging it.
        (n_valid,) = summed_over_ranks(self.world, len(valid))
        targets = Histories.of(valid, self.config) if n_valid else None
        normaliser = steps.normaliser
        return targets, normaliser.draw() if normaliser is not None else None

    def _validate(
        self,
        kept: ChoiceNet,
        steps: _Steps,
        device: torch.device,
        judge: Callable[[ChoiceScorer], float] | None,
        val_targets: Histories | None,
        val_drawn: torch.Tensor | None,
    ) -> tuple[float | None, float]:
        """The judge's figure on validation (None without a judge) and the validation NLL."""
        ndcg, scored = None, None
        if judge is not None and val_targets is not None:
            # With the exact softmax the judge's scores give its users' validation NLL.
            exact = steps.normaliser is None
            scored = ChoiceScorer(kept, steps.hist, device, val_targets if exact else None)
            ndcg = judge(scored)
        val_loss = self._validation_loss(
            kept, steps.hist, val_targets, device, steps.normaliser, val_drawn, scored
        )
        return ndcg, val_loss

    def _validation_loss(
        self,
        net: ChoiceNet,
        hist: Histories,
        val: Histories | None,
        device: torch.device,
        normaliser: SampledNormaliser | None = None,
        drawn: torch.Tensor | None = None,
        scored: ChoiceScorer | None = None,
    ) -> float:
        """The NLL of the validation targets per unit of target weight, over all ranks; the
        users that `scored` summed already are not scored again."""
        if val is None:
            return float("nan")
        net.eval()
        users = np.flatnonzero(np.diff(val.indptr) > 0)
        total, weight = 0.0, 0.0
        if scored is not None and scored.scored:
            total, weight = scored.nll_sum, scored.nll_weight
            users = np.setdiff1d(users, np.concatenate(scored.scored), assume_unique=True)
        with torch.no_grad():
            for s in range(0, len(users), 1024):
                chunk = users[s : s + 1024]
                nll, w = batch_loss(net, hist, val, chunk, device, None, normaliser, drawn)
                total += float(nll)
                weight += w
        total, weight = summed_over_ranks(self.world, total, weight)
        return total / weight if weight else float("nan")
