"""torch.distributed glue for `torchrun`: gloo on the CPU, nccl on the GPU."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: rank, world size, device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """True on rank 0 (the process that writes logs and checkpoints)."""
        return self.rank == 0


def init_distributed() -> DistInfo:
    """Initialise the process group when launched by torchrun; a single process otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return DistInfo(rank, world, local, device)


def rank_slots(batch_size: int, rank: int, world_size: int) -> list[int]:
    """Slots of a global batch of `batch_size` that process `rank` of `world_size` computes:
    one contiguous block, batch_size / world_size long (the Engine's split)."""
    return list(range(rank * batch_size // world_size, (rank + 1) * batch_size // world_size))


def all_reduce_gradients(model: torch.nn.Module, world_size: int) -> None:
    """Average gradients over processes (parameters without a gradient count as zero)."""
    if world_size <= 1:
        return
    for p in model.parameters():
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
        p.grad /= world_size


def all_reduce_mean(value: float, world_size: int) -> float:
    """Mean of a scalar over processes."""
    if world_size <= 1:
        return value
    t = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(t)
    return float(t.item()) / world_size


def barrier(world_size: int) -> None:
    """Wait for every process."""
    if world_size > 1:
        dist.barrier()
