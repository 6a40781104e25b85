"""Triton masking kernels (gather_visible, gather_patches, scatter_visible) against their
references, forward and every gradient; the references' gradients against float64 loops."""
from typing import NamedTuple

import pytest
import torch
import torch.nn.functional as F
from kernel_cases import KERNEL_DTYPES, TOLERANCES
from float64_specs import loop_gather, loop_scatter

import smae.kernels as K
from smae.kernels import masking_triton
from smae.models.masking import random_masking


class Case(NamedTuple):
    batch: int
    length: int  # L tokens
    keep: int  # K visible
    dim: int  # D
    contiguous: bool = True


CASES = {
    "vits16": Case(2, 196, 9, 384),  # 224/16 at 95% masking, encoder width
    "batch1-D72-K1": Case(1, 50, 1, 72),
    "odd-D200": Case(3, 37, 5, 200),
    "strided": Case(2, 30, 4, 40, contiguous=False),
}


def _masking(case: Case, seed: int):
    ratio = 1 - (case.keep + 0.5) / case.length  # int(L * (1 - ratio)) == keep
    masking = random_masking(case.batch, case.length, ratio, generator=torch.Generator().manual_seed(seed))
    assert masking.ids_keep.shape[1] == case.keep
    if case.contiguous:
        return masking.ids_keep, masking.ids_restore
    return masking.ids_keep.t().contiguous().t(), masking.ids_restore.t().contiguous().t()  # column-major


def _rand(shape, dtype, contiguous=True, seed=0):
    """Random values in an arbitrary layout: non-contiguous ones are transposed views."""
    generator = torch.Generator().manual_seed(seed)
    if contiguous:
        return torch.randn(shape, generator=generator).to(dtype)
    return torch.randn(tuple(reversed(shape)), generator=generator).to(dtype).permute(*reversed(range(len(shape))))


def _grads(fn, inputs, seed=1):
    """fn(*inputs) and the gradients of every input for a random output gradient."""
    leaves = [x.detach().requires_grad_() for x in inputs]
    out = fn(*leaves)
    grad_out = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed)).to(out.dtype)
    return out, torch.autograd.grad(out, leaves, grad_out)


def _assert_all_close(got, want, dtype):
    for g, w in zip(got, want):
        assert g.dtype == w.dtype and g.shape == w.shape
        torch.testing.assert_close(g, w, **TOLERANCES[dtype])


@pytest.mark.parametrize("dtype", KERNEL_DTYPES, ids=str)
@pytest.mark.parametrize("name", CASES)
def test_gather_visible_matches_reference(name, dtype):
    case = CASES[name]
    ids_keep, _ = _masking(case, seed=2)
    tokens = _rand((case.batch, case.length, case.dim), dtype, case.contiguous, seed=3)
    pos = _rand((case.length, case.dim), dtype, case.contiguous, seed=4)
    want, want_grads = _grads(lambda t, p: K.gather_visible_reference(t, ids_keep, p), (tokens, pos))
    with K.use_backend("triton"):
        got, got_grads = _grads(lambda t, p: K.gather_visible(t, ids_keep, p), (tokens, pos))
        without_pos, (grad_tokens,) = _grads(lambda t: K.gather_visible(t, ids_keep), (tokens,))
    _assert_all_close((got, *got_grads), (want, *want_grads), dtype)
    ref_without_pos, (ref_grad_tokens,) = _grads(lambda t: K.gather_visible_reference(t, ids_keep), (tokens,))
    _assert_all_close((without_pos, grad_tokens), (ref_without_pos, ref_grad_tokens), dtype)


@pytest.mark.parametrize("dtype", KERNEL_DTYPES, ids=str)
@pytest.mark.parametrize("prefix", [0, 1])
@pytest.mark.parametrize("name", CASES)
def test_scatter_visible_matches_reference(name, prefix, dtype):
    case = CASES[name]
    _, ids_restore = _masking(case, seed=5)
    visible = _rand((case.batch, prefix + case.keep, case.dim), dtype, case.contiguous, seed=6)
    mask_token = _rand((case.dim,), dtype, seed=7)
    pos = _rand((prefix + case.length, case.dim), dtype, case.contiguous, seed=8)
    inputs = (visible, mask_token, pos)
    want, want_grads = _grads(lambda v, m, p: K.scatter_visible_reference(v, ids_restore, m, p, prefix), inputs)
    with K.use_backend("triton"):
        got, got_grads = _grads(lambda v, m, p: K.scatter_visible(v, ids_restore, m, p, prefix), inputs)
    _assert_all_close((got, *got_grads), (want, *want_grads), dtype)


