"""The training loop: mini-batch Adam on tensors, one-cycle schedule, early stopping, refit.

All data lives on the device as index tensors; a batch is a slice of a shuffled permutation,
so no per-sample Python runs in the loop.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from recsys.config import RatingScale
from recsys.data.interactions import Interactions
from recsys.errors import EmptyDataError, TrainingDivergedError
from recsys.model.network import DotProductBias
from recsys.train_config import TrainConfig
from recsys.training.adam import Adam
from recsys.training.distributed import World
from recsys.training.rating_objective import Objective, count_weights, squared_error_sum, tensors_of
from recsys.training.stopping import EarlyStopping


@dataclass(frozen=True)
class EpochStats:
    epoch: int
    train_loss: float
    val_loss: float
    lr: float
    seconds: float
    val_ndcg: float | None = None
    """The ranking head's NDCG@k on validation ratings, which its early stopping watches."""
    member: int = 0
    """Which ranking head of an ensemble (`TrainConfig.rank_members`) the epoch trained."""


@dataclass(frozen=True)
class Refit:
    """The second pass: the selected number of epochs on training and validation data."""

    epochs: int
    ratings: int
    train_loss: float
    seconds: float


@dataclass
class TrainResult:
    """`history` is the learning curve of the selection pass, which early stopping watched;
    with `refit`, `network` comes from the second pass, the curve from the first."""

    network: DotProductBias
    history: list[EpochStats]
    best_epoch: int
    stopped_early: bool
    seconds: float
    samples_per_second: float
    device: str
    refit: Refit | None = None
    selected: DotProductBias | None = None
    """With `refit`, the network of the selection pass (it never saw the validation ratings),
    on the CPU: what choosing anything else on validation data must use."""

    def history_dicts(self) -> list[dict[str, float]]:
        return [asdict(h) for h in self.history]


def pick_device(choice: str) -> torch.device:
    """ "auto" uses CUDA when present, so the same code trains on a GPU without changes."""
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(choice)


def one_cycle(warmup: float, total_steps: int) -> Callable[[int], float]:
    """Linear warm-up, then cosine decay to zero: Smith's one-cycle policy, as fastai uses it."""
    warm = max(1, int(warmup * total_steps))

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        progress = min(1.0, (step - warm) / max(1, total_steps - warm))
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


