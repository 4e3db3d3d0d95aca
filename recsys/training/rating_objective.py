"""The rating head's objective: the mean squared error per sample with an L2 penalty on the
embedding rows each sample uses (Koren, Bell & Volinsky 2009), each row's share scaled by its
ratings (`count_weights`); and the data as tensors and the error sums that evaluate it.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from recsys.data.interactions import Interactions
from recsys.model.network import DotProductBias
from recsys.training.distributed import World


def tensors_of(data: Interactions, device: torch.device) -> tuple[torch.Tensor, ...]:
    # int32 rows index the embeddings as well as int64 ones, in half the memory: 25M ratings
    # take 300 MB on the device, not 500.
    return (
        torch.from_numpy(data.users).to(device),
        torch.from_numpy(data.items).to(device),
        torch.from_numpy(data.ratings).to(device),
    )


@torch.no_grad()
def squared_error_sum(
    net: DotProductBias, data: tuple[torch.Tensor, ...], batch: int = 1 << 20
) -> float:
    users, items, ratings = data
    total = torch.zeros((), dtype=torch.float64, device=users.device)
    for s in range(0, len(users), batch):
        err = net(users[s : s + batch], items[s : s + batch]) - ratings[s : s + batch]
        total += (err.double() ** 2).sum()
    return float(total)


def mean_squared_error(net: DotProductBias, data: tuple[torch.Tensor, ...]) -> float:
    n = len(data[0])
    return squared_error_sum(net, data) / n if n else float("nan")


def count_weights(
    rows: np.ndarray, n_rows: int, exponent: float, world: World | None
) -> torch.Tensor:
    """Per-rating weight of each row's L2: (its ratings / the mean of rated rows) ** -exponent.

    Counted over all ranks, so every rank regularises alike."""
    counts = torch.from_numpy(np.bincount(rows, minlength=n_rows)).double()
    if world is not None:
        counts = world.sum_tensor(counts).cpu()
    rated = counts[counts > 0]
    mean = float(rated.mean()) if len(rated) else 1.0
    return (counts.clamp(min=1.0) / mean).pow(-exponent).float()


class Objective(nn.Module):
    """The training loss of a batch: mean squared error plus a per-sample L2 on the embedding
    rows the batch used (batch-size independent, see TrainConfig), weighted per row by its
    number of ratings when `row_weights` are given.

    Two ways to its gradients, the same numbers (tests/test_training_kernels.py):
    `gradients`, in closed form, as row-sparse gradients of the rows the batch used; and
    `forward` with autograd, for DistributedDataParallel (a module of its own so that DDP can
    wrap it: it averages gradients only for what runs through the forward of the module it
    wraps; its NCCL backend cannot all-reduce sparse gradients). On MovieLens a batch is 512
    ratings, and the ~100 small operations of autograd's forward and backward (with the
    zero-filled gradient tables of a dense lookup's backward) cost more than the step's
    arithmetic: the closed form is about 30, and the epoch takes a quarter less time."""

    user_weight: torch.Tensor | None
    item_weight: torch.Tensor | None

    def __init__(
        self,
        net: DotProductBias,
        factor_l2: float,
        bias_l2: float,
        row_weights: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> None:
        super().__init__()
        self.net = net
        self.factor_l2 = factor_l2
        self.bias_l2 = bias_l2
        user_weight, item_weight = row_weights or (None, None)
        self.register_buffer("user_weight", user_weight)
        self.register_buffer("item_weight", item_weight)

    def forward(
        self, users: torch.Tensor, items: torch.Tensor, ratings: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The loss and the mean squared error, differentiable by autograd."""
        net = self.net
        p_u, q_i = net.user_factors[users], net.item_factors[items]
        b_u, b_i = net.user_bias[users], net.item_bias[items]
        pred = net.squash((p_u * q_i).sum(-1) + b_u + b_i + net.global_bias)
        mse = ((pred - ratings) ** 2).mean()
        user_l2, item_l2 = (p_u**2).sum(-1), (q_i**2).sum(-1)
        if self.user_weight is not None and self.item_weight is not None:
            user_l2 = user_l2 * self.user_weight[users]
            item_l2 = item_l2 * self.item_weight[items]
        loss = mse + self.factor_l2 * (user_l2 + item_l2).mean()
        if self.bias_l2:
            loss = loss + self.bias_l2 * (b_u**2 + b_i**2).mean()
        return loss, mse

    @torch.no_grad()
    def gradients(
        self, users: torch.Tensor, items: torch.Tensor, ratings: torch.Tensor
    ) -> torch.Tensor:
        """Set the network's gradients of the loss on this batch, in closed form (row-sparse
        for the tables, which `recsys.training.adam.Adam` takes); the mean squared error.

        With z = p_u . q_i + b_u + b_i + b, s = sigmoid(z) and the prediction
        s (hi - lo) + lo, the loss's derivative in z is c = 2 e (hi - lo) s (1 - s) / n for
        an error e over a batch of n; then p_u's gradient is c q_i + 2 l2 w_u p_u / n
        (w_u: the row's weight), q_i's likewise, and a bias's c + 2 bias_l2 b / n."""
        net = self.net
        n = len(users)
        users, items = users.long(), items.long()
        p_u, q_i = net.user_factors[users], net.item_factors[items]
        b_u, b_i = net.user_bias[users], net.item_bias[items]
        lo, hi = net.y_range
        z = (p_u * q_i).sum(-1).add_(b_u).add_(b_i).add_(net.global_bias)
        s = torch.sigmoid(z)
        error = s * (hi - lo) + lo - ratings
        c = error * ((2 * (hi - lo) / n) * s * (1 - s))
        w_u: torch.Tensor | float = 2 * self.factor_l2 / n
        w_i = w_u
        if self.user_weight is not None and self.item_weight is not None:
            w_u = self.user_weight[users].mul_(w_u).unsqueeze(1)
            w_i = self.item_weight[items].mul_(w_i).unsqueeze(1)
        g_p = torch.addcmul(p_u * w_u, c.unsqueeze(1), q_i)
        g_q = torch.addcmul(q_i * w_i, c.unsqueeze(1), p_u)
        shrink = 2 * self.bias_l2 / n
        net.user_factors.grad = _rows(users, g_p, net.user_factors)
        net.item_factors.grad = _rows(items, g_q, net.item_factors)
        net.user_bias.grad = _rows(users, b_u.mul_(shrink).add_(c), net.user_bias)
        net.item_bias.grad = _rows(items, b_i.mul_(shrink).add_(c), net.item_bias)
        net.global_bias.grad = c.sum()
        return (error * error).mean()


def _rows(index: torch.Tensor, values: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """A row-sparse gradient of `table`: `values` for the rows `index` (repeats add up)."""
    return torch.sparse_coo_tensor(index.unsqueeze(0), values, table.shape, check_invariants=False)
