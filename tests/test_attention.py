"""smae.kernels.attention against a float64 softmax(QK^T / sqrt(d))V written out here.
Tolerances: tests/tolerance.py (baseline: the written-out formula run in float32)."""
import math

import pytest
import torch
from tolerance import assert_all_within_pytorch_error, assert_within_pytorch_error

import smae.kernels as K
from smae.kernels import attention_table


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


def _measured(table, device="NVIDIA H200", dtype="bfloat16", head_dim=64, q_tokens=197, k_tokens=197, **seconds):
    return attention_table.record_timings(table, device, dtype, head_dim, q_tokens, k_tokens, seconds)


def test_table_records_the_fastest_backend_per_case_and_replaces_old_rows():
    table = _measured({}, sdpa=2e-4, xformers=1e-4)
    table = _measured(table, q_tokens=50, sdpa=1e-4, xformers=3e-4)
    table = _measured(table, sdpa=1e-4, xformers=2e-4)  # re-measured: replaces the first row
    rows = table["NVIDIA H200"]
    assert [(row["q_tokens"], row["best"]) for row in rows] == [(50, "sdpa"), (197, "sdpa")]
    with pytest.raises(ValueError, match="no timings"):
        _measured({}, math=1e-4)


def test_lookup_takes_the_nearest_case_within_a_factor_of_two_else_nothing():
    table = _measured(_measured({}, sdpa=2e-4, xformers=1e-4), q_tokens=10, k_tokens=10, sdpa=1e-4, xformers=2e-4)
    look = lambda **case: attention_table.lookup(table, **{**dict(device="NVIDIA H200", dtype="bfloat16", head_dim=64,
                                                                   q_tokens=197, k_tokens=197), **case})
    assert look() == "xformers"
    assert look(q_tokens=300, k_tokens=120) == "xformers"  # nearest: the 197 x 197 row
    assert look(q_tokens=12, k_tokens=9) == "sdpa"  # nearest: the 10 x 10 row
    assert look(q_tokens=50, k_tokens=50) is None  # 4x from both rows
    assert look(dtype="float16") is None and look(head_dim=32) is None and look(device="NVIDIA A100") is None


def test_table_round_trips_through_its_file_and_unmeasured_cases_get_sdpa(tmp_path, monkeypatch):
    path = tmp_path / "attention_table.json"
    table = _measured({}, sdpa=2e-4, xformers=1e-4)
    attention_table.save_table(table, path)
    assert attention_table.load_table(path) == table
    assert attention_table.load_table(tmp_path / "missing.json") == {}
    monkeypatch.setattr(attention_table, "_loaded", table)  # as if read from the package's file
    assert attention_table.choose("NVIDIA H200", "bfloat16", 64, 197, 197) == "xformers"
    assert attention_table.choose("NVIDIA H200", "bfloat16", 64, 1000, 1000) == "sdpa"


def test_the_shipped_table_is_well_formed():
    for device, rows in attention_table.load_table().items():
        assert isinstance(device, str) and rows
        for row in rows:
            assert row["best"] in attention_table.MEASURED_BACKENDS
            assert row["best"] == min(row["seconds"], key=row["seconds"].get)
