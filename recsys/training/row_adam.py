"""Adam for a table whose rows each get a gradient once in a while: the users' free offsets of
the ranking head, where a step's batch holds about 1/64 of the users.

Dense Adam reads and writes the whole table at every step (and its gradient is zero-filled
first), although only the batch's rows have a gradient: per epoch that is steps x users x
factors of memory traffic. `RowAdam` takes dense Adam's steps, but a row's steps without a
gradient are applied late, together, when the row is next read. Between gradients a row's
moments only decay (m by beta1 a step, v by beta2), so step j moves it by
lr a_j m / (b_j sqrt(v) + eps), with m, v the row's moments when it was last brought up to
date (at step c), a_j = beta1**(j-c) / (1 - beta1**j) and b_j = sqrt(beta2**(j-c) /
(1 - beta2**j)). Summed over the idle steps, that is lr m A / (sqrt(v) + eps C / A) with
A = sum a_j / b_j and C = sum a_j / b_j**2: exact for one idle step, and to first order in
eps / sqrt(v) for more (`_Tails`). A and C are the same for every row last brought up to
date at the same step. Rows are brought up to date when a batch reads them (`rows`) and all
at once when the whole table is read (`flush`): for the weight average and validation, a few
times an epoch, and at MovieLens's size after every step, where this is dense Adam exactly.
"""

from __future__ import annotations

import numpy as np
import torch

from recsys.training.adam import Adam

_TAIL = 400
"""Steps of momentum worth summing: 0.9 ** 400 is 5e-19 of the first."""


class _Tails:
    """A and C (module docstring) for rows last brought up to date at each of `starts` and
    left without a gradient until `now`."""

    def __init__(self, beta1: float, beta2: float) -> None:
        self.beta1, self.beta2 = beta1, beta2

    def __call__(self, starts: np.ndarray, now: int) -> tuple[np.ndarray, np.ndarray]:
        k = np.arange(1, _TAIL + 1, dtype=np.float64)
        step = starts[:, None] + k
        a = self.beta1**k / (1 - self.beta1**step)
        b = np.sqrt(self.beta2**k / (1 - self.beta2**step))
        a[step > now] = 0.0  # the steps not taken yet
        return (a / b).sum(axis=1), (a / b**2).sum(axis=1)


