"""What `bench/device_record.py` runs, at two sizes, and how long it should take on an H200.

`device_plan()` holds the problem sizes of the real record (bench/shapes.py's shapes, batch
256, DAVIS grids); `dry_plan()` the same structure at sizes that run in seconds on a CPU (the
Triton interpreter where a kernel must run). Every section reads its sizes from the plan, so
the dry run walks the same code.

The time model (`estimate_seconds`) predicts each section's device seconds from the device
plan's sizes: bytes over the measured copy bandwidth, FLOPs over the measured or datasheet
rate, plus fixed costs (process start, CUDA start, kernel compilation) that no size predicts.
Figures, with their sources (/work/.library/device KINDS.md and H200.md):
- COPY_BYTES_PER_S 4.3e12: device-to-device copy, bytes read + written, measured on an H200 here.
- BF16_FLOPS 788e12: 8192^3 bf16 matmul on random data, measured on an H200 here.
- FP32_FLOPS 67e12: plain fp32 (no tensor cores), H100/H200 datasheet; also used for fp64 (the
  datasheet's fp64 tensor-core rate is the same 67 TFLOP/s).
- ATTENTION_EFFICIENCY 0.4, MODEL_EFFICIENCY 0.35: the fraction of BF16_FLOPS fused attention and
  a ViT-S training step reach (assumptions; the record measures both and shows the error).
- The fixed costs below are assumptions, stated once here; the record puts measured seconds
  next to these estimates so the next session can correct them.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from bench.shapes import PROPAGATION_SHAPES, TRAINING_SHAPES

BUDGET_S = 540  # one `run` call is at most 10 minutes; the record keeps a minute for installs

COPY_BYTES_PER_S = 4.3e12
BF16_FLOPS = 788e12
BF16_FLOPS_DATASHEET = 989e12  # dense bf16, H100/H200 SXM datasheet: the MFU denominator
FP32_FLOPS = 67e12
ATTENTION_EFFICIENCY = 0.4
MODEL_EFFICIENCY = 0.35
PROPAGATION_EFFICIENCY = 0.1  # the fused top-k kernel: fp32 dots and register merges (assumption)
LAUNCH_S = 10e-6  # one kernel launch from Python
# One masking / loss bench case: 460 timed and warm-up calls (bench/cuda_measure.py) of a few
# launches each, launch-bound at these sizes, plus its correctness and peak-memory runs.
BENCH_CASE_S = 460 * 8 * LAUNCH_S + 0.15
PYTHON_START_S = 8.0  # a fresh interpreter importing torch, triton and smae (pytest, smae commands)
CUDA_START_S = 5.0  # the first CUDA call of a process (context, cuBLAS handles)
TRITON_COMPILE_S = 1.5  # one Triton kernel specialisation (dtype), compiled for sm_90
INDUCTOR_OP_COMPILE_S = 10.0  # torch.compile of one small op, forward and backward graphs
INDUCTOR_MODEL_COMPILE_S = 60.0  # torch.compile of a whole ViT-S training step
PNG_WRITE_S = 0.010  # one 854x480 indexed PNG and its label decoding (CPU)
SYNTH_FRAME_S = 0.085  # one 854x480 synthetic DAVIS frame, rendered and written (one core, measured on the CPU here)


@dataclass(frozen=True)
class AttentionCase:
    """q (batch, queries, heads, head_dim), k and v (batch, keys, heads, head_dim)."""
    batch: int
    queries: int
    keys: int
    heads: int
    head_dim: int


@dataclass(frozen=True)
class Plan:
    name: str  # "device" or "dry-run"
    device: str
    copy_bytes: int
    matmul_n: int
    kernel_shapes: dict[str, dict]  # bench/shapes.py TRAINING_SHAPES entries
    kernel_dtypes: tuple[str, ...]
    propagation_shapes: dict[str, dict]  # bench/shapes.py PROPAGATION_SHAPES entries
    parity_preset: str
    parity_batch: int
    parity_img: int
    parity_autocast: str | None  # the dtype of autocast in the "same precision" runs; None: none
    attention_cases: dict[str, AttentionCase]
    attention_dtype: str
    timing_rounds: int
    timing_reps: int
    bench_selection: dict[str, str]  # bench file -> pytest -k expression
    bench_plugin: str | None  # a pytest plugin module loaded into the bench runs (-p)
    train_presets: dict[str, tuple[str, int]]  # MFU counting: preset -> (model preset, batch)
    synth_args: tuple[str, ...]
    propagate_presets: tuple[str, ...]
    propagate_args: tuple[str, ...] = field(default=())


def _attention_cases(encoder_batch: int) -> dict[str, AttentionCase]:
    """Encoder self-attention (ViT-S: 6 heads of 64), feature extraction (ViT-S/8 at 480x880,
    8 frames per batch as `smae propagate`), decoder cross-attention (dec256d4b: 8 heads of 32)."""
    return {
        "encoder-vits16-b256": AttentionCase(encoder_batch, 197, 197, 6, 64),
        "encoder-vits8-b256": AttentionCase(encoder_batch, 785, 785, 6, 64),
        "features-vits8-480x880": AttentionCase(8, 6601, 6601, 6, 64),
        "decoder-cross-vits16-b256": AttentionCase(encoder_batch, 197, 197, 8, 32),
        "decoder-cross-vits8-b256": AttentionCase(encoder_batch, 785, 785, 8, 32),
    }


def device_plan() -> Plan:
    b256 = {name: shape for name, shape in TRAINING_SHAPES.items() if shape["batch"] == 256}
    return Plan(
        name="device", device="cuda", copy_bytes=2**30, matmul_n=8192,
        kernel_shapes=b256, kernel_dtypes=("float32", "float16", "bfloat16"),
        propagation_shapes=dict(PROPAGATION_SHAPES),
        parity_preset="vits16", parity_batch=32, parity_img=224, parity_autocast="bfloat16",
        attention_cases=_attention_cases(256), attention_dtype="bfloat16", timing_rounds=10, timing_reps=5,
        bench_selection={"bench_masking.py": "b256", "bench_loss.py": "b256", "bench_propagation.py": "cuda",
                         "bench_train_step.py": "b256"},
        bench_plugin=None,
        train_presets={name: (shape["preset"], shape["batch"]) for name, shape in b256.items()},
        synth_args=("--preset", "davis-val-size", "--formats", "davis"),
        propagate_presets=("vits16", "vits8"),
    )


_TINY_TRAINING = dict(batch=2, img_size=32, patch=8, tokens=16, visible=3, encoder_dim=24, decoder_dim=16, preset="tiny")


def dry_plan() -> Plan:
    """Tiny sizes for the CPU; bf16 is left out where Triton runs (the interpreter gets bf16 wrong)."""
    propagation = dict(frames=3, channels=16, classes=3, topk=3, temperature=0.7, radius=3.0, window="circle", global_frames=1)
    return Plan(
        name="dry-run", device="cpu", copy_bytes=2**22, matmul_n=128,
        kernel_shapes={"tiny-b2": _TINY_TRAINING}, kernel_dtypes=("float32", "float16"),
        propagation_shapes={"tiny-6x7": dict(grid=(6, 7), **propagation), "tiny-5x9": dict(grid=(5, 9), **propagation)},
        parity_preset="tiny", parity_batch=2, parity_img=32, parity_autocast=None,
        attention_cases={"tiny-self": AttentionCase(2, 17, 17, 2, 16), "tiny-cross": AttentionCase(2, 9, 17, 2, 8)},
        attention_dtype="float32", timing_rounds=2, timing_reps=1,
        # Without CUDA the bench files skip their GPU cases (bench/conftest.py): those runs
        # leave an empty JSON; propagation's CPU cases run, at the tiny shapes of the plugin.
        bench_selection={"bench_masking.py": "b256", "bench_loss.py": "b256", "bench_propagation.py": "cpu",
                         "bench_train_step.py": "b256"},
        bench_plugin="bench.record_dry_shapes",
        train_presets={"tiny-b2": ("tiny", 2)},
        synth_args=("--preset", "tiny", "--formats", "davis", "--set", "davis.videos=2", "davis.frames=4,4"),
        propagate_presets=("tiny",),
        propagate_args=("--device", "cpu", "--set", "size=64,112"),
    )


# ---- the time model: device seconds per section, from the device plan's sizes ----

def _attention_flops(case: AttentionCase, backward: bool) -> float:
    forward = 4.0 * case.batch * case.heads * case.queries * case.keys * case.head_dim
    return forward * (3.5 if backward else 1.0)  # backward: 2.5x forward (recomputed scores)


def _train_step_flops(shape: dict) -> float:
    """6 x parameters x tokens per pair (ViT-S encoder 21.7M on the whole past frame and the
    kept future tokens; decoder ~4.7M on the future frame's whole sequence), plus attention."""
    tokens = shape["tokens"] + 1
    encoder = 6 * 21.7e6 * (tokens + shape["visible"] + 1)
    decoder = 6 * 4.7e6 * tokens
    attention = 3 * 12 * 4 * tokens * tokens * 384 + 3 * 4 * 2 * 4 * tokens * tokens * 256
    return shape["batch"] * (encoder + decoder + attention)


def _propagation_frame_s(shape: dict) -> float:
    h, w = shape["grid"]
    n = h * w
    window_cells = min(n, 3.1416 * shape["radius"] ** 2)
    flops = 2.0 * shape["channels"] * n * (shape["global_frames"] * n + (shape["frames"] - shape["global_frames"]) * window_cells)
    return flops / (FP32_FLOPS * PROPAGATION_EFFICIENCY)


def _encoder_frame_s(patch: int) -> float:
    tokens = (480 // patch) * (880 // patch) + 1
    return (2 * 21.7e6 * tokens + 12 * 4 * tokens * tokens * 384) / (BF16_FLOPS * MODEL_EFFICIENCY)


def estimate_seconds(plan: Plan) -> dict[str, float]:
    """Expected device seconds of each section for `plan`'s sizes (see the module docstring)."""
    copy = 13 * 2 * plan.copy_bytes / COPY_BYTES_PER_S
    matmul = 13 * 2 * plan.matmul_n**3 / BF16_FLOPS
    shapes, dtypes = plan.kernel_shapes.values(), len(plan.kernel_dtypes)
    # masking + loss: ~7 kernels (forward and backward launchers) per dtype to compile; each of
    # the 4 checks moves a frame-sized batch (B x 3 x img^2, in float64 at worst) ~6 times:
    # truth, torch and kernel, forward and backward
    kernel_bytes = sum(4 * 6 * s["batch"] * 3 * s["img_size"] ** 2 * 8 for s in shapes) * dtypes
    correctness = (CUDA_START_S + 7 * dtypes * TRITON_COMPILE_S + kernel_bytes / COPY_BYTES_PER_S
                   + 2 * dtypes * TRITON_COMPILE_S  # propagation kernel: one per dtype and query tile
                   # propagation: the float64 truth and the chunked reference, each taken as 10x the kernel's time
                   + sum(2 * 10 * dtypes * _propagation_frame_s(s) for s in plan.propagation_shapes.values())
                   # model parity: a float64 step (at FP32_FLOPS, as the docstring says) and two bf16 ones
                   + 3 * _train_step_flops(dict(TRAINING_SHAPES["vits16-b64"], batch=plan.parity_batch)) / FP32_FLOPS)
    calls = plan.timing_rounds * plan.timing_reps + 3
    attention = CUDA_START_S + sum(
        calls * 6 * _attention_flops(case, backward) / (BF16_FLOPS * ATTENTION_EFFICIENCY) + 6 * 0.3  # 6 backends, set-up each
        for case in plan.attention_cases.values() for backward in (False, True))
    e2e = 0.0
    davis_frames = 2000  # DAVIS-2017 val size; the synthetic set is generated meanwhile, in the background
    for preset in plan.propagate_presets:
        patch = 8 if preset.endswith("8") else 16
        shape = PROPAGATION_SHAPES[f"davis-vits{patch}"]
        e2e += PYTHON_START_S + CUDA_START_S + 5.0 + davis_frames * (
            _encoder_frame_s(patch) + _propagation_frame_s(shape) + PNG_WRITE_S)
    return {
        "environment": CUDA_START_S + 2.0,
        "ceilings": copy + matmul + 1.0,
        "correctness": correctness,
        "attention": attention,
        "benchmarks": sum(bench_file_seconds(plan).values()),
        "end_to_end": e2e,
    }


def bench_file_seconds(plan: Plan) -> dict[str, float]:
    """Expected device seconds of each pytest-benchmark run of the benchmarks section."""
    shapes = len(plan.kernel_shapes)
    masking_cases = shapes * 3 * 2 * 3  # ops x passes x providers, 20 x 20 timed calls each
    start = PYTHON_START_S + CUDA_START_S
    return {
        "bench_masking.py": start + shapes * 3 * INDUCTOR_OP_COMPILE_S + 7 * TRITON_COMPILE_S + masking_cases * BENCH_CASE_S,
        "bench_loss.py": start + shapes * INDUCTOR_OP_COMPILE_S + 2 * TRITON_COMPILE_S + shapes * 6 * BENCH_CASE_S,
        "bench_propagation.py": start + 2 * TRITON_COMPILE_S + sum(
            4 * 10 * _propagation_frame_s(s) for s in plan.propagation_shapes.values()),
        "bench_train_step.py": start + sum(  # as bench_train_step.CUDA_CASES: eager, eager+fused, and at ViT-S/16
            # compile and compile+fused too (each compile of the whole model once)
            (4 if TRAINING_SHAPES[name]["preset"] == "vits16" else 2)
            * (13 * _train_step_flops(TRAINING_SHAPES[name]) / (BF16_FLOPS * MODEL_EFFICIENCY) + 3.0)
            + (2 * INDUCTOR_MODEL_COMPILE_S if TRAINING_SHAPES[name]["preset"] == "vits16" else 0.0)
            for name in plan.train_presets),
    }


def synth_seconds_one_core(frames: int = 2000) -> float:
    """The background `smae synth` of a DAVIS-val-sized set: one process, one core."""
    return frames * SYNTH_FRAME_S
