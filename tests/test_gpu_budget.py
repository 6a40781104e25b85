"""Every Triton kernel variant the launchers use, compiled ahead of time at the real shapes for
every GPU target (sm_70 ... sm_120, `smae.kernels.gpus.TARGETS`), on the CPU: no register
spill and room for at least 2 programs per SM wherever the dispatch runs it, and the
propagation launch the plan chose is the one compiled. tests/gpu_budget.py does the compiling
(in a subprocess: it needs TRITON_INTERPRET unset) and says how the budget is counted. The
tables are printed (`-s` shows them):

    python -m pytest tests/test_gpu_budget.py -s                  # fp32, every target
    python -m pytest tests/test_gpu_budget.py -s -m exhaustive      # every dtype each target has, fallbacks too
"""
import functools
import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("triton")

from bench.shapes import PROPAGATION_SHAPES  # noqa: E402
from smae.kernels.gpus import TARGETS  # noqa: E402
from smae.kernels.propagation_plan import (  # noqa: E402
    candidates_shared_bytes,
    plan_propagation,
    propagation_gpu_reasons,
    window_reach,
)

SCRIPT = os.path.join(os.path.dirname(__file__), "gpu_budget.py")
TRAINING_KERNELS = {"_gather_rows_kernel", "_gather_rows_backward_kernel", "_gather_patches_kernel",
                    "_scatter_rows_kernel", "_scatter_rows_backward_kernel", "_patch_loss_kernel"}
PROPAGATION_KERNELS = {"_candidates_kernel", "_rescore_kernel"}
MIN_PROGRAMS_PER_SM = 2
(CHANNELS,) = {shape["channels"] for shape in PROPAGATION_SHAPES.values()}  # ViT-S: 384


@functools.lru_cache(maxsize=None)  # compiled once per session
def budget_rows(dtypes: str, fallbacks: bool) -> tuple[list[dict], str]:
    """Rows and tables of every target, compiled by two processes at once (half the targets
    each, the slow FMA-path sm_70 and sm_75 in different halves): the CPU has at least 2 cores."""
    env = {key: value for key, value in os.environ.items() if key != "TRITON_INTERPRET"}
    env["TRITON_DEFAULT_FP_FUSION"] = "1"  # Triton 3.9 warns unless the (unchanged) default is named
    command = [sys.executable, SCRIPT, "--table", "--dtypes", dtypes] + (["--fallbacks"] if fallbacks else [])
    halves = [list(TARGETS)[0::2], list(TARGETS)[1::2]]
    running = [subprocess.Popen(command + ["--targets", ",".join(half)], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for half in halves]
    lines = []
    for process in running:
        out, err = process.communicate(timeout=3600)
        assert process.returncode == 0, f"{' '.join(process.args)} failed:\n{err[-4000:]}"
        lines += out.splitlines()
    rows = [json.loads(line) for line in lines if line.startswith("{")]
    return rows, "\n".join(line for line in lines if not line.startswith("{"))


def planned(target: str, shape_name: str):
    shape = PROPAGATION_SHAPES[shape_name]
    reach = window_reach(shape["radius"], shape["window"])
    return plan_propagation(TARGETS[target], shape["grid"], shape["frames"], shape["global_frames"], reach,
                            shape["channels"], shape["topk"])


def check_budget(dtypes: str, fallbacks: bool) -> None:
    rows, table = budget_rows(dtypes, fallbacks)
    print("\n" + table)
    for target, gpu in TARGETS.items():
        mine = [row for row in rows if row["target"] == target]
        served = [row for row in mine if row["served"]]
        propagation_runs = not propagation_gpu_reasons(gpu, CHANNELS)
        expected = TRAINING_KERNELS | (PROPAGATION_KERNELS if propagation_runs else set())
        assert {row["kernel"] for row in served} == expected, f"{target}: a launcher's kernels were not all captured"
        failed = [row for row in served if "error" in row]
        assert not failed, f"{target}: Triton cannot build {failed}"
        mine = [row for row in mine if "error" not in row]  # fallbacks Triton cannot build: their reason holds
        spilled = [row for row in served if row["stack"]]
        crowded = [row for row in served if row["programs_per_sm"] < MIN_PROGRAMS_PER_SM]
        assert not spilled, f"{target}: register spills:\n{table}"
        assert not crowded, f"{target}: fewer than {MIN_PROGRAMS_PER_SM} programs per SM:\n{table}"
        for row in mine:
            if row["kernel"] != "_candidates_kernel":
                continue
            if not row["served"]:  # the reason the dispatch gives for leaving it to PyTorch must still hold
                assert row["mma"] == "no", f"{target}: Triton now uses tensor cores here; serve propagation:\n{table}"
                continue
            assert row["mma"] in ("mma", "wgmma", "tcgen05"), f"{target}: the affinity is off the tensor cores:\n{table}"
            for case, grid in zip(row["cases"], row["grids"]):
                plan = planned(target, case.split()[0])
                launched = (row["constexprs"]["QI"], row["constexprs"]["QJ"])
                assert launched == plan.query_tile, f"{target} {case}: tile {launched}, planned {plan.query_tile}"
                assert grid == [plan.query_tiles, plan.splits], f"{target} {case}: grid {grid} is not the plan's"
                assert row["warps"] == plan.candidates_warps
                # The plan counts resident programs from an upper bound of Triton's shared memory.
                assert row["dynamic_shared"] <= candidates_shared_bytes(plan.query_tile, CHANNELS), f"{target}: {row}"


@pytest.mark.slow
def test_kernels_fit_every_target_fp32():
    check_budget("fp32", fallbacks=False)


@pytest.mark.exhaustive
def test_kernels_fit_every_target_all_dtypes():
    check_budget("fp32,fp16,bf16", fallbacks=True)
