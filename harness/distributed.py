"""Several processes under ``torchrun``: who this process is, and the few collectives we need.

The global batch is the protocol's; every process reads and augments the whole global
batch with the same random draws (so mixup pairs within all 16 images, as on one GPU) and
trains on its own contiguous slice of it, batch norm is synchronised on GPUs (PyTorch's SyncBatchNorm
has no CPU kernel, so CPU processes keep their own statistics), evaluation scores every
test image exactly once, and only rank 0 writes files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_world(device_type: str) -> World:
    """Join the process group ``torchrun`` describes in the environment (a no-op alone)."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return World()
    import torch.distributed as dist

    if not dist.is_initialized():
        # GPU tensors over NCCL; the few CPU collectives (epoch loss, test scores) over gloo
        dist.init_process_group("cpu:gloo,cuda:nccl" if device_type == "cuda" else "gloo")
    return World(rank=dist.get_rank(), size=dist.get_world_size(), local_rank=int(os.environ.get("LOCAL_RANK", "0")))


def shard_of_batch(global_batch: np.ndarray, world: World) -> np.ndarray:
    """This rank's contiguous share of one global batch (sizes differ by at most one)."""
    return np.array_split(global_batch, world.size)[world.rank]


def gather_rows(array: np.ndarray, world: World) -> np.ndarray:
    """Concatenate every rank's rows in rank order (evaluation shards are contiguous)."""
    if world.size == 1:
        return array
    import torch.distributed as dist

    parts: list = [None] * world.size
    dist.all_gather_object(parts, array)
    return np.concatenate(parts)


def sum_over_processes(value: float, world: World) -> float:
    """The sum of ``value`` over every process (itself, alone)."""
    if world.size == 1:
        return value
    import torch
    import torch.distributed as dist

    total = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(total)
    return float(total)


def barrier(world: World) -> None:
    if world.size > 1:
        import torch.distributed as dist

        dist.barrier()


def finish(world: World) -> None:
    if world.size > 1:
        import torch.distributed as dist

        dist.destroy_process_group()
