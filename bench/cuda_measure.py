"""Shared measuring for the GPU benchmarks: a correctness check against eager, timing with the
device synchronised inside the timed function, bytes moved and GB/s against the device's measured copy bandwidth, speed-ups against
the eager provider of the same case, and peak memory beyond the inputs.

Kernels of ~10-100 us are timed in blocks: each timed call runs the op REPEATS times and
synchronises once, so pytest-benchmark's table shows time per REPEATS calls; extra_info holds
the per-call figures (`us_per_call`, `GBps`, `speedup_vs_eager`, ...).
"""
from __future__ import annotations

import functools
from typing import Callable

import torch

REPEATS = 20
_seconds: dict[tuple[str, str], float] = {}  # (group, provider) -> median seconds per call


@functools.lru_cache(maxsize=None)
def copy_bandwidth_gbps() -> float:
    """Device-to-device copy of 1 GiB (read + write counted), best of 10: the memory ceiling."""
    src = torch.empty(2**28, device="cuda", dtype=torch.float32)
    dst = torch.empty_like(src)
    dst.copy_(src)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    best = float("inf")
    for _ in range(10):
        start.record()
        dst.copy_(src)
        end.record()
        end.synchronize()
        best = min(best, start.elapsed_time(end) / 1e3)
    return 2 * src.numel() * src.element_size() / best / 1e9


def peak_extra_bytes(fn: Callable[[], object]) -> int:
    """Peak CUDA memory fn allocates beyond what was allocated before it (its outputs included)."""
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    result = fn()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - before
    del result
    return peak


def assert_close_to_eager(got: torch.Tensor, want: torch.Tensor) -> None:
    """bf16 compute, and another provider may sum in another order: 2% of the tensor's scale."""
    torch.testing.assert_close(got, want, atol=2e-2 * want.abs().max().item(), rtol=2e-2)


def nbytes(*tensors: torch.Tensor) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def time_cuda(benchmark, fn: Callable[[], object], *, group: str, provider: str, bytes_moved: int | None = None,
              repeats: int = REPEATS, rounds: int = 20, baselines: tuple[str, ...] = ("eager", "compile")) -> float:
    """Times fn on the GPU under `group` (one case: its providers side by side); returns seconds per
    call. Providers of the group timed earlier and named in `baselines` get a `speedup_vs_` entry."""
    benchmark.group = group

    def run():
        for _ in range(repeats):
            fn()
        torch.cuda.synchronize()

    benchmark.pedantic(run, rounds=rounds, warmup_rounds=3, iterations=1)
    seconds = benchmark.stats.stats.median / repeats
    _seconds[group, provider] = seconds
    info = dict(provider=provider, repeats=repeats, us_per_call=seconds * 1e6, device=torch.cuda.get_device_name())
    if bytes_moved is not None:
        gbps = bytes_moved / seconds / 1e9
        info.update(bytes_moved=bytes_moved, GBps=gbps, fraction_of_copy_bandwidth=gbps / copy_bandwidth_gbps())
    for baseline in baselines:
        if provider != baseline and (group, baseline) in _seconds:
            info[f"speedup_vs_{baseline}"] = _seconds[group, baseline] / seconds
    benchmark.extra_info.update(info)
    print(f"\n{group} {provider}: " + ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in info.items()))
    return seconds
