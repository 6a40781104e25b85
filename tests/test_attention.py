"""smae.kernels.attention against a float64 softmax(QK^T / sqrt(d))V written out here.
Tolerances: tests/tolerance.py (baseline: the written-out formula run in float32)."""
import math

import pytest
import torch
from tolerance import assert_all_within_pytorch_error, assert_within_pytorch_error

import smae.kernels as K


def softmax_attention_float64(q, k, v, dtype=torch.float64):
    """Loop-free but independent of the kernel: (B, Nq, H, Dh) in BMHK layout, computed in `dtype`."""
    q, k, v = (t.to(dtype).permute(0, 2, 1, 3) for t in (q, k, v))  # (B, H, N, Dh)
    weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), dim=-1)
    return (weights @ v).permute(0, 2, 1, 3)


@pytest.mark.parametrize("backend", ["sdpa", "math", "auto"])
@pytest.mark.parametrize("nq,nk", [(197, 197), (50, 197), (13, 5)])
def test_backends_match_float64_reference(backend, nq, nk):
    generator = torch.Generator().manual_seed(0)
    q = torch.randn(2, nq, 3, 16, generator=generator)
    k = torch.randn(2, nk, 3, 16, generator=generator)
    v = torch.randn(2, nk, 3, 16, generator=generator)
    out = K.attention(q, k, v, backend=backend)
    assert out.shape == (2, nq, 3, 16) and out.dtype == q.dtype
    assert_within_pytorch_error(out, softmax_attention_float64(q, k, v), softmax_attention_float64(q, k, v, torch.float32), backend)
    assert K.last_attention_backend() == ("math" if backend == "math" else "sdpa")  # CPU: never xformers


def test_gradients_match_reference():
    generator = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(1, 9, 2, 8, generator=generator, requires_grad=True) for _ in range(3))
    grad_out = torch.randn(1, 9, 2, 8, generator=generator)
    grads = torch.autograd.grad((K.attention(q, k, v, backend="sdpa") * grad_out).sum(), (q, k, v))
    q64, k64, v64 = (t.detach().double().requires_grad_() for t in (q, k, v))
    exact = torch.autograd.grad((softmax_attention_float64(q64, k64, v64) * grad_out.double()).sum(), (q64, k64, v64))
    baseline = torch.autograd.grad((softmax_attention_float64(q, k, v, torch.float32) * grad_out).sum(), (q, k, v))
    assert_all_within_pytorch_error(grads, exact, baseline, "dq, dk, dv")


def test_switch_selects_backend_and_forced_xformers_explains():
    q = torch.randn(1, 4, 2, 8)
    with K.use_attention_backend("math"):
        K.attention(q, q, q)
        assert K.last_attention_backend() == "math"
    with pytest.raises(K.BackendUnavailable, match="CUDA only"):
        K.attention(q, q, q, backend="xformers")


def test_bad_shapes_are_rejected():
    with pytest.raises(ValueError, match="shapes do not match"):
        K.attention(torch.randn(1, 4, 2, 8), torch.randn(1, 4, 2, 4), torch.randn(1, 4, 2, 4))
    with pytest.raises(ValueError, match="not one of"):
        K.attention(torch.randn(1, 4, 2, 8), torch.randn(1, 4, 2, 8), torch.randn(1, 4, 2, 8), backend="flash")
