"""Test-session setup.

Without a GPU, Triton kernels run in its CPU interpreter; TRITON_INTERPRET must be set before any
kernel module is imported, hence here. The interpreter is slow, so the session's default kernel
backend is then the PyTorch reference, and tests that exercise a kernel select it explicitly
with `use_backend("triton")`. On a CUDA machine nothing is changed: kernels run natively.
"""
import os

import pytest
import torch

ON_GPU = torch.cuda.is_available()
if not ON_GPU:
    os.environ.setdefault("TRITON_INTERPRET", "1")
    os.environ.setdefault("SMAE_KERNELS", "torch")


@pytest.fixture
def device() -> torch.device:
    """CUDA where present, else the CPU (Triton kernels then run interpreted)."""
    return torch.device("cuda" if ON_GPU else "cpu")

