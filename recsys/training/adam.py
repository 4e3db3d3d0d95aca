"""Adam without `torch.optim`: the kernel that `torch.optim.Adam(fused=True)` runs, called
directly.

`torch.optim`'s optimisers import `torch._dynamo`, the compiler stack, on their first call
(their methods are wrapped in `torch._disable_dynamo`): 2.3 s of `recsys train` on MovieLens
on 2 cores, for a model that is never compiled. This is Adam (Kingma & Ba 2015) with L2
weight decay added to the gradient, as `torch.optim.Adam` does it, through the same fused
kernel (`torch._fused_adam_`), so it steps exactly as that would
(tests/test_adam.py compares them).

A parameter may come with a row-sparse gradient (the rating head's closed-form gradients,
or an embedding looked up with `sparse=True`): its rows are added into a dense buffer kept
zeroed between steps, and after the step only the rows written are zeroed again. The step is
dense Adam's all the same, without a gradient table zero-filled at every step (on MovieLens a
9,000 x 64 item table, of which a batch uses ~500 rows).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import torch


@dataclass
class ParamGroup:
    """Parameters that share a learning rate and a weight decay (both may change per step)."""

    params: list[torch.Tensor]
    lr: float
    weight_decay: float = 0.0
    exp_avg: list[torch.Tensor] = field(default_factory=list)
    exp_avg_sq: list[torch.Tensor] = field(default_factory=list)
    steps: list[torch.Tensor] = field(default_factory=list)
    dense_grads: dict[int, torch.Tensor] = field(default_factory=dict)
    """Per parameter with row-sparse gradients: the zeroed buffer they are added into."""


class Adam:
    def __init__(
        self,
        groups: Iterable[Iterable[torch.Tensor]],
        *,
        lr: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        self.param_groups = [ParamGroup(list(params), lr) for params in groups]
        self.betas = betas
        self.eps = eps
        for group in self.param_groups:
            for p in group.params:
                group.exp_avg.append(torch.zeros_like(p, memory_format=torch.preserve_format))
                group.exp_avg_sq.append(torch.zeros_like(p, memory_format=torch.preserve_format))
                # The kernel reads the step count from a float32 tensor beside the weights.
                group.steps.append(torch.zeros((), dtype=torch.float32, device=p.device))

    def set_lr(self, lr: float) -> None:
        for group in self.param_groups:
            group.lr = lr

    def zero_grad(self) -> None:
        for group in self.param_groups:
            for p in group.params:
                p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        """One step of every parameter that has a gradient (others keep their state)."""
        beta1, beta2 = self.betas
        for group in self.param_groups:
            live = [i for i, p in enumerate(group.params) if p.grad is not None]
            if not live:
                continue
            steps = [group.steps[i] for i in live]
            torch._foreach_add_(steps, 1)
            grads: list[torch.Tensor] = []
            written: dict[int, torch.Tensor] = {}
            for i in live:
                grad = group.params[i].grad
                assert grad is not None  # live
                if grad.is_sparse:
                    grad, written[i] = _densify(group, i, grad)
                grads.append(grad)
            torch._fused_adam_(
                [group.params[i] for i in live],
                grads,
                [group.exp_avg[i] for i in live],
                [group.exp_avg_sq[i] for i in live],
                [],
                steps,
                lr=group.lr,
                beta1=beta1,
                beta2=beta2,
                weight_decay=group.weight_decay,
                eps=self.eps,
                amsgrad=False,
                maximize=False,
            )
            for i, rows in written.items():
                group.dense_grads[i].index_fill_(0, rows, 0.0)


def _densify(group: ParamGroup, i: int, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Parameter `i`'s row-sparse `grad` added into its zeroed dense buffer: the buffer, and
    the rows written (to zero again after the step)."""
    buffer = group.dense_grads.get(i)
    if buffer is None:
        buffer = group.dense_grads[i] = torch.zeros_like(group.params[i])
    rows = grad._indices()[0]
    buffer.index_add_(0, rows, grad._values())
    return buffer, rows
