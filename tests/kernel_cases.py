"""Shared parametrisation of the kernel tests: the dtypes a kernel is checked in and the `cuda`
marker. Tolerances: tests/tolerance.py (one rule for every kernel test).

Every case that runs a Triton kernel carries the `cuda` marker: on a CUDA machine
`pytest -m cuda` runs every kernel in every dtype natively; without one the same cases run in
Triton's interpreter (conftest.py), except those that need a GPU (bf16, large shapes), skipped.
"""
import pytest
import torch

ON_GPU = torch.cuda.is_available()

cuda = pytest.mark.cuda
# Cases that only a GPU can run; marked `cuda` too, so the GPU record selects them.
needs_gpu = [cuda, pytest.mark.skipif(not ON_GPU, reason="needs a CUDA device")]

# The Triton interpreter computes bf16 tl.dot wrongly and rounds float32 -> bfloat16 by truncation
# (a GPU rounds to nearest, as torch does), so bf16 is checked on a GPU only.
KERNEL_DTYPES = [
    pytest.param(torch.float32, id="float32", marks=cuda),
    pytest.param(torch.float16, id="float16", marks=cuda),
    pytest.param(torch.bfloat16, id="bfloat16", marks=needs_gpu),
]
