"""Ahead-of-time sm_90 (H100 / H200) compile of every Triton kernel variant the launchers use at
the real shapes, with each variant's register and shared-memory budget. No GPU needed: Triton
compiles for a named target, and the `ptxas` its wheel ships reports the machine-code budget.

    python tests/sm90_budget.py [--quick]     # one JSON line per kernel variant

Run in its own process by tests/test_sm90_budget.py: kernels must be imported with
TRITON_INTERPRET unset (the test session sets it). Launches are captured by running the real
launchers on meta tensors with the kernels swapped for recorders, so a variant is compiled with
exactly the arguments, constexprs, num_warps and num_stages the launcher would pass on a GPU.
Uses Triton's JIT binder (`create_function_from_signature`, then `JITFunction._pack_args` or, in
Triton 3.4, the same steps inline), as its own launch path does; run with Triton 3.4, 3.6, 3.9.

Budget of one program on sm_90 (CUDA occupancy rules): registers are allocated per warp in units
of 256, 65536 per SM; shared memory in units of 128 bytes plus 1 KiB the runtime reserves per
block, 228 KiB per SM and at most 227 KiB per block; at most 2048 threads and 32 blocks per SM.
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
    sys.exit("sm90_budget: run with TRITON_INTERPRET unset (the kernels must be JIT functions, not interpreted)")

import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource, make_backend  # noqa: E402
from triton.runtime.jit import JITFunction, create_function_from_signature  # noqa: E402

from smae.kernels import masking_triton, patch_loss_triton, propagation_triton  # noqa: E402

TARGET = GPUTarget("cuda", 90, 32)  # compute capability 9.0, warps of 32 threads
SM_REGISTERS = 65536
SM_SHARED = 228 * 1024
BLOCK_SHARED_MAX = 227 * 1024
RESERVED_SHARED = 1024
SM_THREADS = 2048
SM_BLOCKS = 32
H200_PROCESSORS = 132
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
    """One DAVIS frame's propagation on an H200 (132 processors pick the split)."""
    n = shape["grid"][0] * shape["grid"][1]
    args = {key: shape[key] for key in ("grid", "topk", "temperature", "radius", "window", "global_frames")}
    propagation_triton.propagate_labels_triton(
        _meta(n, shape["channels"], dtype=dtype), _meta(shape["frames"], n, shape["channels"], dtype=dtype),
        _meta(shape["frames"], n, shape["classes"]), **args)


def record_launches(quick: bool) -> list[dict]:
    """Every launch of the cases, recorded (the kernels are restored afterwards)."""
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
    from bench.shapes import PROPAGATION_SHAPES, TRAINING_SHAPES

    launches: list[dict] = []
    originals = {}
    for module in (masking_triton, patch_loss_triton, propagation_triton):
        for attr, value in vars(module).items():
            if isinstance(value, JITFunction):
                originals[module, attr] = value
                setattr(module, attr, _Recorder(attr, value, launches))
    processors = propagation_triton._processors
    propagation_triton._processors = lambda device: H200_PROCESSORS
    try:
        dtypes = {"fp32": DTYPES["fp32"]} if quick else DTYPES
        for dtype_name, dtype in dtypes.items():
            for name in ("vits16-b64", "vits8-b64"):
                _Recorder.case = f"train {name} {dtype_name}"
                _training_launches(name, TRAINING_SHAPES[name], dtype)
            for name, shape in PROPAGATION_SHAPES.items():
                _Recorder.case = f"{name} {dtype_name}"
                _propagation_launches(shape, dtype)
    finally:
        for (module, attr), value in originals.items():
            setattr(module, attr, value)
        propagation_triton._processors = processors
    return launches


def _compile(launch: dict, backend):
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
    return triton.compile(ASTSource(fn, signature, constexprs, attrs), target=TARGET, options=options.__dict__)


def _ptxas_report(ptx: str, arch: str) -> dict:
    """ptxas -v of the kernel's PTX: registers, spill bytes, static shared memory."""
    from triton.backends.nvidia.compiler import get_ptxas  # the ptxas Triton itself uses for this arch

    try:
        ptxas = get_ptxas(TARGET.arch).path
    except TypeError:  # Triton 3.4: one ptxas for every arch
        ptxas = get_ptxas().path
    with tempfile.TemporaryDirectory() as folder:
        source = os.path.join(folder, "kernel.ptx")
        with open(source, "w") as file:
            file.write(ptx)
        log = subprocess.run([ptxas, "-v", f"--gpu-name={arch}", source, "-o", os.path.join(folder, "kernel.cubin")],
                             capture_output=True, text=True, check=True).stderr

    def number(pattern: str) -> int:
        found = re.search(pattern, log)
        return int(found.group(1)) if found else 0

    return dict(registers=number(r"Used (\d+) registers"), spill_stores=number(r"(\d+) bytes spill stores"),
                spill_loads=number(r"(\d+) bytes spill loads"), static_shared=number(r"(\d+) bytes smem"))


def programs_per_sm(registers: int, shared: int, warps: int) -> int:
    """Resident programs per SM allowed by registers, shared memory and the thread/block limits."""
    register_units = -(-registers * 32 // 256) * 256  # per warp
    by_registers = (SM_REGISTERS // register_units) // warps if register_units else SM_BLOCKS
    block_shared = -(-(shared + RESERVED_SHARED) // 128) * 128
    by_shared = SM_SHARED // block_shared if shared <= BLOCK_SHARED_MAX else 0
    return min(by_registers, by_shared, SM_THREADS // (32 * warps), SM_BLOCKS)


def budget_table(quick: bool = False) -> list[dict]:
    backend = make_backend(TARGET)
    rows, seen = [], {}
    for launch in record_launches(quick):
        kernel = _compile(launch, backend)
        if kernel.hash in seen:  # the same variant from another case
            seen[kernel.hash]["cases"].append(launch["case"])
            continue
        metadata = kernel.metadata
        report = _ptxas_report(kernel.asm["ptx"], "sm_90a")  # Triton's own name for capability 90
        shared = metadata.shared + report["static_shared"]
        ptx = kernel.asm["ptx"]
        row = dict(kernel=launch["kernel"], cases=[launch["case"]], warps=metadata.num_warps, stages=metadata.num_stages,
                   shared=shared, programs_per_sm=programs_per_sm(report["registers"], shared, metadata.num_warps),
                   tensor_cores="wgmma" if "wgmma" in ptx else "mma" if "mma.sync" in ptx else "no", **report)
        seen[kernel.hash] = row
        rows.append(row)
    return rows


def format_table(rows: list[dict]) -> str:
    lines = [f"Triton {triton.__version__}, sm_90 (ptxas -v), programs per SM against 65536 registers / 228 KiB shared",
             f"{'kernel':32} {'warps':>5} {'regs':>5} {'spill':>6} {'smem':>7} {'prog/SM':>7} {'mma':>5}  cases"]
    for row in rows:
        spill = row["spill_stores"] + row["spill_loads"]
        lines.append(f"{row['kernel']:32} {row['warps']:5} {row['registers']:5} {spill:6} {row['shared']:7} "
                     f"{row['programs_per_sm']:7} {row['tensor_cores']:>5}  {'; '.join(row['cases'])}")
    return "\n".join(lines)


if __name__ == "__main__":
    table = budget_table(quick="--quick" in sys.argv)
    if "--table" in sys.argv:
        print(format_table(table))
    for row in table:
        print(json.dumps(row))