def test_mixed_dtypes_round_like_the_references():
    """Under autocast the tokens are bfloat16 or float16 and the tables float32: the output is
    float32, and the mask token is rounded to the tokens' dtype first (as the reference does)."""
    case = CASES["odd-D200"]
    ids_keep, ids_restore = _masking(case, seed=9)
    tokens = _rand((case.batch, case.length, case.dim), torch.float16, seed=10)
    visible = _rand((case.batch, 1 + case.keep, case.dim), torch.float16, seed=11)
    mask_token, pos = _rand((case.dim,), torch.float32, seed=12), _rand((1 + case.length, case.dim), torch.float32, seed=13)
    with K.use_backend("triton"):
        gathered = K.gather_visible(tokens, ids_keep, pos[1:])
        scattered = K.scatter_visible(visible, ids_restore, mask_token, pos, 1)
    assert gathered.dtype == scattered.dtype == torch.float32
    torch.testing.assert_close(gathered, K.gather_visible_reference(tokens, ids_keep, pos[1:]), **TOLERANCES[torch.float32])
    torch.testing.assert_close(scattered, K.scatter_visible_reference(visible, ids_restore, mask_token, pos, 1), **TOLERANCES[torch.float32])


def test_repeated_ids_add_their_gradients():
    tokens = _rand((2, 6, 24), torch.float32, seed=14)
    ids_keep = torch.tensor([[3, 3, 0], [5, 1, 5]])
    want, want_grads = _grads(lambda t: K.gather_visible_reference(t, ids_keep), (tokens,))
    with K.use_backend("triton"):
        got, got_grads = _grads(lambda t: K.gather_visible(t, ids_keep), (tokens,))
    _assert_all_close((got, *got_grads), (want, *want_grads), torch.float32)


def test_scatter_with_only_the_prefix_visible():
    """K = 0: every patch row is the mask token, the [CLS] row still its own."""
    _, ids_restore = _masking(Case(2, 12, 1, 24), seed=35)
    inputs = (_rand((2, 1, 24), torch.float32, seed=36), _rand((24,), torch.float32, seed=37), _rand((13, 24), torch.float32, seed=38))
    want, want_grads = _grads(lambda v, m, p: K.scatter_visible_reference(v, ids_restore, m, p, 1), inputs)
    with K.use_backend("triton"):
        got, got_grads = _grads(lambda v, m, p: K.scatter_visible(v, ids_restore, m, p, 1), inputs)
    _assert_all_close((got, *got_grads), (want, *want_grads), torch.float32)


def test_reference_gradients_match_float64_loops():
    case = Case(2, 20, 5, 6)
    ids_keep, ids_restore = _masking(case, seed=15)
    tokens, pos = _rand((2, 20, 6), torch.float64, seed=16), _rand((20, 6), torch.float64, seed=17)
    want, want_grads = _grads(lambda t, p: loop_gather(t, ids_keep, p), (tokens, pos))
    got, got_grads = _grads(lambda t, p: K.gather_visible_reference(t, ids_keep, p), (tokens, pos))
    _assert_all_close((got, *got_grads), (want, *want_grads), torch.float64)
    visible, mask_token, pos = _rand((2, 6, 6), torch.float64, seed=18), _rand((6,), torch.float64, seed=19), _rand((21, 6), torch.float64, seed=20)
    inputs = (visible, mask_token, pos)
    want, want_grads = _grads(lambda v, m, p: loop_scatter(v, ids_restore, m, p, 1), inputs)
    got, got_grads = _grads(lambda v, m, p: K.scatter_visible_reference(v, ids_restore, m, p, 1), inputs)
    _assert_all_close((got, *got_grads), (want, *want_grads), torch.float64)


def _loop_patches(imgs, ids_keep, size):
    """float64 (B, K, C*p*p): each kept patch sliced out of the image, flattened (c, p, q)."""
    width = imgs.shape[-1] // size
    rows = []
    for b in range(ids_keep.shape[0]):
        for index in ids_keep[b].tolist():
            i, j = divmod(index, width)
            rows.append(imgs[b, :, i * size:(i + 1) * size, j * size:(j + 1) * size].double().reshape(-1))
    return torch.stack(rows).reshape(ids_keep.shape[0], ids_keep.shape[1], -1)


PATCH_CASES = {"vits16": (2, 224, 224, 16, 9), "batch1-K1-3x5": (1, 24, 40, 8, 1), "strided-5x3": (2, 20, 12, 4, 7)}