class Trainer:
    """Fits a DotProductBias to ratings; `fit` returns the network of the best epoch."""

    def __init__(
        self,
        config: TrainConfig,
        scale: RatingScale,
        *,
        on_epoch: Callable[[EpochStats], None] | None = None,
        on_step: Callable[[int, int], None] | None = None,
    ) -> None:
        self.config = config
        self.scale = scale
        self.on_epoch = on_epoch
        self.on_step = on_step

    def build(
        self, train: Interactions, generator: torch.Generator, mean_rating: float
    ) -> DotProductBias:
        return DotProductBias(
            train.n_users,
            train.n_items,
            self.config.n_factors,
            self.scale.output_range(),
            mean_rating=mean_rating,
            init_std=self.config.init_std,
            generator=generator,
        )

    def fit(
        self,
        train: Interactions,
        valid: Interactions,
        *,
        network: DotProductBias | None = None,
        world: World | None = None,
    ) -> TrainResult:
        """Train on `train`, stop early on the mean squared error of `valid`; with
        `config.refit`, train again from the start on `train` and `valid` together for the
        best number of epochs, so the model learns from the ratings that chose when to stop.

        `network` may be given to start from existing weights (warm start); it must match the
        vocabularies of `train`. With a `world` (torchrun), `train` and `valid` are this
        rank's shards; every sum is taken over all ranks and the gradients are averaged by
        DistributedDataParallel, so the model matches a single process's with the same
        global batch size.
        """
        start = copy.deepcopy(network) if network is not None else None
        selected = self.select(train, valid, network=network, world=world)
        return self.refit(selected, train, valid, network=start, world=world)

    def select(
        self,
        train: Interactions,
        valid: Interactions,
        *,
        network: DotProductBias | None = None,
        world: World | None = None,
    ) -> TrainResult:
        """`fit`'s first part: train on `train`, stopping early on `valid` (starting from
        `network`'s weights, which it trains in place, when given)."""
        return self._train(train, valid, network, world, self.config.epochs, self.on_epoch)

    def refit(
        self,
        selected: TrainResult,
        train: Interactions,
        valid: Interactions,
        *,
        network: DotProductBias | None = None,
        world: World | None = None,
    ) -> TrainResult:
        """`fit`'s second part: with `config.refit` and validation ratings, train again on
        `train` and `valid` together for `selected`'s best number of epochs (from `network`'s
        weights when given) and return that, with `selected`'s learning curve; else
        `selected` itself."""
        n_valid = world.sum(len(valid))[0] if world else len(valid)
        if not (self.config.refit and n_valid > 0):
            return selected
        both = train.concat(valid)
        nothing = both.subset(np.arange(0))
        # Its epochs are reported too (validation "-": nothing is held out), so a long refit
        # is not minutes of silence.
        final = self._train(both, nothing, network, world, selected.best_epoch, self.on_epoch)
        seconds = selected.seconds + final.seconds
        samples = sum(r.samples_per_second * r.seconds for r in (selected, final))
        return TrainResult(
            final.network,
            selected.history,
            selected.best_epoch,
            selected.stopped_early,
            seconds,
            samples / seconds if seconds else 0.0,
            final.device,
            Refit(
                selected.best_epoch,
                int(world.sum(len(both))[0]) if world else len(both),
                final.history[-1].train_loss,
                final.seconds,
            ),
            selected.network,
        )

    def train_for(self, data: Interactions, epochs: int, world: World | None = None) -> TrainResult:
        """Exactly `epochs` epochs of the schedule on `data`, nothing held out (a refit); with
        a `world`, `data` is this rank's shard."""
        return self._train(data, data.subset(np.arange(0)), None, world, epochs, None)

    def _train(
        self,
        train: Interactions,
        valid: Interactions,
        network: DotProductBias | None,
        world: World | None,
        epochs: int,
        on_epoch: Callable[[EpochStats], None] | None,
    ) -> TrainResult:
        """One pass of at most `epochs` epochs of the `config.epochs`-long schedule."""
        cfg = self.config
        run = self._start(train, network, world)
        net, device = run.net, run.device
        va = tensors_of(valid, device)
        history: list[EpochStats] = []
        stopping = EarlyStopping(net, patience=cfg.patience, min_delta=cfg.min_delta)
        started = time.perf_counter()
        n_valid = world.sum(len(valid))[0] if world else len(valid)
        for epoch in range(1, epochs + 1):
            t0 = time.perf_counter()
            loss_sum, count = run.epoch(self.on_step, run.steps_per_epoch * epochs)
            local = (loss_sum, count, squared_error_sum(net, va))
            seen, count, val_sse = world.sum(*local) if world else local
            train_loss = seen / count
            if not math.isfinite(train_loss):
                raise TrainingDivergedError(
                    f"training loss became {train_loss} in epoch {epoch}: lower the learning "
                    f"rate (now {cfg.lr}) or check the ratings for extreme values"
                )
            val_loss = val_sse / n_valid if n_valid else float("nan")
            stats = EpochStats(epoch, train_loss, val_loss, run.lr(), time.perf_counter() - t0)
            history.append(stats)
            if on_epoch is not None:
                on_epoch(stats)
            if stopping.update(epoch, val_loss, watched=n_valid > 0):
                break
        stopping.restore()
        seconds = time.perf_counter() - started
        samples = run.n_global * len(history)
        return TrainResult(
            net.cpu(),
            history,
            stopping.best_epoch,
            stopping.stopped_early,
            seconds,
            samples / seconds if seconds else 0.0,
            str(device),
        )

    def _start(
        self, train: Interactions, network: DotProductBias | None, world: World | None
    ) -> _Run:
        """The network, its objective and optimiser, and the batches of a pass over `train`."""
        cfg = self.config
        n = len(train)
        local_sum = float(train.ratings.sum(dtype="float64"))
        n_global, rating_sum = world.sum(n, local_sum) if world else (n, local_sum)
        if n_global == 0:
            raise EmptyDataError("no ratings to train on: ingest ratings first (recsys ingest)")
        if world is not None and n == 0:
            raise EmptyDataError(f"rank {world.rank} has no ratings: fewer ratings than ranks")
        device = world.device if world else pick_device(cfg.device)
        # The generator lives on the CPU: permutations are drawn there and moved, so a seed
        # gives the same model on any device. Ranks share the seed: the same initial weights.
        gen = torch.Generator().manual_seed(cfg.seed)
        net = (network or self.build(train, gen, rating_sum / n_global)).to(device)
        weights = None
        if cfg.l2_count_exponent:
            weights = (
                count_weights(train.users, train.n_users, cfg.l2_count_exponent, world).to(device),
                count_weights(train.items, train.n_items, cfg.l2_count_exponent, world).to(device),
            )
        objective: nn.Module = Objective(net, cfg.factor_l2, cfg.bias_l2, weights)
        batch = cfg.batch_size
        if world is not None:
            # The row weights are counted over all ranks and so already equal everywhere:
            # synchronising them before every step would only cost time (they are synced
            # once, at the start, which changes nothing).
            objective = DistributedDataParallel(objective, forward_sync_buffers=False)
            batch = max(1, cfg.batch_size // world.size)
        # Every rank must take the same number of steps (each is an all-reduce): the longest
        # shard sets it, and shorter ones start their permutation again to fill their batches.
        steps_per_epoch = math.ceil((world.max(n) if world else n) / batch)
        return _Run(
            net=net,
            objective=objective,
            opt=Adam([net.parameters()], lr=cfg.lr, betas=(0.9, cfg.adam_beta2)),
            schedule=one_cycle(cfg.warmup_fraction, steps_per_epoch * cfg.epochs),
            peak_lr=cfg.lr,
            gen=gen,
            device=device,
            data=tensors_of(train, device),
            batch=batch,
            steps_per_epoch=steps_per_epoch,
            per_epoch=steps_per_epoch * batch if world else n,
            n_global=int(n_global),
        )


@dataclass
class _Run:
    """A pass of the rating head in progress: what `Trainer._start` set up, and its steps."""

    net: DotProductBias
    objective: nn.Module
    opt: Adam
    schedule: Callable[[int], float]
    peak_lr: float
    gen: torch.Generator
    device: torch.device
    data: tuple[torch.Tensor, ...]
    batch: int
    steps_per_epoch: int
    per_epoch: int
    """Ratings an epoch visits: all of them, or under torchrun the longest shard's count."""
    n_global: int
    step: int = 0

    def lr(self) -> float:
        return self.peak_lr * self.schedule(self.step)

    def epoch(
        self, on_step: Callable[[int, int], None] | None, total_steps: int
    ) -> tuple[float, float]:
        """One epoch of steps; the sum of the batches' squared errors and the ratings seen."""
        self.objective.train()
        n = len(self.data[0])
        order = torch.randperm(n, generator=self.gen)
        if self.per_epoch > n:
            order = order.repeat(math.ceil(self.per_epoch / n))
        order = order[: self.per_epoch].to(self.device)
        users, items, ratings = self.data
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        for s in range(0, len(order), self.batch):
            idx = order[s : s + self.batch]
            self.opt.zero_grad()
            if isinstance(self.objective, Objective):
                mse = self.objective.gradients(users[idx], items[idx], ratings[idx])
            else:  # DistributedDataParallel averages autograd's gradients over the ranks
                loss, mse = self.objective(users[idx], items[idx], ratings[idx])
                loss.backward()
            self.opt.set_lr(self.lr())
            self.opt.step()
            loss_sum += mse.detach().double() * len(idx)
            self.step += 1
            if on_step is not None:
                on_step(self.step, total_steps)
        self.objective.eval()
        return float(loss_sum), float(len(order))
