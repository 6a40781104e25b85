"""Shared tables for kernel tests: the dtypes a kernel can be checked in on this machine and
the tolerances per dtype (one table; each loosened entry says why)."""
import torch

ON_GPU = torch.cuda.is_available()

# The Triton interpreter computes bf16 tl.dot wrongly and rounds float32 -> bfloat16 by truncation
# (a GPU rounds to nearest, as torch does), so bf16 is checked on a GPU only.
KERNEL_DTYPES = [torch.float32, torch.float16, torch.bfloat16] if ON_GPU else [torch.float32, torch.float16]

TOLERANCES = {
    torch.float64: dict(atol=1e-10, rtol=1e-10),
    # Summation order differs from the reference's; TF32 is not used by these element-wise kernels.
    torch.float32: dict(atol=1e-5, rtol=1e-5),
    # Outputs are rounded to 10 / 7 mantissa bits: one ulp at magnitude ~4 is 4e-3 / 3e-2.
    torch.float16: dict(atol=5e-3, rtol=5e-3),
    torch.bfloat16: dict(atol=3e-2, rtol=3e-2),
}