@pytest.mark.parametrize("dtype", KERNEL_DTYPES, ids=str)
@pytest.mark.parametrize("name", PATCH_CASES)
def test_gather_patches_matches_reference(name, dtype):
    batch, height, width, size, keep = PATCH_CASES[name]
    length = (height // size) * (width // size)
    ids_keep, _ = _masking(Case(batch, length, keep, 1, contiguous=name != "strided-5x3"), seed=21)
    imgs = _rand((batch, 3, height, width), dtype, contiguous=name != "strided-5x3", seed=22)
    want, want_grads = _grads(lambda x: K.gather_patches_reference(x, ids_keep, size), (imgs,))
    with K.use_backend("triton"):
        got, got_grads = _grads(lambda x: K.gather_patches(x, ids_keep, size), (imgs,))
    _assert_all_close((got, *got_grads), (want, *want_grads), dtype)
    if dtype == torch.float32:
        torch.testing.assert_close(want.double(), _loop_patches(imgs, ids_keep, size), **TOLERANCES[torch.float64])


def test_linear_on_gathered_patches_is_the_patch_embedding():
    """What the encoder relies on: conv(x) then gather == linear(gather_patches(x), W.flatten(1))."""
    conv = torch.nn.Conv2d(3, 40, kernel_size=8, stride=8)
    imgs = _rand((2, 3, 32, 48), torch.float32, seed=23)
    ids_keep, _ = _masking(Case(2, 24, 5, 40), seed=24)
    dense = conv(imgs).flatten(2).transpose(1, 2)  # (B, L, D)
    with K.use_backend("triton"):
        sparse = F.linear(K.gather_patches(imgs, ids_keep, 8), conv.weight.flatten(1), conv.bias)
    torch.testing.assert_close(sparse, K.gather_visible_reference(dense, ids_keep), **TOLERANCES[torch.float32])


def _poisoned(shape, dtype=torch.float32):
    return torch.full(shape, float("nan"), dtype=dtype)


def test_launchers_write_every_element():
    """Small blocks leave partial tiles in every direction; NaN-filled outputs show any gap."""
    case = Case(3, 37, 5, 70)
    ids_keep, ids_restore = _masking(case, seed=25)
    blocks = dict(block_rows=4, block_d=32)
    tokens, pos = _rand((3, 37, 70), torch.float32, seed=26), _rand((37, 70), torch.float32, seed=27)
    out = masking_triton.gather_rows(tokens, ids_keep, pos, out=_poisoned((3, 5, 70)), **blocks)
    torch.testing.assert_close(out, K.gather_visible_reference(tokens, ids_keep, pos))

    grad = _rand((3, 5, 70), torch.float32, seed=28)
    full = masking_triton.gather_rows_backward(grad, ids_keep, 37, torch.float32, out=_poisoned((3, 37, 70)), **blocks)
    torch.testing.assert_close(full, torch.zeros(3, 37, 70).scatter(1, ids_keep[..., None].expand(-1, -1, 70), grad))

    visible, mask_token, pos = _rand((3, 6, 70), torch.float32, seed=29), _rand((70,), torch.float32, seed=30), _rand((38, 70), torch.float32, seed=31)
    out = masking_triton.scatter_rows(visible, ids_restore, mask_token, pos, 1, out=_poisoned((3, 38, 70)), **blocks)
    torch.testing.assert_close(out, K.scatter_visible_reference(visible, ids_restore, mask_token, pos, 1))

    grad = _rand((3, 38, 70), torch.float32, seed=32)
    grad_visible, partials = masking_triton.scatter_rows_backward(
        grad, ids_restore, 5, 1, torch.float32, grad_visible=_poisoned((3, 6, 70)), mask_partials=_poisoned((3, 10, 70)), **blocks)
    masked = torch.cat([torch.zeros(3, 1), 1 - (ids_restore < 5).float()], dim=1)  # rows that held the mask token
    per_row = F.pad(grad * masked[..., None], (0, 0, 0, 2))  # (3, 40, 70): 38 rows padded to 10 blocks of 4
    torch.testing.assert_close(partials, per_row.reshape(3, 10, 4, 70).sum(2))
    torch.testing.assert_close(grad_visible[:, 0], grad[:, 0])
    kept_rows = torch.argsort(ids_restore, dim=1)[:, :5] + 1  # ids_keep, shifted past the prefix
    torch.testing.assert_close(grad_visible[:, 1:], torch.gather(grad, 1, kept_rows[..., None].expand(-1, -1, 70)))

    imgs = _rand((3, 3, 24, 40), torch.float32, seed=33)
    patches_keep, _ = _masking(Case(3, 15, 5, 1), seed=34)
    out = masking_triton.gather_patches_rows(imgs, patches_keep, 8, out=_poisoned((3, 5, 192)), patches_per_program=4)
    torch.testing.assert_close(out, K.gather_patches_reference(imgs, patches_keep, 8))


def test_forced_triton_explains_float64_and_cpu_without_interpreter(monkeypatch):
    tokens, ids_keep = torch.randn(1, 4, 8, dtype=torch.float64), torch.tensor([[2]])
    with K.use_backend("triton"), pytest.raises(K.BackendUnavailable, match="tokens is torch.float64"):
        K.gather_visible(tokens, ids_keep)
    with K.use_backend("auto"):  # auto takes the reference instead
        torch.testing.assert_close(K.gather_visible(tokens, ids_keep), tokens[:, 2:3])
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with K.use_backend("triton"), pytest.raises(K.BackendUnavailable) as info:
        K.scatter_visible(torch.randn(1, 1, 8), torch.tensor([[1, 0]]), torch.randn(8), torch.randn(2, 8))
    assert str(info.value).count("not CUDA") == 4 and "scatter_visible" in str(info.value)
    with K.use_backend("triton"), pytest.raises(K.BackendUnavailable, match="gather_patches"):
        K.gather_patches(torch.randn(1, 3, 8, 8), torch.tensor([[1]]), 4)
