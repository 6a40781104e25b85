"""The one tolerance rule of the kernel tests (flash-attention's):

    max |actual - exact| <= 2 * max |baseline - exact| + floor

exact:    the op evaluated in float64 on the same (already rounded) inputs;
baseline: plain PyTorch computing the same thing in the precision under test: the op's
          `*_reference` when a kernel is checked, the independent formulation of
          float64_specs.py run in that precision when the reference itself is checked;
floor:    FLOOR_ROUNDINGS units of rounding of the precision the op computes in (float32, or
          float64 for float64 inputs: every kernel and reference here accumulates in float32 at
          least) at the result's largest magnitude: 4 * eps * max |exact|.

Why: the error that plain PyTorch makes in a precision is what any correct implementation in
that precision can be expected to make; a kernel may differ from it in summation order and in
where it rounds, not in kind, so twice that error is allowed and a wrong index, a dropped term or
a missing normalisation (errors of the size of the values) never passes. The bound comes from
the problem (shapes, magnitudes, dtype), not from tuning a number per test. The floor is for
results the baseline happens to get exactly or nearly so (a copy; a scalar sum that rounds to
the float64 value): there twice zero would forbid the last few roundings of a reduction in
another order. It is tiny next to a half-precision rounding (1e-7 of the value against 1e-3), so
it never hides a float16 or bfloat16 error.
"""
from __future__ import annotations

import torch

FLOOR_ROUNDINGS = 4


def max_error(value: torch.Tensor, exact: torch.Tensor) -> tuple[float, tuple[int, ...]]:
    """The largest |value - exact| (in float64) and where it is."""
    error = (value.detach().double().cpu() - exact.detach().double().cpu()).abs()
    if error.numel() == 0:
        return 0.0, ()
    flat = int(error.argmax())
    return float(error.reshape(-1)[flat]), tuple(int(i) for i in torch.unravel_index(torch.tensor(flat), error.shape))


def assert_within_pytorch_error(actual: torch.Tensor, exact: torch.Tensor, baseline: torch.Tensor, what: str = "") -> None:
    """The rule above; the message names the worst element and both errors."""
    assert actual.shape == exact.shape == baseline.shape, (what, actual.shape, exact.shape, baseline.shape)
    error, where = max_error(actual, exact)
    allowed_by_baseline, _ = max_error(baseline, exact)
    compute = torch.promote_types(actual.dtype, torch.float32)
    floor = FLOOR_ROUNDINGS * torch.finfo(compute).eps * float(exact.detach().double().abs().max()) if exact.numel() else 0.0
    bound = 2 * allowed_by_baseline + floor
    assert error <= bound, (f"{what}: max error {error:.3g} at {where} exceeds 2 x PyTorch's own error "
                            f"{allowed_by_baseline:.3g} + floor {floor:.3g} ({actual.dtype})")


def assert_all_within_pytorch_error(actual, exact, baseline, what: str = "") -> None:
    """assert_within_pytorch_error on each of matching sequences (e.g. an output and its gradients)."""
    assert len(actual) == len(exact) == len(baseline), what
    for index, (a, e, b) in enumerate(zip(actual, exact, baseline)):
        assert a.dtype == b.dtype, (what, index, a.dtype, b.dtype)
        assert_within_pytorch_error(a, e, b, f"{what}[{index}]")
