"""The pieces the ranking head's training is made of (`recsys.training.choice`): users'
histories laid out for batches, input dropout, the sampled softmax normaliser, the scorer that
judges a head on validation, the optimisers, the moving average of the weights, and a batch's
loss (`batch_loss`).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from recsys.data.interactions import Interactions, is_sorted_by_pair
from recsys.model.network import ChoiceNet
from recsys.train_config import TrainConfig
from recsys.training.adam import Adam
from recsys.training.blocked_softmax import Targets, weighted_softmax_nll
from recsys.training.distributed import World
from recsys.training.row_adam import RowAdam, WholeTableAdam

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


def user_vectors(
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


def summed_over_ranks(world: World | None, *values: float) -> list[float]:
    """`values` summed over the ranks (as they are, in one process)."""
    return world.sum(*values) if world is not None else list(values)


def step_totals(
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
        # The items' output vectors, once for every batch of users the judge asks for.
        with torch.no_grad():
            self.outputs_t = net.outputs().T

    def predict_rows(self, users: np.ndarray, items: np.ndarray) -> None:
        return None

    def rank_scores(self, users: np.ndarray) -> torch.Tensor:
        users = np.asarray(users, dtype=np.int64)
        with torch.no_grad():
            vectors = user_vectors(
                self.net, self.inputs, users, self.inputs.batch(users), self.device
            )
            scores = torch.addmm(self.net.item_bias, vectors, self.outputs_t)
            if self.nll_of is not None:
                self._add_nll(users, scores)
        return scores.cpu()

    def _add_nll(self, users: np.ndarray, scores: torch.Tensor) -> None:
        """sum_t w_t (log Z_u - s_ut) over these users' validation targets."""
        assert self.nll_of is not None
        pos, _, rows, items = self.nll_of.batch(users)
        weights = self.nll_of.targets[pos]
        per_user = np.bincount(rows, weights=weights, minlength=len(users))
        # logsumexp by hand: the scores are finite, and one exp pass into a scratch copy took
        # two thirds of torch.logsumexp's time on MovieLens's batches.
        top = scores.amax(dim=1, keepdim=True)
        sums = torch.sub(scores, top).exp_().sum(dim=1)
        log_z = (sums.log_() + top.squeeze(1)).double().cpu().numpy()
        chosen = scores[torch.from_numpy(rows), torch.from_numpy(items)].double().cpu().numpy()
        self.nll_sum += float(per_user @ log_z - weights @ chosen)
        self.nll_weight += float(weights.sum(dtype=np.float64))
        self.scored.append(users)


def optimizers(
    net: ChoiceNet, cfg: TrainConfig, *, read_every_step: bool
) -> tuple[Adam, RowAdam | WholeTableAdam]:
    """Adam for the item side; for the users' offsets `RowAdam` (a batch's rows at a time),
    or dense Adam where the whole table is read after every step anyway (`read_every_step`).
    The L2 on item and genre embeddings is Adam's (coupled) weight decay, in the first
    parameter group, set before each step: the gradient of the penalty in the loss, without
    squaring whole tables every step (a fifth of an epoch's time when it was part of the
    loss)."""
    decayed = net.penalised_tables()
    ids = {id(t) for t in decayed} | {id(net.user_offset)}
    rest = [p for p in net.parameters() if id(p) not in ids]
    kind = WholeTableAdam if read_every_step else RowAdam
    return Adam([decayed, rest], lr=cfg.rank_lr), kind(net.user_offset, cfg.rank_lr)


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
        self.every_step = bool(decay_per_epoch) and self._every == 1
        """Whether the average reads the weights after every step."""
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


def batch_loss(
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
    vectors = user_vectors(net, inputs, users, layout, device, dropped, own)
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
