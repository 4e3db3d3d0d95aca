"""Weighted sums of embedding rows per bag (`embedding_bag` in "sum" mode with per-sample
weights), whose gradient is added into the table row by row.

torch's own backward sorts the bags' entries by row before it sums them: for a batch of the
ranking head on MovieLens (61 users, 8,600 history entries, a 9,000 x 64 table) forward and
backward took 0.97 ms a step, a ninth of the step. Scattering each entry's weighted gradient
into a zeroed table with `index_add_` gives the same gradient (up to the order of float sums)
in 0.52 ms.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class _WeightedBag(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any,
        table: torch.Tensor,
        entries: torch.Tensor,
        offsets: torch.Tensor,
        weights: torch.Tensor,
    ) -> torch.Tensor:
        ctx.save_for_backward(entries, offsets, weights)
        ctx.n_rows = table.shape[0]
        return nn.functional.embedding_bag(
            entries, table, offsets, mode="sum", per_sample_weights=weights
        )

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        entries, offsets, weights = ctx.saved_tensors
        lengths = torch.diff(offsets, append=offsets.new_tensor([len(entries)]))
        bags = torch.repeat_interleave(torch.arange(len(offsets), device=grad.device), lengths)
        rows = grad.index_select(0, bags).mul_(weights.unsqueeze(1))
        table = torch.zeros(ctx.n_rows, grad.shape[1], dtype=grad.dtype, device=grad.device)
        return table.index_add_(0, entries, rows), None, None, None


def weighted_bag(
    table: torch.Tensor, entries: torch.Tensor, offsets: torch.Tensor, weights: torch.Tensor
) -> torch.Tensor:
    """Row b: sum over j in [offsets[b], offsets[b + 1]) of weights[j] x table[entries[j]]
    (bags x columns); differentiable in `table` only (`weights` are constants)."""
    # torch leaves Function.apply untyped
    summed: torch.Tensor = _WeightedBag.apply(table, entries, offsets, weights)  # type: ignore[no-untyped-call]
    return summed
