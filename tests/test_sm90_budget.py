"""Every Triton kernel variant the launchers use, compiled ahead of time for sm_90 (H100 / H200)
at the real shapes, on the CPU: no register spill, and room for at least 2 programs per SM.
tests/sm90_budget.py does the compiling (in a subprocess: it needs TRITON_INTERPRET unset) and
says how the budget is counted. The table is printed (`-s` shows it):

    python -m pytest tests/test_sm90_budget.py -s                  # fp32 at every shape
    python -m pytest tests/test_sm90_budget.py -s -m exhaustive      # fp32, fp16 and bf16
"""
import functools
import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("triton")

SCRIPT = os.path.join(os.path.dirname(__file__), "sm90_budget.py")
KERNELS = {"_gather_rows_kernel", "_gather_rows_backward_kernel", "_gather_patches_kernel", "_scatter_rows_kernel",
           "_scatter_rows_backward_kernel", "_patch_loss_kernel", "_candidates_kernel", "_rescore_kernel"}
MIN_PROGRAMS_PER_SM = 2


@functools.lru_cache(maxsize=None)  # compiled once per session
def budget_rows(quick: bool) -> tuple[list[dict], str]:
    env = {key: value for key, value in os.environ.items() if key != "TRITON_INTERPRET"}
    env["TRITON_DEFAULT_FP_FUSION"] = "1"  # Triton 3.9 warns unless the (unchanged) default is named
    command = [sys.executable, SCRIPT, "--table"] + (["--quick"] if quick else [])
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, f"{' '.join(command)} failed:\n{done.stderr[-4000:]}"
    lines = done.stdout.splitlines()
    rows = [json.loads(line) for line in lines if line.startswith("{")]
    return rows, "\n".join(line for line in lines if not line.startswith("{"))


def check_budget(quick: bool) -> None:
    rows, table = budget_rows(quick)
    print("\n" + table)
    assert {row["kernel"] for row in rows} == KERNELS, "a launcher's kernels were not all captured"
    spilled = [row for row in rows if row["spill_stores"] or row["spill_loads"]]
    crowded = [row for row in rows if row["programs_per_sm"] < MIN_PROGRAMS_PER_SM]
    assert not spilled, f"register spills:\n{table}"
    assert not crowded, f"fewer than {MIN_PROGRAMS_PER_SM} programs per SM:\n{table}"
    candidates = [row for row in rows if row["kernel"] == "_candidates_kernel"]
    assert all(row["tensor_cores"] == "wgmma" for row in candidates), f"the affinity is off Hopper's tensor cores:\n{table}"


@pytest.mark.slow
def test_kernels_fit_sm90_fp32():
    check_budget(quick=True)


@pytest.mark.exhaustive
def test_kernels_fit_sm90_all_dtypes():
    check_budget(quick=False)
