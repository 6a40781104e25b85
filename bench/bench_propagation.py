"""Label propagation of one DAVIS frame: our chunked reference and fused Triton kernel against
the two ways the established evaluation scripts compute it.

    python -m pytest bench/bench_propagation.py --benchmark-only -s                    # everything
    python -m pytest bench/bench_propagation.py --benchmark-only -s -k "cpu and vits8"  # the CPU target

Shapes: bench/shapes.py (DAVIS at 480x880: ViT-S/16 grid 30x55, ViT-S/8 grid 60x110; 20 context
frames plus the first, C = 384, top-7, radius 20). CPU cases run with 2 torch threads.

Providers (every output is checked against our reference before anything is timed):
- dino-dense: facebookresearch/dino's way: the whole (N, T*N) affinity, the window mask,
  top-k, the softmax weights scattered into a dense (N, T*N) matrix multiplied by the labels.
  On the CPU only at ViT-S/16 (at ViT-S/8 the two dense matrices need ~7.5 GB).
- crw-chunked: ajabri/videowalk's way: the full (N, N) window mask materialised once as an
  additive bias, queries in chunks of 100, each against every key of every frame.
- reference: `propagate_labels_reference` (query tiles against key boxes, bounded memory).
- triton: the fused kernels (CUDA only): tensor-core candidates, split over programs, re-scored
  in fp32; the launch plan (query tiles x splits) goes to extra_info.
CPU target: reference <= 0.6x crw-chunked at ViT-S/8; the ratio is printed and stored in
extra_info (`time_vs_crw_chunked`), with each provider's peak extra memory.
"""
from __future__ import annotations

import functools

import pytest
import torch

from bench.cuda_measure import peak_extra_bytes
from bench.shapes import PROPAGATION_SHAPES
from smae.kernels import propagate_labels, propagate_labels_reference, use_backend
from smae.kernels.propagation import window_mask

CPU_THREADS = 2
_median_seconds: dict[tuple[str, str, str], float] = {}


def _near(grid: tuple[int, int], radius: float, window: str, device) -> torch.Tensor:
    """bool (N, N): key cell m is inside query cell n's window."""
    rows, cols = torch.arange(grid[0], device=device), torch.arange(grid[1], device=device)
    return window_mask(rows, cols, rows, cols, radius, window)


def dino_style_propagation(query, keys, labels, *, grid, topk, temperature, radius, window, global_frames):
    """Dense: (N, T*N) affinity and a dense (N, T*N) weight matrix. -> (N, K) float32."""
    frames, n, channels = keys.shape
    scores = query @ keys.reshape(frames * n, channels).T  # (N, T * N)
    scores.view(n, frames, n)[:, global_frames:].masked_fill_(~_near(grid, radius, window, query.device)[:, None], float("-inf"))
    values, index = scores.topk(topk, dim=1)
    weights = torch.zeros_like(scores).scatter_(1, index, (values / temperature).softmax(dim=1))
    return weights @ labels.reshape(frames * n, -1).float()


def crw_style_propagation(query, keys, labels, *, grid, topk, temperature, radius, window, global_frames, chunk=100):
    """Chunks of `chunk` queries against all T*N keys, key-major (T*N, Q), full (N, N) mask bias."""
    frames, n, channels = keys.shape
    bias = torch.zeros(n, n, device=query.device).masked_fill_(~_near(grid, radius, window, query.device), -1e10)
    flat_keys = keys.reshape(frames * n, channels)
    flat_labels = labels.reshape(frames * n, -1).float()
    out = torch.empty(n, labels.shape[-1], device=query.device)
    for q0 in range(0, n, chunk):
        scores = (flat_keys @ query[q0 : q0 + chunk].T).view(frames, n, -1)  # (T, N keys, Q)
        scores[global_frames:] += bias[q0 : q0 + chunk].T
        values, index = (scores.view(frames * n, -1) / temperature).topk(topk, dim=0)  # (k, Q)
        out[q0 : q0 + chunk] = torch.einsum("kq,kqc->qc", values.softmax(dim=0), flat_labels[index])
    return out


def triton_propagation(query, keys, labels, **args):
    with use_backend("triton"):
        return propagate_labels(query, keys, labels, **args)


PROVIDERS = {
    "dino-dense": dino_style_propagation,
    "crw-chunked": crw_style_propagation,  # before the reference, so the reference's case holds the ratio
    "reference": propagate_labels_reference,
    "triton": triton_propagation,
}
DEVICES = ["cpu", "cuda"]


