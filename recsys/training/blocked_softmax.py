"""The weighted negative log-likelihood of a softmax over a product, computed a block of rows
at a time with its gradient, so the users x items logits never exist whole.

The ranking head's loss needs sum_u w_u log sum_j exp(p_u . q_j + b_j) over a batch of users
and a set of items (the catalog, or the sampled draws), less the weighted logits of each
user's targets. As plain tensor operations, autograd keeps the batch x items logits and
passes over them about ten times (max, subtract, exponentiate, sum, and again backwards): at
25M ratings that is 2,540 x 4,096 floats a step, 41 MB, which no cache holds, and those passes
took half of an epoch. Here each block of rows (about 2 MB of logits) goes through its softmax
and straight into the gradients while it is in the cache: the gradient of the log-normaliser
with respect to the logits is the softmax itself, weighted by w_u, and it is known in the
forward pass because the loss is linear in each user's log-normaliser. The backward pass only
scales the stored gradients.

Where the targets are among the items (the exact softmax), their logits are read from the
same blocks and their gradient (minus each target's weight) is subtracted from the softmax
in place, so the targets cost no pass of their own over the item table: on MovieLens, two
embedding bags and their sorted backward had taken a sixth of an epoch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

BLOCK_FLOATS = 1 << 19
"""Logits per block (2 MB of float32), balanced over the blocks of a batch: on 2 cores, 64
users x 9,000 items took 2.1 ms a step as one block against 2.8 ms as three of 1 MB, and
2,540 users x 4,096 draws 24 ms against 28 ms (blocks of half or twice the size were slower)."""


@dataclass(frozen=True)
class Targets:
    """Each user's target items and their weights, as flat entries sorted by `rows` (the
    user's row in the batch); `items` index the outputs given with them."""

    rows: torch.Tensor
    items: torch.Tensor
    weights: torch.Tensor


def _block_rows(n_rows: int, n_items: int) -> int:
    blocks = max(1, round(n_rows * n_items / BLOCK_FLOATS))
    return max(1, -(-n_rows // blocks))


class _WeightedSoftmaxNLL(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any,
        vectors: torch.Tensor,
        outputs: torch.Tensor,
        bias: torch.Tensor,
        weights: torch.Tensor,
        targets: Targets | None,
        grad_enabled: bool,
    ) -> torch.Tensor:
        # needs_input_grad says which inputs require a gradient even under torch.no_grad
        # (validation), where computing the gradients cost two of the three products.
        grads = grad_enabled and any(ctx.needs_input_grad[:3])
        if grads:
            g_vectors = torch.empty_like(vectors)
            # Written by the first block, summed into by the rest: no zero-filled pass.
            g_outputs = torch.empty_like(outputs)
            g_bias = torch.empty_like(bias)
        total = torch.zeros((), dtype=torch.float64, device=vectors.device)
        rows = _block_rows(vectors.shape[0], outputs.shape[0])
        starts = torch.arange(0, vectors.shape[0] + rows, rows, device=vectors.device)
        bounds = None if targets is None else torch.searchsorted(targets.rows, starts).tolist()
        for k, start in enumerate(range(0, vectors.shape[0], rows)):
            block = vectors[start : start + rows]
            w = weights[start : start + rows]
            logits = torch.addmm(bias, block, outputs.T)
            chosen = None
            if targets is not None and bounds is not None:
                lo, hi = bounds[k], bounds[k + 1]
                chosen = (targets.rows[lo:hi] - start, targets.items[lo:hi])
                t_weights = targets.weights[lo:hi]
                total -= (logits[chosen] * t_weights).sum(dtype=torch.float64)
            top = logits.amax(dim=1, keepdim=True)
            exp = logits.sub_(top).exp_()
            sums = exp.sum(dim=1, keepdim=True)
            total += (w * (sums.log() + top).squeeze(1)).sum(dtype=torch.float64)
            if grads:
                soft = exp.mul_(w.unsqueeze(1) / sums)  # d(w_u log Z_u) / d logits
                if chosen is not None:
                    soft.index_put_(chosen, -t_weights, accumulate=True)
                torch.mm(soft, outputs, out=g_vectors[start : start + rows])
                if start == 0:
                    torch.mm(soft.T, block, out=g_outputs)
                    torch.sum(soft, dim=0, out=g_bias)
                else:
                    g_outputs.addmm_(soft.T, block)
                    g_bias += soft.sum(dim=0)
        if grads:
            ctx.save_for_backward(g_vectors, g_outputs, g_bias)
        return total.to(vectors.dtype)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        g_vectors, g_outputs, g_bias = ctx.saved_tensors
        # In place: the gradients were made for this backward pass alone (one per forward).
        return g_vectors.mul_(grad), g_outputs.mul_(grad), g_bias.mul_(grad), None, None, None


def weighted_softmax_nll(
    vectors: torch.Tensor,
    outputs: torch.Tensor,
    bias: torch.Tensor,
    weights: torch.Tensor,
    targets: Targets | None = None,
) -> torch.Tensor:
    """sum_u weights_u log sum_j exp(s_uj), less sum over `targets` of weight x s_ui, where
    s_uj = vectors_u . outputs_j + bias_j: a scalar, differentiable in `vectors` (users x
    factors), `outputs` (items x factors) and `bias` (items); `weights` (users) and the
    targets are constants. Without targets, the weighted log-normaliser alone."""
    # torch leaves Function.apply untyped
    result: torch.Tensor = _WeightedSoftmaxNLL.apply(  # type: ignore[no-untyped-call]
        vectors, outputs, bias, weights, targets, torch.is_grad_enabled()
    )
    return result
