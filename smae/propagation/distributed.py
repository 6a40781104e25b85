"""Spreading videos over `torchrun` processes.

Every rank lists the same videos and computes the same assignment (no communication needed):
longest videos first, each to the rank with the fewest frames so far (ties: lowest rank), so
ranks finish at about the same time. Ranks write their own videos; rank 0 scores after a barrier.
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch

# Ranks wait at the final barrier for the slowest one; long videos on big models take a while.
BARRIER_TIMEOUT = datetime.timedelta(hours=6)


def shard(frame_counts: list[int], rank: int, world_size: int) -> list[int]:
    """Indices of the videos rank `rank` of `world_size` propagates, in their listed order."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in 0..{world_size - 1}")
    loads = [0] * world_size
    owner = [0] * len(frame_counts)
    for index in sorted(range(len(frame_counts)), key=lambda i: (-frame_counts[i], i)):
        target = min(range(world_size), key=lambda r: (loads[r], r))
        owner[index] = target
        loads[target] += frame_counts[index]
    return [index for index in range(len(frame_counts)) if owner[index] == rank]


@dataclass(frozen=True)
class Ranks:
    rank: int
    world_size: int
    local_rank: int


def current_ranks() -> Ranks:
    """This process's place in the torch.distributed group (0 of 1 when there is none)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        local = int(os.environ.get("LOCAL_RANK", torch.distributed.get_rank()))
        return Ranks(torch.distributed.get_rank(), torch.distributed.get_world_size(), local)
    return Ranks(0, 1, 0)


def init_from_environment(use_cuda: bool) -> bool:
    """Joins the process group that `torchrun` describes in the environment (nccl on GPUs, gloo on
    CPUs). Returns True if this call created it (the caller then destroys it), False when not
    launched by torchrun with more than one process, or when a group already exists."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or torch.distributed.is_initialized():
        return False
    if use_cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    torch.distributed.init_process_group("nccl" if use_cuda else "gloo", timeout=BARRIER_TIMEOUT)
    return True


def barrier() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
