"""Launch plan of the fused propagation kernels: a pure function of the GPU's limits and the shapes.

Shared by the dispatch (kernels/propagation.py: can this GPU take these inputs?) and the
launcher (kernels/propagation_triton.py: tiles, splits, warps), so neither imports the other
for it. Plain Python, no Triton: plans are tested on the CPU for every target in
`gpus.TARGETS` (tests/test_gpu_launch_plans.py), and the compiled kernels are checked
against them (tests/test_gpu_budget.py).

Shared memory of one `_candidates_kernel` program (as Triton allocates it on every target,
tests/gpu_budget.py; see `candidates_shared_bytes`): the fp16 query tile stays resident, Q x C, plus one key part,
C_HI x (KI * KJ). The walk is a `while` loop, which Triton does not software-pipeline, so
num_stages does not change it (the launcher leaves Triton's default). The query tile is the largest of QUERY_TILES that leaves room
for MIN_PROGRAMS_PER_SM programs: 8x8 (64 rows: one Hopper warpgroup MMA) where shared
memory allows (sm_80, sm_90, sm_100), 4x8 on 100 KiB parts (sm_86, sm_89, sm_120) and on
sm_70, 4x4 on sm_75's 64 KiB.
"""
from __future__ import annotations

import dataclasses
import math

from .gpus import TRITON_VERSION, GpuLimits, programs_per_sm

QUERY_TILES = ((8, 8), (4, 8), (4, 4))  # query cells (rows, columns) per program, largest first
KEY_TILE = (2, 16)  # 32 key cells: 2 grid rows of 16 (a window row is ~2 * radius wide)
MARGIN = 8  # extra fast-score candidates kept per query beyond topk (at least; CAND is a power of 2)
MAX_SPLITS = 16  # the merge holds SPLITS_PAD * CAND candidates per query
MIN_UNITS_PER_SPLIT = 16  # fewer key tiles per program and the launch costs more than it spreads
MIN_PROGRAMS_PER_SM = 2  # resident programs wanted per SM: one hides the other's loads
MMA_BARRIER_BYTES = 8  # sm_100: the mbarrier its tensor-core MMA (tcgen05) completes on
# The re-score gathers (BLOCK_Q, CAND, 16 channels) key values per step: 2048, 16 a thread
# (twice that spilled 8 bytes under Triton 3.6 at 60x110, tests/gpu_budget.py).
RESCORE_QUERIES_X_CAND = 128
# Triton (3.6, 3.9) emits mma.sync for tl.dot from sm_80 on and FMA loops before: measured by
# tests/gpu_budget.py --fallbacks (the candidates kernel then spills on sm_70 and sm_75).
TENSOR_CORE_DOT_MIN_CAPABILITY = 80
# Triton 3.6 aborts compiling the candidates kernel for sm_100 (TritonNvidiaGPUOptimizeTMemLayouts);
# 3.9 builds it (tests/gpu_budget.py under each); 3.7 and 3.8 were not checked.
BLACKWELL_DOT_MIN_TRITON = (3, 9)


def window_reach(radius: float, window: str) -> int:
    """The largest grid offset |di| (with dj = 0) the window allows: the key box half-width."""
    if window == "circle":
        return math.ceil(radius) - 1  # d^2 < r^2
    return math.floor(radius)  # |d| <= r


def next_power_of_2(n: int) -> int:
    return 1 << max(0, n - 1).bit_length()


def candidate_count(topk: int) -> int:
    """CAND: the fast-score candidates kept per query (a power of two >= topk + MARGIN)."""
    return next_power_of_2(topk + MARGIN)


def channel_parts(channels: int) -> tuple[int, int]:
    """(C_HI, C_LO): C as the largest power of two in it plus a padded rest (or 0), each >= 16
    (tl.dot's least K). 384 = 256 + 128, 768 = 512 + 256, 20 -> 16 + 16."""
    c_hi = max(16, 1 << (channels.bit_length() - 1))
    rest = channels - c_hi
    return c_hi, (max(16, next_power_of_2(rest)) if rest > 0 else 0)


def candidates_shared_bytes(query_tile: tuple[int, int], channels: int) -> int:
    """Shared memory of one candidates program: fp16 query tile (Q, C_HI + C_LO) + key part
    (C_HI, K) + the mbarrier sm_100's tensor-core MMA completes on. Triton at 8x8, C = 384:
    65536 bytes from sm_80 to sm_90 and sm_120 (64 x 384 x 2 + 256 x 32 x 2), 65544 on sm_100."""
    c_hi, c_lo = channel_parts(channels)
    return 2 * (query_tile[0] * query_tile[1] * (c_hi + c_lo) + c_hi * KEY_TILE[0] * KEY_TILE[1]) + MMA_BARRIER_BYTES