@functools.lru_cache(maxsize=2)
def _case_inputs(shape_name: str, device: str):
    """Unit-norm features, soft labels, and our reference's output for them."""
    shape = PROPAGATION_SHAPES[shape_name]
    gen = torch.Generator().manual_seed(0)
    n = shape["grid"][0] * shape["grid"][1]
    query = torch.nn.functional.normalize(torch.randn(n, shape["channels"], generator=gen), dim=-1).to(device)
    keys = torch.nn.functional.normalize(torch.randn(shape["frames"], n, shape["channels"], generator=gen), dim=-1).to(device)
    labels = torch.rand(shape["frames"], n, shape["classes"], generator=gen).softmax(-1).to(device)
    args = {key: shape[key] for key in ("grid", "topk", "temperature", "radius", "window", "global_frames")}
    return query, keys, labels, args, propagate_labels_reference(query, keys, labels, **args)


def _useful_flops(shape: dict) -> tuple[float, float]:
    """(FLOPs of the allowed scores only, FLOPs of the dense affinity) for one frame."""
    grid, frames, channels = shape["grid"], shape["frames"], shape["channels"]
    n = grid[0] * grid[1]
    allowed = _near(grid, shape["radius"], shape["window"], "cpu").sum().item()
    local = frames - shape["global_frames"]
    return 2.0 * channels * (shape["global_frames"] * n * n + local * allowed), 2.0 * channels * frames * n * n


def _peak_extra_bytes(fn, device: str) -> int:
    """Peak memory fn allocates beyond what is held before it: CUDA allocator stats, or the
    process's resident-set high-water mark on the CPU (reset through /proc/self/clear_refs)."""
    if device == "cuda":
        return peak_extra_bytes(fn)

    def status_kib(field: str) -> int:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith(field + ":"))

    before = status_kib("VmRSS")
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")  # resets VmHWM to the current RSS
    fn()
    return (status_kib("VmHWM") - before) * 1024


def _triton_plan(shape: dict, device) -> dict:
    """The fused kernels' launch plan for this shape on this GPU: query tiles, splits, candidates."""
    from smae.kernels.gpus import gpu_limits
    from smae.kernels.propagation_plan import plan_propagation, window_reach

    reach = window_reach(shape["radius"], shape["window"])
    plan = plan_propagation(gpu_limits(torch.device(device)), shape["grid"], shape["frames"], shape["global_frames"],
                            reach, shape["channels"], shape["topk"])
    return dict(query_tiles=plan.query_tiles, splits=plan.splits, candidates=plan.candidates,
                query_tile=list(plan.query_tile))


def _cases():
    for device in DEVICES:
        for shape_name in PROPAGATION_SHAPES:
            for provider in PROVIDERS:
                on_cpu = device == "cpu"
                marks = [pytest.mark.cpu_ok] if on_cpu else []  # bench/conftest.py skips the rest without CUDA
                if on_cpu and (provider == "triton" or (provider == "dino-dense" and shape_name == "davis-vits8")):
                    continue
                yield pytest.param(device, shape_name, provider, marks=marks, id=f"{device}-{shape_name}-{provider}")


@pytest.mark.parametrize("device,shape_name,provider", list(_cases()))
def test_propagation_speed(benchmark, device, shape_name, provider):
    threads = torch.get_num_threads()
    if device == "cpu":
        torch.set_num_threads(CPU_THREADS)
    try:
        query, keys, labels, args, expected = _case_inputs(shape_name, device)
        fn = PROVIDERS[provider]

        def run():
            out = fn(query, keys, labels, **args)
            if device == "cuda":
                torch.cuda.synchronize()
            return out

        peak = _peak_extra_bytes(run, device)
        torch.testing.assert_close(run(), expected, atol=1e-4, rtol=0)
        benchmark.group = f"propagate_labels {device} {shape_name}"
        slow = device == "cpu" and shape_name == "davis-vits8"
        benchmark.pedantic(run, rounds=2 if slow else 5, iterations=1, warmup_rounds=0 if device == "cpu" else 2)
    finally:
        torch.set_num_threads(threads)

    seconds = benchmark.stats.stats.median
    _median_seconds[device, shape_name, provider] = seconds
    useful, dense = _useful_flops(PROPAGATION_SHAPES[shape_name])
    benchmark.extra_info.update(
        peak_extra_mib=peak / 2**20,
        useful_tflops=useful / seconds / 1e12,  # only the scores the window allows
        dense_equivalent_tflops=dense / seconds / 1e12,
        threads=CPU_THREADS if device == "cpu" else None,
    )
    if provider == "triton":
        benchmark.extra_info.update(_triton_plan(PROPAGATION_SHAPES[shape_name], query.device))
    crw = _median_seconds.get((device, shape_name, "crw-chunked"))
    if crw is not None and provider != "crw-chunked":
        benchmark.extra_info["time_vs_crw_chunked"] = seconds / crw
        print(f"\n{provider} {device} {shape_name}: {seconds:.3f} s per frame = {seconds / crw:.2f}x crw-chunked"
              f" ({crw:.3f} s), peak extra memory {peak / 2**20:.0f} MiB")
