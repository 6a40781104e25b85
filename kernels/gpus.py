"""What a GPU offers one Triton program, and whether the kernels can run on it at all.

`GpuLimits` holds the figures that decide a launch: register file, shared memory per SM and per
block, resident threads and blocks per SM, and the SM count. `TARGETS` has one entry per
compute capability the kernels are built and budgeted for (tests/gpu_budget.py compiles every
kernel for each); `gpu_limits(device)` reads the device in hand from
`torch.cuda.get_device_properties`. Everything here is pure Python on plain numbers, so launch
plans and dispatch decisions are tested on the CPU with each target's figures.

Per-capability figures: CUDA C++ Programming Guide, "Compute Capabilities", technical
specifications per compute capability (registers, shared memory per SM and per block, resident
threads and blocks per SM); from sm_80 on, CUDA reserves 1 KiB of each block's shared memory.
sm_120's 100 KiB per SM and 99 KiB per block match CUTLASS's `sm120_smem_capacity_bytes`
(101376) and deviceQuery on an RTX 50-series part. SM counts are those of the named parts
(NVIDIA's product specifications); two parts of one capability differ, hence `PARTS`.
"""
from __future__ import annotations

import dataclasses
import importlib.metadata
from typing import Iterable

import torch

KIB = 1024

# Triton's NVIDIA backend lowers to PTX for sm_70 and newer (Volta on); older chips get PyTorch.
TRITON_MIN_CAPABILITY = 70
BF16_MIN_CAPABILITY = 80  # bf16 arithmetic (and bf16 tensor-core MMA) starts with Ampere


def _installed_version(package: str) -> tuple[int, int] | None:
    """(major, minor) of an installed package, read from its metadata (nothing is imported)."""
    try:
        major, minor = importlib.metadata.version(package).split(".")[:2]
    except importlib.metadata.PackageNotFoundError:
        return None
    return int(major), int(minor)


TRITON_VERSION = _installed_version("triton")


@dataclasses.dataclass(frozen=True)
class GpuLimits:
    """One GPU's budget for a program (a CUDA block). Bytes, counts; capability 86 = 8.6."""

    name: str
    capability: int
    processors: int  # SMs
    shared_per_sm: int
    shared_per_block: int  # the opt-in maximum of one block
    reserved_shared_per_block: int  # taken by CUDA from the SM for every resident block
    registers_per_sm: int = 65536
    threads_per_sm: int = 2048
    blocks_per_sm: int = 32

    @property
    def target(self) -> str:
        return f"sm_{self.capability}"

    @property
    def has_bf16(self) -> bool:
        return self.capability >= BF16_MIN_CAPABILITY


TARGETS: dict[str, GpuLimits] = {limits.target: limits for limits in (
    GpuLimits("Tesla V100", 70, 80, 96 * KIB, 96 * KIB, 0),
    GpuLimits("Tesla T4", 75, 40, 64 * KIB, 64 * KIB, 0, threads_per_sm=1024, blocks_per_sm=16),
    GpuLimits("A100", 80, 108, 164 * KIB, 163 * KIB, KIB),
    GpuLimits("RTX 3090", 86, 82, 100 * KIB, 99 * KIB, KIB, threads_per_sm=1536, blocks_per_sm=16),
    GpuLimits("RTX 4090", 89, 128, 100 * KIB, 99 * KIB, KIB, threads_per_sm=1536, blocks_per_sm=24),
    GpuLimits("H100 / H200", 90, 132, 228 * KIB, 227 * KIB, KIB),
    GpuLimits("B200", 100, 148, 228 * KIB, 227 * KIB, KIB),
    GpuLimits("RTX 5090", 120, 170, 100 * KIB, 99 * KIB, KIB, threads_per_sm=1536),
)}

# Other parts of the same capabilities: the launch plans must fill their SM counts too.
PARTS: dict[str, GpuLimits] = {
    **{limits.name: limits for limits in TARGETS.values()},
    "RTX A6000": dataclasses.replace(TARGETS["sm_86"], name="RTX A6000", processors=84),
    "L4": dataclasses.replace(TARGETS["sm_89"], name="L4", processors=58),
    "L40S": dataclasses.replace(TARGETS["sm_89"], name="L40S", processors=142),
}


def limits_from_properties(properties) -> GpuLimits:
    """GpuLimits of a `torch.cuda.get_device_properties` result (or any object with its
    attributes); figures the object lacks come from the nearest older entry of TARGETS."""
    capability = 10 * properties.major + properties.minor
    known = [limits for limits in TARGETS.values() if limits.capability <= capability]
    base = max(known, key=lambda limits: limits.capability) if known else TARGETS["sm_70"]
    return GpuLimits(
        name=getattr(properties, "name", base.name),
        capability=capability,
        processors=properties.multi_processor_count,
        shared_per_sm=getattr(properties, "shared_memory_per_multiprocessor", base.shared_per_sm),
        shared_per_block=getattr(properties, "shared_memory_per_block_optin", base.shared_per_block),
        reserved_shared_per_block=base.reserved_shared_per_block,
        registers_per_sm=getattr(properties, "regs_per_multiprocessor", base.registers_per_sm),
        threads_per_sm=getattr(properties, "max_threads_per_multi_processor", base.threads_per_sm),
        blocks_per_sm=base.blocks_per_sm,
    )


_SEEN: dict[int, GpuLimits] = {}  # device index -> limits, read once per process


def gpu_limits(device: torch.device) -> GpuLimits:
    """The limits of a CUDA device, from its properties (looked up once per device)."""
    index = device.index if device.index is not None else torch.cuda.current_device()
    if index not in _SEEN:
        _SEEN[index] = limits_from_properties(torch.cuda.get_device_properties(index))
    return _SEEN[index]


def device_gpu(device: torch.device) -> GpuLimits | None:
    """The limits of a CUDA device; None for any other (the interpreter runs on the CPU)."""
    return gpu_limits(device) if device.type == "cuda" else None


def programs_per_sm(gpu: GpuLimits, registers: int, shared: int, warps: int) -> int:
    """Resident programs per SM allowed by registers (per thread), shared memory (bytes per
    program) and the thread and block limits; 0 when one program does not fit a block.
    Registers are allocated per warp in units of 256, shared memory in units of 128 bytes plus
    the block's reserved share."""
    register_units = -(-registers * 32 // 256) * 256  # per warp
    by_registers = (gpu.registers_per_sm // register_units) // warps if register_units else gpu.blocks_per_sm
    if shared > gpu.shared_per_block:
        return 0
    block_shared = -(-(shared + gpu.reserved_shared_per_block) // 128) * 128
    by_shared = gpu.shared_per_sm // block_shared if block_shared else gpu.blocks_per_sm
    return min(by_registers, by_shared, gpu.threads_per_sm // (32 * warps), gpu.blocks_per_sm)


def gpu_reasons(gpu: GpuLimits, dtypes: Iterable[torch.dtype]) -> list[str]:
    """Why no Triton kernel can run on this GPU for tensors of these dtypes; [] when one can.
    Each reason is said once, however many tensors share it."""
    if gpu.capability < TRITON_MIN_CAPABILITY:
        return [f"{gpu.name} is {gpu.target}; Triton builds for sm_{TRITON_MIN_CAPABILITY} and newer"]
    if torch.bfloat16 in set(dtypes) and not gpu.has_bf16:
        return [f"bf16 inputs on {gpu.name} ({gpu.target}): bf16 arithmetic needs sm_{BF16_MIN_CAPABILITY} or newer "
                f"(use fp16 or fp32)"]
    return []
