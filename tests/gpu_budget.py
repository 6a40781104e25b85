r"""Ahead-of-time compile of every Triton kernel variant the launchers use at the real shapes, for
every GPU target in `smae.kernels.gpus.TARGETS` (sm_70 ... sm_120), with each variant's register
and shared-memory budget against that target's limits. No GPU needed: Triton compiles for a
named target on the CPU, with the `ptxas` its wheel ships, and `cuobjdump` (also shipped) reads
the registers, stack (spills) and static shared memory of the cubin it made.

    python tests/gpu_budget.py --table [--targets sm_80,sm_86] [--dtypes fp32] [--fallbacks]

prints one JSON line per kernel variant, then (--table) a table per target. --fallbacks also
compiles the kernels the dispatch leaves to PyTorch on a target (propagation before sm_80).

Run in its own process by tests/test_gpu_budget.py: kernels must be imported with
TRITON_INTERPRET unset (the test session sets it). Launches are captured by running the real
launchers on meta tensors with the kernels swapped for recorders and the device's limits
replaced by the target's, so a variant is compiled with exactly the arguments, constexprs,
num_warps and num_stages the launcher would pass on that GPU (the propagation plan included).
Uses Triton's JIT binder (`create_function_from_signature`, then `JITFunction._pack_args` or, in
Triton 3.4, the same steps inline), as its own launch path does; run with Triton 3.4, 3.6, 3.9.
Compiled kernels land in Triton's cache, so a second run takes seconds.

Programs per SM: `smae.kernels.gpus.programs_per_sm` (CUDA's occupancy rules: registers per
warp in units of 256, shared memory in units of 128 bytes plus the per-block reservation, the
thread and block limits per SM).
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile

import torch

if os.environ.get("TRITON_INTERPRET", "0") == "1":
    sys.exit("gpu_budget: run with TRITON_INTERPRET unset (the kernels must be JIT functions, not interpreted)")

import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource, make_backend  # noqa: E402
from triton.runtime.jit import JITFunction, create_function_from_signature  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from bench.shapes import PROPAGATION_SHAPES, TRAINING_SHAPES  # noqa: E402
from smae.kernels import masking_triton, patch_loss_triton, propagation_triton  # noqa: E402
from smae.kernels.gpus import TARGETS, GpuLimits, programs_per_sm  # noqa: E402
from smae.kernels.propagation_plan import propagation_gpu_reasons  # noqa: E402
from smae.kernels.support import gpu_support  # noqa: E402

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


class _Recorder:
    """Stands in for a JIT kernel: `kernel[grid](*args, **kwargs)` records instead of launching."""

    def __init__(self, name: str, fn: JITFunction, launches: list):
        self.name, self.fn, self.launches = name, fn, launches
        self.case = ""

    def __getitem__(self, grid):
        def record(*args, **kwargs):
            self.launches.append(dict(case=_Recorder.case, kernel=self.name, fn=self.fn, grid=grid, args=args, kwargs=kwargs))
        return record


def _meta(*shape, dtype=torch.float32):
    return torch.empty(shape, dtype=dtype, device="meta")


def _training_launches(name: str, shape: dict, dtype: torch.dtype) -> None:
    """The masking and patch-loss launches of one SiamMAE training step (forward and backward)."""
    batch, tokens, visible, patch = shape["batch"], shape["tokens"], shape["visible"], shape["patch"]
    enc, dec, size = shape["encoder_dim"], shape["decoder_dim"], shape["img_size"]
    ids_keep = _meta(batch, visible, dtype=torch.int64)
    ids_restore = _meta(batch, tokens, dtype=torch.int64)
    imgs = _meta(batch, 3, size, size, dtype=dtype)
    masking_triton.gather_rows(_meta(batch, tokens, enc, dtype=dtype), ids_keep, _meta(tokens, enc, dtype=dtype))
    masking_triton.gather_rows_backward(_meta(batch, visible, enc, dtype=dtype), ids_keep, tokens, dtype)
    masking_triton.gather_patches_rows(imgs, ids_keep, patch)
    masking_triton.scatter_rows(_meta(batch, 1 + visible, dec, dtype=dtype), ids_restore, _meta(dec, dtype=dtype),
                                _meta(1 + tokens, dec, dtype=dtype), 1)
    masking_triton.scatter_rows_backward(_meta(batch, 1 + tokens, dec, dtype=dtype), ids_restore, visible, 1, dtype)
    pred = _meta(batch, tokens, patch * patch * 3, dtype=dtype)
    mask = _meta(batch, tokens, dtype=torch.bool)
    for store_grad in (True, False):  # training step, evaluation loss
        patch_loss_triton.patch_loss_forward(pred, imgs, mask, patch, True, 1e-6, store_grad=store_grad)


def _propagation_launches(shape: dict, dtype: torch.dtype) -> None:
    """One DAVIS frame's propagation (the target's limits pick tiles, splits and warps)."""
    n = shape["grid"][0] * shape["grid"][1]
    args = {key: shape[key] for key in ("grid", "topk", "temperature", "radius", "window", "global_frames")}
    propagation_triton.propagate_labels_triton(
        _meta(n, shape["channels"], dtype=dtype), _meta(shape["frames"], n, shape["channels"], dtype=dtype),
        _meta(shape["frames"], n, shape["classes"]), **args)


def record_launches(gpu: GpuLimits, dtype_names: list[str], fallbacks: bool) -> list[dict]:
    """Every launch of the cases on `gpu`, recorded (the kernels are restored afterwards); the
    propagation launches only where the dispatch runs them, or with `fallbacks`."""
    launches: list[dict] = []
    originals = {}
    for module in (masking_triton, patch_loss_triton, propagation_triton):
        for attr, value in vars(module).items():
            if isinstance(value, JITFunction):
                originals[module, attr] = value
                setattr(module, attr, _Recorder(attr, value, launches))
    device_gpu = propagation_triton.device_gpu
    propagation_triton.device_gpu = lambda device: gpu
    try:
        for dtype_name in dtype_names:
            for name in ("vits16-b64", "vits8-b64"):
                _Recorder.case = f"train {name} {dtype_name}"
                _training_launches(name, TRAINING_SHAPES[name], DTYPES[dtype_name])
            for name, shape in PROPAGATION_SHAPES.items():
                _Recorder.case = f"{name} {dtype_name}"
                if fallbacks or not propagation_gpu_reasons(gpu, shape["channels"]):
                    _propagation_launches(shape, DTYPES[dtype_name])
    finally:
        for (module, attr), value in originals.items():
            setattr(module, attr, value)
        propagation_triton.device_gpu = device_gpu
    return launches


def _compile(launch: dict, backend, target: GPUTarget):
    fn, args, kwargs = launch["fn"], launch["args"], dict(launch["kwargs"])
    binder = create_function_from_signature(fn.signature, fn.params, backend)
    bound_args, specialization, options = binder(*args, **kwargs)
    if hasattr(fn, "_pack_args"):  # Triton >= 3.5
        options, signature, constexprs, attrs = fn._pack_args(backend, kwargs, bound_args, specialization, options)
    else:  # Triton 3.4 does the same steps inline in JITFunction.run
        from triton.runtime.jit import find_paths_if, get_iterable_path

        options = backend.parse_options(kwargs)
        signature = {param.name: kind for param, (kind, _) in zip(fn.params, specialization)}
        kinds = [kind for kind, _ in specialization]
        constexprs = {path: get_iterable_path(list(bound_args.values()), path)
                      for path in find_paths_if(kinds, lambda _, kind: kind == "constexpr")}
        values = [value for _, value in specialization]
        attrs = {path: backend.parse_attr(get_iterable_path(values, path))
                 for path in find_paths_if(values, lambda _, value: isinstance(value, str))}
    return triton.compile(ASTSource(fn, signature, constexprs, attrs), target=target, options=options.__dict__)


PROPAGATION_KERNELS = ("_candidates_kernel", "_rescore_kernel")
(CHANNELS,) = {shape["channels"] for shape in PROPAGATION_SHAPES.values()}  # ViT-S: 384


def _resource_usage(cubin: bytes) -> dict:
    """`cuobjdump --dump-resource-usage` of the cubin Triton's own ptxas made (with Triton's
    flags: a separate `ptxas -v` without them can miss spills): registers per thread, stack
    bytes per thread (spills: Triton kernels have no other local memory) and static shared
    memory (1 KiB on sm_90 and newer cubins: counted, so programs per SM err low)."""
    cuobjdump = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "kernel.cubin")
        with open(path, "wb") as file:
            file.write(cubin)
        report = subprocess.run([cuobjdump, "--dump-resource-usage", path], capture_output=True, text=True,
                                check=True).stdout

    def number(field: str) -> int:
        return int(re.search(rf"\b{field}:(\d+)", report).group(1))

    return dict(registers=number("REG"), stack=number("STACK") + number("LOCAL"), static_shared=number("SHARED"))


def _mma(ptx: str) -> str:
    """Which matrix instructions the kernel uses: Hopper's wgmma, Blackwell's tcgen05, mma.sync, or none (FMA)."""
    for name, marker in (("wgmma", "wgmma."), ("tcgen05", "tcgen05.mma"), ("mma", "mma.sync")):
        if marker in ptx:
            return name
    return "no"


def target_dtypes(gpu: GpuLimits, dtype_names: list[str]) -> list[str]:
    """The requested dtypes this target's kernels serve (no bf16 before sm_80)."""
    return [name for name in dtype_names if name != "bf16" or gpu.has_bf16]


