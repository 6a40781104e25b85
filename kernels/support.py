"""What the kernels give one GPU, in words: for `smae info` and the per-target budget tables.

The same decisions the dispatch makes (`gpus.gpu_reasons`, `propagation_plan`), said once per
GPU instead of once per call.
"""
from __future__ import annotations

import torch

from .gpus import BF16_MIN_CAPABILITY, GpuLimits, gpu_limits, gpu_reasons
from .propagation_plan import candidates_shared_bytes, propagation_gpu_reasons, query_tile_for, resident_by_shared

DTYPE_NAMES = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}


def triton_dtypes(gpu: GpuLimits) -> list[str]:
    """The dtypes the Triton kernels serve on this GPU (none before sm_70)."""
    return [name for dtype, name in DTYPE_NAMES.items() if not gpu_reasons(gpu, [dtype])]


def gpu_support(gpu: GpuLimits, channels: int = 384) -> str:
    """One line: the GPU, the dtypes its Triton kernels take, and where propagation runs for
    C channels (the fused kernels' query tile and programs per SM, or why PyTorch)."""
    head = f"{gpu.name} ({gpu.target}, {gpu.processors} SMs)"
    dtypes = triton_dtypes(gpu)
    if not dtypes:
        return f"{head}: every kernel on PyTorch: " + "; ".join(gpu_reasons(gpu, []))
    fallback = [name for name in DTYPE_NAMES.values() if name not in dtypes]
    line = f"{head}: Triton kernels for {', '.join(dtypes)}"
    if fallback:
        line += f" ({', '.join(fallback)} on PyTorch: no bf16 arithmetic before sm_{BF16_MIN_CAPABILITY})"
    reasons = propagation_gpu_reasons(gpu, channels)
    if reasons:
        return line + "; propagate_labels on PyTorch: " + "; ".join(reasons)
    tile = query_tile_for(gpu, channels)
    resident = resident_by_shared(gpu, candidates_shared_bytes(tile, channels))
    return line + f"; propagate_labels fused at C = {channels}: {tile[0]}x{tile[1]} query tiles, {resident} programs per SM"


def describe_gpu(device: torch.device | str = "cuda") -> str:
    """`gpu_support` of a CUDA device (reads its properties; needs CUDA)."""
    return gpu_support(gpu_limits(torch.device(device)))
