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
    number of ratings when `row_weights` are given. A module of its own so that
    DistributedDataParallel can wrap it: DDP averages gradients only for what runs through
    the forward of the module it wraps."""

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