class RowAdam:
    """Dense Adam's steps (no weight decay) on `table`, touching only the rows with a
    gradient and rows being read. Each training step: `rows(index)` for the batch's leaf
    copy, backward, then `step(index, rows)` on every rank, even one without users."""

    def __init__(
        self,
        table: torch.Tensor,
        lr: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        self.table = table
        self.lr = lr
        self.beta1, self.beta2 = betas
        self.eps = eps
        self.first = torch.zeros_like(table)
        self.second = torch.zeros_like(table)
        # The step each row's value and moments are current at.
        self.current = torch.zeros(table.shape[0], dtype=torch.int64, device=table.device)
        self.steps = 0
        # Every row is current at this step or later (0: the start).
        self._flushed = 0
        self._tails = _Tails(self.beta1, self.beta2)

    def rows(self, index: torch.Tensor) -> torch.Tensor:
        """A leaf copy of the rows `index`, as dense Adam would hold them now, for the
        forward pass of the next step; `step` reads its gradient."""
        with torch.no_grad():
            self._catch_up(index)
        return self.table[index].detach().requires_grad_()

    def step(self, index: torch.Tensor, rows: torch.Tensor | None) -> None:
        """Adam's step for the rows `index` from the gradient of `rows` (from `rows(index)`);
        every other row's step is taken when it is next read."""
        self.steps += 1
        if rows is None or rows.grad is None:
            return
        grad = rows.grad
        t = self.steps
        with torch.no_grad():
            first = self.first[index].mul_(self.beta1).add_(grad, alpha=1 - self.beta1)
            second = self.second[index].mul_(self.beta2).addcmul_(grad, grad, value=1 - self.beta2)
            self.first[index] = first
            self.second[index] = second
            denominator = (second / (1 - self.beta2**t)).sqrt_().add_(self.eps)
            self.table[index] -= (self.lr / (1 - self.beta1**t)) * first / denominator
            self.current[index] = t

    def flush(self) -> None:
        """Bring every row up to date: before the whole table is read. Whole-table passes,
        no gathers: every row that ever had a gradient still drifts on its momentum."""
        if self.steps == self._flushed:
            return
        with torch.no_grad():
            move, shift, keep_first, keep_second = self._factors(self.current - self._flushed)
            step = self.second.sqrt().add_(shift.unsqueeze(1))
            # A row never moved has m = v = 0 and moves nowhere.
            step.clamp_min_(torch.finfo(step.dtype).tiny)
            torch.div(self.first, step, out=step)
            self.table.addcmul_(move.unsqueeze(1), step, value=-self.lr)
            self.first.mul_(keep_first.unsqueeze(1))
            self.second.mul_(keep_second.unsqueeze(1))
            self.current.fill_(self.steps)
        self._flushed = self.steps

    def _catch_up(self, index: torch.Tensor) -> None:
        """Apply the steps without a gradient of rows `index` since their current step."""
        move, shift, keep_first, keep_second = self._factors(self.current[index] - self._flushed)
        first, second = self.first[index], self.second[index]
        step = second.sqrt().add_(shift.unsqueeze(1)).clamp_min_(torch.finfo(second.dtype).tiny)
        self.table[index] -= self.lr * move.unsqueeze(1) * first / step
        self.first[index] = first * keep_first.unsqueeze(1)
        self.second[index] = second * keep_second.unsqueeze(1)
        self.current[index] = self.steps

    def _factors(
        self, since_flush: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """For rows current at step `flushed + since_flush`, brought up to `steps`: A, the
        shift eps C / A, and the decay of each moment. Every row is current at or after the
        last flush, so these are a lookup in a table of a few entries."""
        now = self.steps
        starts = np.arange(self._flushed, now + 1, dtype=np.float64)
        idle = now - starts
        a_sums, c_sums = self._tails(starts, now)
        shift = self.eps * np.divide(c_sums, a_sums, out=np.zeros_like(a_sums), where=a_sums > 0)
        table = np.stack([a_sums, shift, self.beta1**idle, self.beta2**idle])
        lookup = torch.from_numpy(table).to(self.table.device, self.table.dtype)
        move, shift_, keep_first, keep_second = lookup[:, since_flush]
        return move, shift_, keep_first, keep_second


class WholeTableAdam:
    """`RowAdam`'s interface over dense Adam: every step moves every row (rows without a
    gradient on their decaying moments, the steps RowAdam applies late). Where the whole
    table is read after every step anyway (the weight average of a head with at most
    `WeightAverage.UPDATES_PER_EPOCH` steps an epoch: MovieLens's 11), RowAdam's late steps
    save nothing and its bookkeeping took a ninth of the step; this is one fused kernel."""

    def __init__(
        self,
        table: torch.Tensor,
        lr: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        self.table = table
        self._adam = Adam([[table]], lr=lr, betas=betas, eps=eps)
        self._grad = torch.zeros_like(table)

    def rows(self, index: torch.Tensor) -> torch.Tensor:
        """A leaf copy of the rows `index` for the next step's forward pass."""
        return self.table.detach()[index].requires_grad_()

    def step(self, index: torch.Tensor, rows: torch.Tensor | None) -> None:
        """Dense Adam's step, the gradient of `rows` (from `rows(index)`) at `index` and zero
        elsewhere; a rank without users (`rows` None) steps on zeros, as every rank must."""
        self._grad.zero_()
        if rows is not None and rows.grad is not None:
            self._grad[index] = rows.grad
        self.table.grad = self._grad
        self._adam.step()
        self.table.grad = None

    def flush(self) -> None:
        """Nothing to bring up to date: every step moved every row."""