def resident_by_shared(gpu: GpuLimits, shared: int) -> int:
    """Programs of `shared` bytes that fit one SM's shared memory and block limit (0: not even
    one block); registers are left to the compiled budget (tests/gpu_budget.py)."""
    return programs_per_sm(gpu, registers=0, shared=shared, warps=1)


def query_tile_for(gpu: GpuLimits | None, channels: int) -> tuple[int, int] | None:
    """The largest query tile with MIN_PROGRAMS_PER_SM programs per SM by shared memory, else
    the largest that fits one block, else None (the GPU cannot take C channels). No GPU (the
    interpreter): the largest."""
    if gpu is None:
        return QUERY_TILES[0]
    fitting = [tile for tile in QUERY_TILES if resident_by_shared(gpu, candidates_shared_bytes(tile, channels)) >= 1]
    roomy = [tile for tile in fitting if resident_by_shared(gpu, candidates_shared_bytes(tile, channels)) >= MIN_PROGRAMS_PER_SM]
    return (roomy or fitting or [None])[0]


def propagation_gpu_reasons(gpu: GpuLimits, channels: int,
                            triton_version: tuple[int, int] | None = TRITON_VERSION) -> list[str]:
    """Why the fused propagation should not run on this GPU with C channels (and this Triton);
    [] when it can."""
    reasons = []
    if gpu.capability // 10 == 10 and triton_version is not None and triton_version < BLACKWELL_DOT_MIN_TRITON:
        reasons.append(f"Triton {triton_version[0]}.{triton_version[1]} fails to compile the candidates kernel for "
                       f"{gpu.target} (an MLIR pass on its tensor-memory layouts aborts); Triton "
                       f"{BLACKWELL_DOT_MIN_TRITON[0]}.{BLACKWELL_DOT_MIN_TRITON[1]} builds it")
    if gpu.capability < TENSOR_CORE_DOT_MIN_CAPABILITY:
        reasons.append(f"{gpu.target}: Triton lowers the candidates kernel's tl.dot to FMA before "
                       f"sm_{TENSOR_CORE_DOT_MIN_CAPABILITY} (no tensor cores; cuBLAS uses them)")
    if query_tile_for(gpu, channels) is None:
        need = candidates_shared_bytes(QUERY_TILES[-1], channels)
        reasons.append(f"C = {channels} channels need {need // 1024} KiB of shared memory per program; {gpu.name} "
                       f"({gpu.target}) allows {gpu.shared_per_block // 1024} KiB per block")
    return reasons


@dataclasses.dataclass(frozen=True)
class PropagationLaunch:
    query_tile: tuple[int, int]  # QI, QJ of `_candidates_kernel`
    query_tiles: int  # grid axis 0
    splits: int  # grid axis 1: programs sharing one query tile's key walk
    candidates: int  # CAND
    candidates_warps: int
    programs_per_sm: int  # resident candidates programs by shared memory (1 with no GPU)
    rescore_queries: int  # BLOCK_Q of `_rescore_kernel`


def plan_propagation(gpu: GpuLimits | None, grid: tuple[int, int], frames: int, global_frames: int, reach: int,
                     channels: int, topk: int) -> PropagationLaunch:
    """Tiles, splits and warps of one propagation on `gpu` (None: the interpreter, one program
    per query tile). Splits: enough programs to fill every resident slot of every SM, each
    with at least MIN_UNITS_PER_SPLIT key tiles to walk, at most MAX_SPLITS.
    Raises ValueError when no query tile fits the GPU (see `propagation_gpu_reasons`)."""
    tile = query_tile_for(gpu, channels)
    if tile is None:
        raise ValueError("; ".join(propagation_gpu_reasons(gpu, channels)))
    h, w = grid
    qi, qj = tile
    ki, kj = KEY_TILE
    query_tiles = -(-h // qi) * -(-w // qj)
    box_rows, box_cols = min(qi + 2 * reach, h), min(qj + 2 * reach, w)
    units = global_frames * -(-h // ki) * -(-w // kj) + (frames - global_frames) * (-(-box_rows // ki) * -(-box_cols // kj))
    resident = 1 if gpu is None else resident_by_shared(gpu, candidates_shared_bytes(tile, channels))
    processors = 1 if gpu is None else gpu.processors
    wanted = -(-resident * processors // query_tiles)
    splits = max(1, min(MAX_SPLITS, wanted, units // MIN_UNITS_PER_SPLIT))
    cand = candidate_count(topk)
    # The running best (Q, CAND) scores and indices live in registers; 4 warps at CAND <= 16
    # (sm_86, Q = 32: 128 registers a thread, 2 warps would need 134 and hide less latency).
    warps = 4 if cand <= 16 else 8
    return PropagationLaunch(tile, query_tiles, splits, cand, warps, resident, max(1, RESCORE_QUERIES_X_CAND // cand))
