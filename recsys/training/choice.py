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
(a few times an epoch), so a step costs its batch, not the users table.

Under torchrun (a `World`), each rank holds whole users (their histories and validation
ratings) and trains on them; the item side (input and output embeddings, biases, genres) is
shared, its gradients summed over the ranks at every step, so every rank takes the same
steps; each user's free offset lives on the rank that holds the user, and the ranks' offsets
are summed into one table at the end. The ranks share one process's batches of users and its
draws, so together they take that process's steps (up to the order of float sums; input
dropout, off by default, draws per rank).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch

from recsys.config import TrainConfig
from recsys.data.interactions import Interactions, is_sorted_by_pair
from recsys.errors import EmptyDataError, TrainingDivergedError
from recsys.model.network import ChoiceNet
from recsys.training.adam import Adam
from recsys.training.blocked_softmax import Targets, weighted_softmax_nll
from recsys.training.distributed import World
from recsys.training.row_adam import RowAdam
from recsys.training.stopping import EarlyStopping
from recsys.training.trainer import EpochStats, pick_device

_Layout = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
"""What `Histories.batch` lays out for a batch of users (see there)."""


@dataclass(frozen=True)
class Histories:
    """Each user's rated items as CSR rows (`indptr` over users), with their input weights
    (already scaled by the user's count ** -rank_history_exponent) and target weights."""

    indptr: np.ndarray
    items: np.ndarray
    inputs: np.ndarray
    targets: np.ndarray

    @classmethod
    def of(cls, data: Interactions, config: TrainConfig) -> Histories:
        users, items, ratings = data.users, data.items, data.ratings
        if not is_sorted_by_pair(users, items):
            # Snapshots come sorted: only other data pays for the sort and its copies
            # (a GB at 25M ratings).
            order = np.lexsort((items, users))
            users, items, ratings = users[order], items[order], ratings[order]
        counts = np.bincount(users, minlength=data.n_users)
        indptr = np.zeros(data.n_users + 1, dtype=np.int64)
        np.cumsum(counts, out=indptr[1:])
        liked = ratings >= config.liked_threshold
        inputs = np.where(liked, 1.0, config.rank_disliked_input)
        inputs = inputs * np.maximum(counts[users], 1) ** -config.rank_history_exponent
        targets = np.where(liked, 1.0, config.rank_disliked_weight)
        return cls(
            indptr, items.astype(np.int64), inputs.astype(np.float32), targets.astype(np.float32)
        )

    def user_weights(self) -> np.ndarray:
        """Each user's summed target weight (float64)."""
        cumulative = np.zeros(len(self.targets) + 1)
        np.cumsum(self.targets, dtype=np.float64, out=cumulative[1:])
        return np.diff(cumulative[self.indptr])

    def batch(self, users: np.ndarray) -> _Layout:
        """(flat row positions into this structure, offsets per user, batch row per entry,
        item per entry) for a batch of users."""
        starts, ends = self.indptr[users], self.indptr[users + 1]
        lengths = ends - starts
        offsets = np.zeros(len(users), dtype=np.int64)
        np.cumsum(lengths[:-1], out=offsets[1:])
        positions = np.repeat(starts - offsets, lengths) + np.arange(int(lengths.sum()))
        batch_rows = np.repeat(np.arange(len(users)), lengths)
        return positions, offsets, batch_rows, self.items[positions]


def _user_vectors(
    net: ChoiceNet,
    inputs: Histories,
    users: np.ndarray,
    layout: _Layout,
    device: torch.device,
    weights: np.ndarray | None = None,
    own: torch.Tensor | None = None,
) -> torch.Tensor:
    """p_u of a batch of users, from their histories in `inputs` (`layout` of the batch);
    `weights` replaces the inputs' weights of the batch's entries (input dropout), `own` the
    users' offsets (the trainer's copy of their rows, whose gradient `RowAdam` takes)."""
    pos, offsets, _, items = layout
    if own is None:
        own = net.user_offset[torch.from_numpy(users).to(device)]
    return net.user_vectors(
        own,
        torch.from_numpy(items).to(device),
        torch.from_numpy(offsets).to(device),
        torch.from_numpy(inputs.inputs[pos] if weights is None else weights).to(device),
    )


