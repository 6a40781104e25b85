"""Sections 1 and 2 of the device record: the environment, and the machine's own ceilings.

Ceilings (METHOD.md: measure them once, use them as the floors' denominators):
- copy: a device-to-device copy of `plan.copy_bytes` random bytes, read + write counted;
- matmul: a bf16 n x n x n product on random data (never zeros: they run faster), 2 n^3 FLOPs.
"""
from __future__ import annotations

import importlib.metadata
import os
import platform
import shutil
import subprocess
import sys

import torch

from bench.record_measure import median_seconds
from bench.record_plan import Plan

NVIDIA_SMI_FIELDS = ("name", "driver_version", "clocks.sm", "clocks.mem", "clocks.max.sm", "clocks.max.mem",
                     "temperature.gpu", "power.draw", "pstate")


def gpu_clocks() -> dict:
    """nvidia-smi's reading now (clocks in MHz, temperature in C, power in W), or why there is none."""
    if shutil.which("nvidia-smi") is None:
        return {"unavailable": "nvidia-smi is not on PATH"}
    query = ["nvidia-smi", f"--query-gpu={','.join(NVIDIA_SMI_FIELDS)}", "--format=csv,noheader,nounits"]
    result = subprocess.run(query, capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        return {"unavailable": f"{' '.join(query)} exited {result.returncode}: {result.stderr.strip()[:300]}"}
    values = [value.strip() for value in result.stdout.splitlines()[0].split(",")]
    return dict(zip(NVIDIA_SMI_FIELDS, values), command=" ".join(query))


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _git_commit() -> str | None:
    try:
        result = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
    except OSError:
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def environment(plan: Plan) -> dict:
    from bench.record_attention import xformers_dispatch  # the attention cases live there

    info = {
        "python": sys.version.split()[0], "platform": platform.platform(), "processors": _cpu_count(),
        "torch": torch.__version__, "torch_cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "triton": _version("triton"), "xformers": _version("xformers"), "av": _version("av"),
        "smae_commit": _git_commit(), "clocks_before": gpu_clocks(),
    }
    if plan.device == "cuda":
        properties = torch.cuda.get_device_properties(0)
        info.update(gpu=properties.name, capability=f"{properties.major}.{properties.minor}",
                    multiprocessors=properties.multi_processor_count, memory_gib=properties.total_memory / 2**30,
                    l2_mib=getattr(properties, "L2_cache_size", 0) / 2**20)
    info["xformers_dispatch"] = xformers_dispatch(plan)
    return info


def _cpu_count() -> int | None:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def _copy_ceiling(plan: Plan) -> dict:
    source = torch.randn(plan.copy_bytes // 4, device=plan.device)
    target = torch.empty_like(source)
    seconds = median_seconds(lambda: target.copy_(source), plan.device, rounds=10, reps=1)
    return {"bytes": 2 * plan.copy_bytes, "seconds": seconds, "GBps": 2 * plan.copy_bytes / seconds / 1e9}


def _matmul_ceiling(plan: Plan) -> dict:
    n = plan.matmul_n
    a, b = (torch.randn(n, n, device=plan.device, dtype=torch.bfloat16) for _ in range(2))
    seconds = median_seconds(lambda: a @ b, plan.device, rounds=10, reps=1)
    return {"n": n, "dtype": "bfloat16", "seconds": seconds, "TFLOPs": 2 * n**3 / seconds / 1e12}


def ceilings(plan: Plan) -> dict:
    """Each measurement's tensors are freed before the next one allocates."""
    return {"copy": _copy_ceiling(plan), "matmul_bf16": _matmul_ceiling(plan)}
