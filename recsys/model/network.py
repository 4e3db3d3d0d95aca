"""DotProductBias: the network only does the maths (fastai's `EmbeddingDotBias`).

    rating(u, i) = sigmoid(p_u . q_i + b_u + b_i + b) * (hi - lo) + lo

The sigmoid keeps every prediction inside the rating range (Howard & Gugger, "Deep Learning
for Coders", ch. 8). The global bias `b` is an addition to fastai's model: it starts at the
logit of the mean rating, so user and item biases learn deviations from the mean instead of
first spending epochs on finding it.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class DotProductBias(nn.Module):
    def __init__(
        self,
        n_users: int,
        n_items: int,
        n_factors: int,
        y_range: tuple[float, float],
        *,
        mean_rating: float | None = None,
        init_std: float = 0.01,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        lo, hi = y_range
        if not lo < hi:
            raise ValueError(f"y_range must be increasing, got {y_range}")
        self.y_range = (float(lo), float(hi))
        self.user_factors = nn.Parameter(torch.empty(n_users, n_factors))
        self.item_factors = nn.Parameter(torch.empty(n_items, n_factors))
        self.user_bias = nn.Parameter(torch.zeros(n_users))
        self.item_bias = nn.Parameter(torch.zeros(n_items))
        mean = (lo + hi) / 2 if mean_rating is None else mean_rating
        frac = min(max((mean - lo) / (hi - lo), 1e-3), 1 - 1e-3)
        self.global_bias = nn.Parameter(torch.tensor(math.log(frac / (1 - frac))))
        with torch.no_grad():
            self.user_factors.normal_(0.0, init_std, generator=generator)
            self.item_factors.normal_(0.0, init_std, generator=generator)

    @property
    def n_factors(self) -> int:
        return int(self.user_factors.shape[1])

    def logits(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        dot = (self.user_factors[users] * self.item_factors[items]).sum(-1)
        return dot + self.user_bias[users] + self.item_bias[items] + self.global_bias

    def squash(self, logits: torch.Tensor) -> torch.Tensor:
        lo, hi = self.y_range
        return torch.sigmoid(logits) * (hi - lo) + lo

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return self.squash(self.logits(users, items))