def budget_rows(gpu: GpuLimits, dtype_names: list[str], fallbacks: bool = False) -> list[dict]:
    """One row per distinct compiled variant on `gpu`, with the cases that launch it; `served`:
    whether the dispatch runs it on this target (False: a fallback, compiled to show why)."""
    target = GPUTarget("cuda", gpu.capability, 32)
    backend = make_backend(target)
    rows, seen = [], {}
    propagation_served = not propagation_gpu_reasons(gpu, CHANNELS)
    for launch in record_launches(gpu, target_dtypes(gpu, dtype_names), fallbacks):
        try:
            kernel = _compile(launch, backend, target)
        except RuntimeError as error:  # Triton cannot build it for this target: a row that says so
            rows.append(dict(target=gpu.target, kernel=launch["kernel"], cases=[launch["case"]], grids=[list(launch["grid"])],
                             error=str(error).splitlines()[0],
                             served=propagation_served or launch["kernel"] not in PROPAGATION_KERNELS))
            continue
        if kernel.hash in seen:  # the same variant from another case
            seen[kernel.hash]["cases"].append(launch["case"])
            seen[kernel.hash]["grids"].append(list(launch["grid"]))
            continue
        metadata = kernel.metadata
        usage = _resource_usage(kernel.asm["cubin"])
        shared = metadata.shared + usage["static_shared"]
        row = dict(target=gpu.target, kernel=launch["kernel"], cases=[launch["case"]], warps=metadata.num_warps,
                   stages=metadata.num_stages, shared=shared, dynamic_shared=metadata.shared, registers=usage["registers"], stack=usage["stack"],
                   programs_per_sm=programs_per_sm(gpu, usage["registers"], shared, metadata.num_warps),
                   mma=_mma(kernel.asm["ptx"]), constexprs={key: value for key, value in launch["kwargs"].items()
                                                             if key.isupper() and isinstance(value, int)},
                   grids=[list(launch["grid"])], served=propagation_served or launch["kernel"] not in PROPAGATION_KERNELS)
        seen[kernel.hash] = row
        rows.append(row)
    return rows


