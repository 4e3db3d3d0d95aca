"""The weighted log-normaliser of a softmax over a product, computed a block of rows at a time
with its gradient, so the users x items logits never exist whole.

The ranking head's loss needs sum_u w_u log sum_j exp(p_u . q_j + b_j) over a batch of users
and a set of items (the catalog, or the sampled draws). As plain tensor operations, autograd
keeps the batch x items logits and passes over them about ten times (max, subtract,
exponentiate, sum, and again backwards): at 25M ratings that is 2,540 x 4,096 floats a step,
41 MB, which no cache holds, and those passes took half of an epoch. Here each block of rows
(about 1 MB of logits) goes through its softmax and straight into the gradients while it is
in the cache: the gradient of the log-normaliser with respect to the logits is the softmax
itself, weighted by w_u, and it is known in the forward pass because the loss is linear in
each user's log-normaliser. The backward pass only scales the stored gradients.
"""

from __future__ import annotations

from typing import Any

import torch

BLOCK_FLOATS = 1 << 18
"""Logits per block (1 MB of float32): within a core's L2 cache on current x86 servers."""


class _WeightedLogNormaliser(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any,
        vectors: torch.Tensor,
        outputs: torch.Tensor,
        bias: torch.Tensor,
        weights: torch.Tensor,
    ) -> torch.Tensor:
        grads = any(ctx.needs_input_grad[:3])
        if grads:
            g_vectors = torch.empty_like(vectors)
            g_outputs = torch.zeros_like(outputs)
            g_bias = torch.zeros_like(bias)
        total = torch.zeros((), dtype=torch.float64, device=vectors.device)
        rows = max(1, BLOCK_FLOATS // max(1, outputs.shape[0]))
        for start in range(0, vectors.shape[0], rows):
            block = vectors[start : start + rows]
            w = weights[start : start + rows]
            logits = torch.addmm(bias, block, outputs.T)
            top = logits.amax(dim=1, keepdim=True)
            exp = logits.sub_(top).exp_()
            sums = exp.sum(dim=1, keepdim=True)
            total += (w * (sums.log() + top).squeeze(1)).sum(dtype=torch.float64)
            if grads:
                soft = exp.mul_(w.unsqueeze(1) / sums)  # d(w_u log Z_u) / d logits
                torch.mm(soft, outputs, out=g_vectors[start : start + rows])
                g_outputs.addmm_(soft.T, block)
                g_bias += soft.sum(dim=0)
        if grads:
            ctx.save_for_backward(g_vectors, g_outputs, g_bias)
        return total.to(vectors.dtype)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        g_vectors, g_outputs, g_bias = ctx.saved_tensors
        return g_vectors * grad, g_outputs * grad, g_bias * grad, None


def weighted_log_normaliser(
    vectors: torch.Tensor, outputs: torch.Tensor, bias: torch.Tensor, weights: torch.Tensor
) -> torch.Tensor:
    """sum_u weights_u log sum_j exp(vectors_u . outputs_j + bias_j), a scalar, differentiable
    in `vectors` (users x factors), `outputs` (items x factors) and `bias` (items); `weights`
    (users) is a constant."""
    # torch leaves Function.apply untyped
    result: torch.Tensor = _WeightedLogNormaliser.apply(vectors, outputs, bias, weights)  # type: ignore[no-untyped-call]
    return result
