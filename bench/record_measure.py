"""Measuring helpers of the device record: a median timer for CUDA or the CPU, poisoned
allocations, and flash-attention's error rule.

Error rule (flash-attention's tests): a kernel is right when its error against a float64 truth
is at most twice the error PyTorch's own implementation makes in the same precision,

    max|kernel - truth| <= 2 * max|torch - truth| + eps(dtype) * max|truth|

the last term one ulp at the largest magnitude, an allowance for outputs PyTorch computes exactly (a gather: zero error).
"""
from __future__ import annotations

import statistics
import time
from typing import Callable

import torch

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16, "float64": torch.float64}


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def median_seconds(fn: Callable[[], object], device: str, rounds: int, reps: int, warmup: int = 3) -> float:
    """Median over `rounds` of the time of `reps` back-to-back calls, divided by reps. CUDA:
    events around each round; CPU: the wall clock."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    times = []
    for _ in range(rounds):
        if device == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(reps):
                fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1e3 / reps)
        else:
            begin = time.perf_counter()
            for _ in range(reps):
                fn()
            times.append((time.perf_counter() - begin) / reps)
    return statistics.median(times)


class Poison:
    """Fills the CUDA caching allocator's free memory with NaN, so that outputs allocated next
    start as NaN and any element a kernel leaves unwritten fails the error check.

    The allocator hands out freed blocks again, so after `empty_cache` a large (> 1 MiB) and a
    small-pool block are allocated, filled and freed. `covered(t)` says whether tensor t really
    lies in poisoned memory (a block elsewhere may have been reused); the record keeps that too.
    On the CPU nothing can be poisoned and `covered` is None.
    """

    def __init__(self, device: str, large_bytes: int):
        self.device = device
        self.ranges: list[tuple[int, int]] = []
        if device != "cuda":
            return
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        blocks = [torch.full((max(large_bytes, 2**21) // 4 + 1024,), float("nan"), device="cuda"),
                  torch.full((2**18 - 64,), float("nan"), device="cuda")]  # just under the small pool's 1 MiB
        torch.cuda.synchronize()
        self.ranges = [(b.data_ptr(), b.data_ptr() + b.numel() * 4) for b in blocks]
        del blocks

    def covered(self, tensor: torch.Tensor) -> bool | None:
        if self.device != "cuda":
            return None
        begin = tensor.data_ptr()
        end = begin + tensor.numel() * tensor.element_size()
        return any(low <= begin and end <= high for low, high in self.ranges)


def max_error(got: torch.Tensor, truth: torch.Tensor) -> float:
    """max |got - truth| in float64; NaN anywhere gives inf, so it never passes."""
    difference = (got.double() - truth.double()).abs()
    if torch.isnan(difference).any():
        return float("inf")
    return difference.max().item() if difference.numel() else 0.0


def compare(kernel: torch.Tensor, torch_same: torch.Tensor, truth: torch.Tensor) -> dict:
    """Flash-attention's rule for one output (see the module docstring)."""
    kernel_error, torch_error = max_error(kernel, truth), max_error(torch_same, truth)
    scale = truth.double().abs().max().item() if truth.numel() else 0.0
    limit = 2 * torch_error + torch.finfo(kernel.dtype).eps * scale
    return {"kernel_error": kernel_error, "torch_error": torch_error, "limit": limit, "ok": kernel_error <= limit}
