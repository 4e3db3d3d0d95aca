"""Data-parallel training under torchrun: one process per device, each with its shard.

    torchrun --nproc-per-node 2 -m recsys.cli train --distributed
    torchrun --nnodes 2 --node-rank 0 --rdzv-backend c10d --rdzv-endpoint HOST:29500 \\
        --nproc-per-node 4 -m recsys.cli train --distributed

Every rank reads its own shard of the ratings from the database (whole users, see
`bulk.Shard`), the ranks agree on one vocabulary, and the ranks' gradients are combined:
DistributedDataParallel averages the rating head's, `World.sum_grads` sums the ranking head's
item side (`recsys.training.choice`); gloo on CPUs, NCCL on GPUs. Training is the
single-process trainers with their sums all-reduced, so early stopping sees the same global
losses on every rank. Rank 0 evaluates and registers the model (`recsys.training.sharded`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import torch
import torch.distributed as dist

from recsys.errors import ConfigError

_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class World:
    """This process's place among the training processes, and its device."""

    rank: int
    size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def sum(self, *values: float) -> list[float]:
        """Element-wise sums over all ranks (float64, so large counts stay exact)."""
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return [float(v) for v in t.cpu()]

    def sum_tensor(self, values: torch.Tensor) -> torch.Tensor:
        """Element-wise sums of a tensor over all ranks (a copy on this rank's device)."""
        t = values.to(self.device, copy=True)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t

    def sum_grads(self, params: Sequence[torch.Tensor]) -> None:
        """Replace each parameter's gradient by its sum over all ranks (a missing one counts
        as zeros), in one all-reduce of a flat buffer: one message per step, not one per
        table."""
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        start = 0
        for p, g in zip(params, grads, strict=True):
            p.grad = flat[start : start + g.numel()].view_as(p)
            start += g.numel()

    def max(self, value: int) -> int:
        t = torch.tensor([value], dtype=torch.int64, device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return int(t.item())

    def union(self, ids: np.ndarray) -> np.ndarray:
        """The sorted distinct ids that any rank holds."""
        gathered: list[np.ndarray | None] = [None] * self.size
        dist.all_gather_object(gathered, np.unique(ids))
        return np.unique(np.concatenate([g for g in gathered if g is not None]))

    def part(self) -> None:
        """The ranks' last collective: every rank waits for the others here, then all leave
        the process group together, and rank 0 goes on alone. A rank that tears the group
        down while another still waits in it, or that waits minutes in a collective while
        rank 0 works alone, can abort under gloo ("terminate called without an active
        exception")."""
        dist.barrier()
        stop()

    def gather(self, value: int) -> list[int]:
        """`value` of every rank, in rank order."""
        gathered: list[int | None] = [None] * self.size
        dist.all_gather_object(gathered, value)
        return [int(v or 0) for v in gathered]


def start(device_choice: str = "auto") -> World:
    """Join the process group that torchrun set up (its environment variables name it)."""
    missing = [name for name in _ENV if name not in os.environ]
    if missing:
        raise ConfigError(
            f"--distributed runs under torchrun, which sets {', '.join(missing)}: "
            "torchrun --nproc-per-node N -m recsys.cli train --distributed"
        )
    use_cuda = device_choice == "cuda" or (device_choice == "auto" and torch.cuda.is_available())
    local_rank = int(os.environ["LOCAL_RANK"])
    if use_cuda:
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    # NCCL moves CUDA tensors between GPUs; gloo is PyTorch's CPU backend.
    dist.init_process_group(backend="nccl" if use_cuda else "gloo", timeout=timedelta(minutes=30))
    return World(dist.get_rank(), dist.get_world_size(), device)


def stop() -> None:
    """Leave the process group, if this process is still in one."""
    if dist.is_initialized():
        dist.destroy_process_group()
