"""Multi-process training helpers: process-group setup, collectives, and the batch sampler.

Launch with `torchrun --nproc-per-node=N [--nnodes=M ...] -m smae pretrain ...`; torchrun sets
RANK, WORLD_SIZE and LOCAL_RANK. A process group that already exists (e.g. made by a test with
a file:// rendezvous) is used as it is.

Batch layout: global step s uses world_size x accum_steps micro-batches, numbered
m = rank * accum_steps + a. Micro-batch m of step s is the same set of videos, with the same
mask seed, however the run is split, so N processes give the same result as one process
accumulating N micro-batches.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
import torch.distributed as dist

from smae.data.pairs import PairKey


@dataclass(frozen=True)
class DistContext:
    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed() -> tuple[DistContext, bool]:
    """The context of this process, and whether this call created the process group."""
    created = False
    if not dist.is_initialized() and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
        created = True
    rank = dist.get_rank() if dist.is_initialized() else 0
    world = dist.get_world_size() if dist.is_initialized() else 1
    if torch.cuda.is_available():
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    return DistContext(rank, world, device), created


def all_reduce_mean(value: torch.Tensor, world_size: int) -> torch.Tensor:
    """Mean over processes of a tensor (a no-op for one process)."""
    if world_size > 1:
        value = value.clone()
        dist.all_reduce(value)
        value /= world_size
    return value


def all_reduce_min_int(value: torch.Tensor, world_size: int) -> torch.Tensor:
    """Element-wise minimum over processes of an integer tensor (the tensor itself for one process)."""
    if world_size > 1:
        value = value.clone()
        dist.all_reduce(value, op=dist.ReduceOp.MIN)
    return value


def all_reduce_sum_int(value: int, device: torch.device, world_size: int) -> int:
    if world_size == 1:
        return value
    tensor = torch.tensor([value], dtype=torch.int64, device=device)
    dist.all_reduce(tensor)
    return int(tensor.item())


def gather_objects(obj: object, world_size: int) -> list:
    """[obj of rank 0, obj of rank 1, ...] on every process."""
    if world_size == 1:
        return [obj]
    gathered = [None] * world_size
    dist.all_gather_object(gathered, obj)
    return gathered


def micro_batch_seed(seed: int, step: int, micro_batch: int) -> int:
    """Seed of the mask generator for micro-batch `micro_batch` of optimizer step `step`."""
    return int(np.random.SeedSequence((seed, step, micro_batch)).generate_state(1)[0])


class StepBatchSampler:
    """Yields, for steps start_step..total_steps-1, this rank's micro-batches of PairKeys.

    Each pass over the videos is a fresh permutation seeded by (seed, pass); a step takes the
    next world_size x accum_steps x videos_per_micro videos of it, and this rank gets its
    accum_steps consecutive micro-batches. Videos left over at the end of a pass are dropped.
    """

    def __init__(self, num_videos: int, videos_per_micro: int, accum_steps: int, world_size: int, rank: int,
                 seed: int, start_step: int, total_steps: int):
        self.num_videos = num_videos
        self.videos_per_micro = videos_per_micro
        self.accum_steps = accum_steps
        self.rank = rank
        self.seed = seed
        self.start_step = start_step
        self.total_steps = total_steps
        self.videos_per_step = videos_per_micro * accum_steps * world_size
        self.steps_per_pass = num_videos // self.videos_per_step
        if self.steps_per_pass < 1:
            raise ValueError(f"{num_videos} videos are fewer than one step needs ({self.videos_per_step})")

    def __len__(self) -> int:
        return max(0, self.total_steps - self.start_step) * self.accum_steps

    def __iter__(self) -> Iterator[list[PairKey]]:
        order, order_pass = None, None
        for step in range(self.start_step, self.total_steps):
            pass_index, step_in_pass = divmod(step, self.steps_per_pass)
            if pass_index != order_pass:
                order = np.random.default_rng((self.seed, pass_index)).permutation(self.num_videos)
                order_pass = pass_index
            for a in range(self.accum_steps):
                first = step_in_pass * self.videos_per_step + (self.rank * self.accum_steps + a) * self.videos_per_micro
                yield [PairKey(pass_index, int(v)) for v in order[first:first + self.videos_per_micro]]
