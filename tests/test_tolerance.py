"""The kernel tests' one tolerance rule (tests/tolerance.py) fails where it must."""
import pytest
import torch
from tolerance import assert_within_pytorch_error


def test_rule_allows_twice_pytorchs_error_and_no_more():
    exact = torch.tensor([1.0, -2.0, 3.0], dtype=torch.float64)
    baseline = (exact + torch.tensor([0.0, 1e-3, 0.0], dtype=torch.float64)).float()
    floor = 4 * torch.finfo(torch.float32).eps * 3.0
    assert_within_pytorch_error((exact + 2e-3).float(), exact, baseline)  # every element within 2x
    with pytest.raises(AssertionError, match=r"max error .* at \(1,\) exceeds"):
        assert_within_pytorch_error((exact + torch.tensor([0.0, 2e-3 + 2 * floor, 0.0], dtype=torch.float64)).float(), exact, baseline)
    with pytest.raises(AssertionError):  # an unwritten (NaN) element never passes
        assert_within_pytorch_error(torch.tensor([1.0, float("nan"), 3.0]), exact, baseline)


def test_exact_baseline_leaves_only_the_floor():
    exact = torch.full((4,), 2.0, dtype=torch.float64)
    floor = 4 * torch.finfo(torch.float32).eps * 2.0
    assert_within_pytorch_error((exact + floor / 2).float(), exact, exact.float())
    with pytest.raises(AssertionError):
        assert_within_pytorch_error(exact.half() + 2 ** -9, exact, exact.half())  # one float16 rounding is far above it