def format_table(gpu: GpuLimits, rows: list[dict]) -> str:
    lines = [f"Triton {triton.__version__}, {gpu.target} ({gpu.name}, {gpu.processors} SMs): programs per SM against "
             f"{gpu.registers_per_sm} registers, {gpu.shared_per_sm // 1024} KiB shared per SM "
             f"({gpu.shared_per_block // 1024} KiB per block), {gpu.threads_per_sm} threads, {gpu.blocks_per_sm} blocks",
             f"{'kernel':30} {'warps':>5} {'regs':>5} {'stack':>6} {'smem':>7} {'prog/SM':>7} {'mma':>7} {'grid':>12}  cases"]
    for row in rows:
        if "error" in row:
            lines.append(f"{row['kernel']:30} does not compile: {row['error']}  {'; '.join(row['cases'])}")
            continue
        grid = "x".join(str(side) for side in row["grids"][0])
        cases = "; ".join(row["cases"]) + ("" if row["served"] else "  (PyTorch runs it here)")
        lines.append(f"{row['kernel']:30} {row['warps']:5} {row['registers']:5} {row['stack']:6} {row['shared']:7} "
                     f"{row['programs_per_sm']:7} {row['mma']:>7} {grid:>12}  {cases}")
    lines.append("dispatch: " + gpu_support(gpu, CHANNELS))
    return "\n".join(lines)


def _option(name: str, default: str) -> list[str]:
    return (sys.argv[sys.argv.index(name) + 1] if name in sys.argv else default).split(",")


if __name__ == "__main__":
    dtype_names = _option("--dtypes", "fp32,fp16,bf16")
    tables = []
    for target_name in _option("--targets", ",".join(TARGETS)):
        gpu = TARGETS[target_name]
        rows = budget_rows(gpu, dtype_names, fallbacks="--fallbacks" in sys.argv)
        tables.append(format_table(gpu, rows))
        for row in rows:
            print(json.dumps(row), flush=True)
    if "--table" in sys.argv:
        print("\n\n".join(tables))