class InputDropout:
    """Leaves a random share of each history's entries out of the user vectors of a training
    step, scaling the rest by 1 / (1 - share) so that a vector's expected value stays the
    full history's, which is what serving computes (inverted dropout)."""

    def __init__(self, share: float, seed: int) -> None:
        self.share = share
        self.rng = np.random.default_rng(seed)

    def __call__(self, weights: np.ndarray) -> np.ndarray | None:
        if not self.share:
            return None
        kept = self.rng.random(len(weights)) >= self.share
        scaled: np.ndarray = np.where(kept, weights / (1.0 - self.share), 0.0).astype(np.float32)
        return scaled


class SampledNormaliser:
    """Estimates each user's log Z = log sum_i exp(s_ui) from a sample of items.

    Items are drawn with replacement from Q(i) proportional to (count_i + 1) ** 0.75 (the
    smoothed unigram of word2vec, Mikolov et al. 2013): close enough to what a user's softmax
    puts its mass on that a few thousand draws estimate Z well, yet not so peaked that the
    long tail is never pushed down. Each draw's logit is corrected by -log(n Q(i)) (the
    log-Q correction of Bengio & Senecal 2008; Yi et al. 2019, "Sampling-bias-corrected
    neural modeling"), which makes sum_j exp(s_uj) / (n Q(j)) an unbiased estimate of Z,
    the normaliser of the full softmax that serving's fold-in uses. The draws are shared by
    the batch's users, so the scores are one matrix product."""

    EXPONENT = 0.75

    def __init__(self, item_counts: np.ndarray, n: int, seed: int, device: torch.device) -> None:
        weights = (np.asarray(item_counts, dtype=np.float64) + 1.0) ** self.EXPONENT
        q = weights / weights.sum()
        self.n = n
        self.device = device
        self.probabilities = torch.from_numpy(q)
        self.log_nq = torch.from_numpy(np.log(n * q)).float().to(device)
        self.generator = torch.Generator().manual_seed(seed)

    def draw(self) -> torch.Tensor:
        drawn = torch.multinomial(
            self.probabilities, self.n, replacement=True, generator=self.generator
        )
        return drawn.to(self.device)

    def candidates(
        self, net: ChoiceNet, drawn: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The output vectors of the items `drawn` (a fresh draw if None) and their biases
        less log(n Q(i)): log sum_j exp(p_u . q_j + c_j) over them estimates log Z_u."""
        drawn = self.draw() if drawn is None else drawn
        return net.outputs_of(drawn), net.item_bias[drawn] - self.log_nq[drawn]


SAMPLED_ABOVE = 4
"""The exact softmax costs at most this x the sampled one where it is kept: on MovieLens
(9k items) it ranked better than 2,048 draws (benchmarks/README.md), and there an epoch takes
a fraction of a second either way."""


def normaliser_for(
    config: TrainConfig,
    train: Interactions,
    seed: int,
    device: torch.device,
    world: World | None = None,
) -> SampledNormaliser | None:
    """The sampled normaliser when the catalog has more than SAMPLED_ABOVE x
    `rank_negatives` items; None (the exact softmax) otherwise. Under torchrun, items are
    drawn by their counts over all ranks."""
    if not config.rank_negatives or train.n_items <= SAMPLED_ABOVE * config.rank_negatives:
        return None
    counts = train.item_counts()
    if world is not None:
        counts = world.sum_tensor(torch.from_numpy(counts)).cpu().numpy()
    return SampledNormaliser(counts, config.rank_negatives, seed, device)


def _summed(world: World | None, *values: float) -> list[float]:
    """`values` summed over the ranks (as they are, in one process)."""
    return world.sum(*values) if world is not None else list(values)


def _step_totals(
    world: World | None, chunks: list[np.ndarray], per_user: np.ndarray
) -> tuple[list[int], list[float]]:
    """For each step of an epoch, its users and their summed target weight (`per_user`)
    over all ranks."""
    totals = torch.tensor(
        [[len(c) for c in chunks], [float(per_user[c].sum()) for c in chunks]],
        dtype=torch.float64,
    )
    if world is not None:
        totals = world.sum_tensor(totals).cpu()
    return [int(n) for n in totals[0]], [float(w) for w in totals[1]]


class ChoiceScorer:
    """A network in training as an evaluation `Scorer`: choice scores of users by their
    training histories, computed where the network lives (what validation NDCG ranks by,
    without copying the network into a `RankingHead` every epoch).

    Given the validation targets (`nll_of`, with the exact softmax), it also sums the
    validation NLL of the users it scores, from the same scores: the judge's users need not
    be scored twice an epoch (a third of an epoch's time on MovieLens)."""

    name = "choice"

    def __init__(
        self,
        net: ChoiceNet,
        inputs: Histories,
        device: torch.device,
        nll_of: Histories | None = None,
    ) -> None:
        self.net, self.inputs, self.device = net, inputs, device
        self.nll_of = nll_of
        self.nll_sum, self.nll_weight = 0.0, 0.0
        self.scored: list[np.ndarray] = []

    def predict_rows(self, users: np.ndarray, items: np.ndarray) -> None:
        return None

    def rank_scores(self, users: np.ndarray) -> torch.Tensor:
        users = np.asarray(users, dtype=np.int64)
        with torch.no_grad():
            scores: torch.Tensor = self.net(
                _user_vectors(self.net, self.inputs, users, self.inputs.batch(users), self.device)
            )
            if self.nll_of is not None:
                self._add_nll(users, scores)
        return scores.cpu()

    def _add_nll(self, users: np.ndarray, scores: torch.Tensor) -> None:
        """sum_t w_t (log Z_u - s_ut) over these users' validation targets."""
        assert self.nll_of is not None
        pos, _, rows, items = self.nll_of.batch(users)
        weights = self.nll_of.targets[pos]
        per_user = np.bincount(rows, weights=weights, minlength=len(users))
        log_z = torch.logsumexp(scores, dim=1).double().cpu().numpy()
        chosen = scores[torch.from_numpy(rows), torch.from_numpy(items)].double().cpu().numpy()
        self.nll_sum += float(per_user @ log_z - weights @ chosen)
        self.nll_weight += float(weights.sum(dtype=np.float64))
        self.scored.append(users)


def _optimizer(net: ChoiceNet, cfg: TrainConfig) -> tuple[Adam, RowAdam]:
    """Adam for the item side, `RowAdam` for the users' offsets (a batch's rows at a time).
    The L2 on item and genre embeddings is Adam's (coupled) weight decay, in the first
    parameter group, set before each step: the gradient of the penalty in the loss, without
    squaring whole tables every step (a fifth of an epoch's time when it was part of the
    loss)."""
    decayed = net.penalised_tables()
    ids = {id(t) for t in decayed} | {id(net.user_offset)}
    rest = [p for p in net.parameters() if id(p) not in ids]
    return Adam([decayed, rest], lr=cfg.rank_lr), RowAdam(net.user_offset, cfg.rank_lr)


class WeightAverage:
    """The network that is judged and kept: the trained one, or, with a decay, an exponential
    moving average of its weights over steps, which Adam's noisy steps at the head's learning
    rate leave a better ranker than any one step (Polyak averaging; validation NDCG@10 on
    MovieLens 0.1989 against 0.1922). The decay is given per epoch and spread over its steps,
    so a small catalog's few steps per epoch average as many epochs as a large one's.

    The average takes in the weights at most UPDATES_PER_EPOCH times an epoch (every step on
    MovieLens, 11 steps; every 4th of the 64 steps of a 25M epoch): each update reads and
    writes every table, and at that size a step's updates cost as much as its gradients."""

    UPDATES_PER_EPOCH = 16

    def __init__(self, net: ChoiceNet, decay_per_epoch: float, *, steps_per_epoch: int) -> None:
        self.network = copy.deepcopy(net) if decay_per_epoch else net
        self._trained = [p.detach() for p in net.parameters()]
        self._averaged = [p.detach() for p in self.network.parameters()] if decay_per_epoch else []
        steps = max(1, steps_per_epoch)
        self._every = max(1, steps // self.UPDATES_PER_EPOCH)
        self._weight = 1 - decay_per_epoch ** (self._every / steps)
        self._steps = 0

    def update(self, prepare: Callable[[], None] | None = None) -> None:
        """After an optimiser step: move the average towards the trained weights, when due,
        calling `prepare` first (it brings lazily updated rows up to date)."""
        self._steps += 1
        if self._steps % self._every or not self._averaged:
            return
        if prepare is not None:
            prepare()
        for mean, weights in zip(self._averaged, self._trained, strict=True):
            mean.lerp_(weights, self._weight)


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
        """Each member's kept epoch: what a refit trains each for."""
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
    offset_opt: RowAdam
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
    ) -> _Steps:
        """A fresh head for `train` (this rank's users) and what its steps need."""
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
        anywhere = here
        if world is not None:
            anywhere = world.sum_tensor(torch.from_numpy(here.astype(np.int32))).cpu().numpy() > 0
        n_users, total_weight = _summed(world, int(here.sum()), float(hist.targets.sum()))
        # Every rank takes the same steps (each ends in an all-reduce), each with its share
        # of the batch's users.
        n_steps = max(1, math.ceil(n_users / cfg.rank_batch_users))
        opt, offset_opt = _optimizer(net, cfg)
        average = WeightAverage(net, cfg.rank_average, steps_per_epoch=n_steps)
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
        step_users, step_weights = _step_totals(self.world, chunks, self.user_weights)
        loss_sum, weight_sum = 0.0, 0.0
        for chunk, n_step, w_step in zip(chunks, step_users, step_weights, strict=True):
            self.opt.zero_grad()
            # Drawn on every rank, users or not, so that the ranks' draws stay the same.
            drawn = self.normaliser.draw() if self.normaliser is not None else None
            index = torch.from_numpy(chunk).to(self.device)
            own = None
            if len(chunk):
                own = self.offset_opt.rows(index)
                nll, weight = ChoiceTrainer._batch_loss(
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
        summed = _summed(self.world, loss_sum, weight_sum)
        return summed[0], summed[1]


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
    ) -> Ensemble:
        """`config.rank_members` heads, each fitted as `fit` does from its own seed; or,
        given `epochs` (a refit), one head for each count.

        Why: one head's validation NDCG wanders by about 0.003 from epoch to epoch, so early
        stopping sometimes keeps an early epoch (less often since it judges a window of
        epochs, `rank_stop_window`), and heads from different seeds differ by several per
        cent on the same test split (MovieLens hash split, one epoch judged alone:
        0.245-0.262). The mean of two is steadier and better (0.259-0.266), at twice the
        head's training time, which is why one head is the default (benchmarks/README.md).
        A wider single head is no substitute: 128 factors ranked worse than 64, where two
        heads of 64 each learn from their own loss."""
        if epochs is not None:
            return Ensemble(
                [self.fit(train, valid, epochs=e, member=m) for m, e in enumerate(epochs)]
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
    ) -> ChoiceResult:
        """Train on `train` for at most `epochs` (default `config.rank_epochs`), stopping when
        validation has not improved for `config.rank_patience` epochs: by `judge` (higher is
        better, such as NDCG@k on `valid`) when given, else by the validation loss. With an
        empty `valid`, train for exactly `epochs` (a refit). `member` numbers a head of an
        ensemble: each starts from its own seed.

        The loss and NDCG disagree: the likelihood of held-out items keeps falling epochs
        after their ranking stops improving, so the ranking is what chooses the epoch."""
        cfg = self.config
        if len(train) == 0:
            raise EmptyDataError("no ratings to train on: ingest ratings first (recsys ingest)")
        epochs = epochs or cfg.rank_epochs
        world = self.world
        device = world.device if world else pick_device(cfg.device)
        steps = _Steps.start(cfg, train, device, world, member)
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
        (n_valid,) = _summed(self.world, len(valid))
        targets = Histories.of(valid, self.config) if n_valid else None
        normaliser = steps.normaliser
        return targets, normaliser.draw() if normaliser is not None else None

    @staticmethod
    def _batch_loss(
        net: ChoiceNet,
        inputs: Histories,
        targets: Histories,
        users: np.ndarray,
        device: torch.device,
        dropout: InputDropout | None = None,
        normaliser: SampledNormaliser | None = None,
        drawn: torch.Tensor | None = None,
        own: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, float]:
        """Summed weighted NLL of `targets`' items for `users` given `inputs`' histories (with
        `dropout` applied to them, in training), and the summed target weight. With a
        `normaliser`, the softmax's normaliser is its estimate (from the items `drawn`, when
        given; else a fresh draw). `own`: the users' offsets, when the trainer holds them."""
        layout = inputs.batch(users)
        dropped = None if dropout is None else dropout(inputs.inputs[layout[0]])
        vectors = _user_vectors(net, inputs, users, layout, device, dropped, own)
        # Training asks for the inputs' own items as targets: the batch is already laid out.
        t_pos, t_offsets, t_rows, t_items = layout if targets is inputs else targets.batch(users)
        target_weights = targets.targets[t_pos]
        weights = torch.from_numpy(target_weights).to(device)
        items = torch.from_numpy(t_items).to(device)
        total = float(target_weights.sum(dtype=np.float64))
        per_user = torch.from_numpy(
            np.bincount(t_rows, weights=target_weights, minlength=len(users)).astype(np.float32)
        ).to(device)
        if normaliser is None:
            # The exact softmax: the targets' logits are read from its own blocks.
            found = Targets(torch.from_numpy(t_rows).to(device), items, weights)
            nll = weighted_softmax_nll(vectors, net.outputs(), net.item_bias, per_user, found)
            return nll, total
        # The NLL is linear in the targets' scores, so it needs no score per target: with
        # W_u a user's summed target weight, sum_t w_t (log Z_u - p_u.q_t - c_t) is
        # sum_u W_u log Z_u - p_u.(sum_t w_t q_t) - sum_i c_i (sum_{t=i} w_t), and the
        # inner sums are an embedding bag (one fused kernel each way) and a bincount.
        per_item = torch.from_numpy(
            np.bincount(t_items, weights=target_weights, minlength=net.item_bias.shape[0]).astype(
                np.float32
            )
        ).to(device)
        chosen = torch.nn.functional.embedding_bag(
            items,
            net.outputs(),
            torch.from_numpy(t_offsets).to(device),
            mode="sum",
            per_sample_weights=weights,
        )
        # log Z estimated from the draws.
        outputs, bias = normaliser.candidates(net, drawn)
        nll = (
            weighted_softmax_nll(vectors, outputs, bias, per_user)
            - (vectors * chosen).sum()
            - (per_item * net.item_bias).sum()
        )
        return nll, total

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
                nll, w = self._batch_loss(net, hist, val, chunk, device, None, normaliser, drawn)
                total += float(nll)
                weight += w
        total, weight = _summed(self.world, total, weight)
        return total / weight if weight else float("nan")
