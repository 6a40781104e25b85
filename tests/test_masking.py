"""Masking: MAE's per-sample random masking, and the three masking ops of smae.kernels
(gather_visible, gather_patches, scatter_visible). The references against float64 loops
(float64_specs.py); the Triton kernels against the references, forward and every gradient, in
fp32 and fp16 (interpreted without a GPU) and bf16 (GPU); dispatch; the custom operators.
Tolerances: tests/tolerance.py."""
from typing import NamedTuple

import pytest
import torch
import torch.nn.functional as F
from float64_specs import loop_gather, loop_patches, loop_scatter
from kernel_cases import KERNEL_DTYPES, cuda
from tolerance import assert_all_within_pytorch_error, assert_within_pytorch_error

import smae.kernels as K
from smae.kernels import masking_triton
from smae.models.masking import num_visible, random_masking

# --- random_masking -----------------------------------------------------------------------------


@pytest.mark.parametrize("length,ratio,keep", [(196, 0.95, 9), (784, 0.95, 39), (64, 0.75, 16), (10, 0.99, 1)])
def test_keep_count_is_mae_int_rule(length, ratio, keep):
    assert num_visible(length, ratio) == keep
    masking = random_masking(4, length, ratio, generator=torch.Generator().manual_seed(0))
    assert masking.ids_keep.shape == (4, keep)
    assert (masking.mask.sum(1) == length - keep).all()
    # The kept positions are exactly the unmasked ones.
    visible = torch.zeros(4, length).scatter_(1, masking.ids_keep, 1.0)
    torch.testing.assert_close(visible, 1 - masking.mask, rtol=0, atol=0)


def test_each_sample_gets_its_own_mask():
    masking = random_masking(8, 196, 0.95, generator=torch.Generator().manual_seed(1))
    assert len({tuple(row.tolist()) for row in masking.mask}) == 8


def test_restore_inverts_the_shuffle():
    masking = random_masking(3, 50, 0.5, generator=torch.Generator().manual_seed(2))
    tokens = torch.randn(3, 50, 4)
    kept = torch.stack([tokens[b, masking.ids_keep[b]] for b in range(3)])
    rest = torch.randn(3, 50 - kept.shape[1], 4)
    shuffled = torch.cat([kept, rest], dim=1)
    restored = torch.gather(shuffled, 1, masking.ids_restore[..., None].expand(-1, -1, 4))
    keep_mask = masking.mask == 0
    torch.testing.assert_close(restored[keep_mask], tokens[keep_mask], rtol=0, atol=0)


def test_bad_ratio_is_rejected():
    with pytest.raises(ValueError, match="mask_ratio"):
        num_visible(196, 1.0)


# --- shared inputs ------------------------------------------------------------------------------


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
PATCH_CASES = {"vits16": (2, 224, 224, 16, 9), "batch1-K1-3x5": (1, 24, 40, 8, 1), "strided-5x3": (2, 20, 12, 4, 7)}


def _masking(case: Case, seed: int, device="cpu"):
    ratio = 1 - (case.keep + 0.5) / case.length  # int(L * (1 - ratio)) == keep
    masking = random_masking(case.batch, case.length, ratio, generator=torch.Generator().manual_seed(seed))
    assert masking.ids_keep.shape[1] == case.keep
    ids_keep, ids_restore = masking.ids_keep.to(device), masking.ids_restore.to(device)
    if case.contiguous:
        return ids_keep, ids_restore
    return ids_keep.t().contiguous().t(), ids_restore.t().contiguous().t()  # column-major


def _rand(shape, dtype, contiguous=True, seed=0, device="cpu"):
    """Random values in an arbitrary layout: non-contiguous ones are transposed views."""
    generator = torch.Generator().manual_seed(seed)
    if contiguous:
        return torch.randn(shape, generator=generator).to(device, dtype)
    return torch.randn(tuple(reversed(shape)), generator=generator).to(device, dtype).permute(*reversed(range(len(shape))))


def _grads(fn, inputs, grad_dtype, seed=1):
    """(fn(*inputs), *d/d input for each input) for a random output gradient; the gradient is
    drawn in `grad_dtype` (the precision under test), so runs in other precisions see the same one."""
    leaves = [x.detach().requires_grad_() for x in inputs]
    out = fn(*leaves)
    grad_out = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed)).to(out.device, grad_dtype).to(out.dtype)
    return (out, *torch.autograd.grad(out, leaves, grad_out))


def _check_kernel(kernel, reference, inputs, dtype, what, exact_inputs=None):
    """The Triton kernel (output and every input gradient) against the reference run on float64
    copies of the inputs, within 2x the reference's own error in the same precision."""
    baseline = _grads(reference, inputs, dtype)
    exact = _grads(reference, exact_inputs or [x.double() for x in inputs], dtype)
    with K.use_backend("triton"):
        got = _grads(kernel, inputs, dtype)
    assert [t.dtype for t in got] == [t.dtype for t in baseline], what
    assert_all_within_pytorch_error(got, exact, baseline, what)


# --- references against float64 loops -----------------------------------------------------------

REFERENCE_DTYPES = [torch.float64, torch.float32, torch.float16]


def _check_reference(reference, spec, inputs, dtype, what):
    """A reference in `dtype` (output and gradients) against the float64 loop formulation,
    within 2x the loop's own error when run in `dtype`."""
    actual = _grads(reference, inputs, dtype)
    exact = _grads(spec, [x.double() for x in inputs], dtype)
    baseline = _grads(lambda *xs: spec(*xs, dtype=dtype), inputs, dtype)
    assert_all_within_pytorch_error(actual, exact, baseline, what)


@pytest.mark.parametrize("dtype", REFERENCE_DTYPES, ids=str)
@pytest.mark.parametrize("with_pos", [True, False])
def test_gather_reference_matches_loops(with_pos, dtype):
    case = Case(2, 20, 5, 6)
    ids_keep, _ = _masking(case, seed=3)
    tokens, pos = _rand((2, 20, 6), dtype, seed=16), _rand((20, 6), dtype, seed=17)
    if with_pos:
        _check_reference(lambda t, p: K.gather_visible_reference(t, ids_keep, p),
                         lambda t, p, dtype=torch.float64: loop_gather(t, ids_keep, p, dtype), (tokens, pos), dtype, "gather")
    else:
        _check_reference(lambda t: K.gather_visible_reference(t, ids_keep),
                         lambda t, dtype=torch.float64: loop_gather(t, ids_keep, None, dtype), (tokens,), dtype, "gather")
    assert K.gather_visible(tokens, ids_keep).shape == (2, 5, 6)


@pytest.mark.parametrize("dtype", REFERENCE_DTYPES, ids=str)
@pytest.mark.parametrize("prefix", [0, 1])
def test_scatter_reference_matches_loops(prefix, dtype):
    _, ids_restore = _masking(Case(2, 20, 5, 6), seed=4)
    inputs = (_rand((2, prefix + 5, 6), dtype, seed=18), _rand((6,), dtype, seed=19), _rand((prefix + 20, 6), dtype, seed=20))
    _check_reference(lambda v, m, p: K.scatter_visible_reference(v, ids_restore, m, p, prefix),
                     lambda v, m, p, dtype=torch.float64: loop_scatter(v, ids_restore, m, p, prefix, dtype), inputs, dtype, "scatter")
    assert K.scatter_visible(*inputs[:1], ids_restore, *inputs[1:], num_prefix=prefix).shape == (2, prefix + 20, 6)


@pytest.mark.parametrize("dtype", REFERENCE_DTYPES, ids=str)
def test_gather_patches_reference_matches_loops(dtype):
    ids_keep, _ = _masking(Case(2, 15, 5, 1), seed=21)
    imgs = _rand((2, 3, 12, 20), dtype, seed=22)
    _check_reference(lambda x: K.gather_patches_reference(x, ids_keep, 4),
                     lambda x, dtype=torch.float64: loop_patches(x, ids_keep, 4, dtype), (imgs,), dtype, "gather_patches")


# --- Triton kernels against the references ------------------------------------------------------


@pytest.mark.parametrize("dtype", KERNEL_DTYPES)
@pytest.mark.parametrize("name", CASES)
def test_gather_visible_matches_reference(name, dtype, device):
    case = CASES[name]
    ids_keep, _ = _masking(case, seed=2, device=device)
    tokens = _rand((case.batch, case.length, case.dim), dtype, case.contiguous, seed=3, device=device)
    pos = _rand((case.length, case.dim), dtype, case.contiguous, seed=4, device=device)
    _check_kernel(lambda t, p: K.gather_visible(t, ids_keep, p), lambda t, p: K.gather_visible_reference(t, ids_keep, p),
                  (tokens, pos), dtype, "gather with pos")
    _check_kernel(lambda t: K.gather_visible(t, ids_keep), lambda t: K.gather_visible_reference(t, ids_keep),
                  (tokens,), dtype, "gather without pos")


@pytest.mark.parametrize("dtype", KERNEL_DTYPES)
@pytest.mark.parametrize("prefix", [0, 1])
@pytest.mark.parametrize("name", CASES)
def test_scatter_visible_matches_reference(name, prefix, dtype, device):
    case = CASES[name]
    _, ids_restore = _masking(case, seed=5, device=device)
    visible = _rand((case.batch, prefix + case.keep, case.dim), dtype, case.contiguous, seed=6, device=device)
    mask_token = _rand((case.dim,), dtype, seed=7, device=device)
    pos = _rand((prefix + case.length, case.dim), dtype, case.contiguous, seed=8, device=device)
    _check_kernel(lambda v, m, p: K.scatter_visible(v, ids_restore, m, p, prefix),
                  lambda v, m, p: K.scatter_visible_reference(v, ids_restore, m, p, prefix), (visible, mask_token, pos), dtype, "scatter")


@pytest.mark.parametrize("dtype", KERNEL_DTYPES)
@pytest.mark.parametrize("name", PATCH_CASES)
def test_gather_patches_matches_reference(name, dtype, device):
    batch, height, width, size, keep = PATCH_CASES[name]
    length = (height // size) * (width // size)
    contiguous = name != "strided-5x3"
    ids_keep, _ = _masking(Case(batch, length, keep, 1, contiguous=contiguous), seed=21, device=device)
    imgs = _rand((batch, 3, height, width), dtype, contiguous=contiguous, seed=22, device=device)
    _check_kernel(lambda x: K.gather_patches(x, ids_keep, size), lambda x: K.gather_patches_reference(x, ids_keep, size),
                  (imgs,), dtype, "gather_patches")


@cuda
def test_mixed_dtypes_round_like_the_references(device):
    """Under autocast the tokens are float16 and the tables float32: the output is float32, and
    the mask token is rounded to the tokens' dtype first (as the reference does), so the float64
    result it is held to rounds it too."""
    case = CASES["odd-D200"]
    ids_keep, ids_restore = _masking(case, seed=9, device=device)
    tokens = _rand((case.batch, case.length, case.dim), torch.float16, seed=10, device=device)
    visible = _rand((case.batch, 1 + case.keep, case.dim), torch.float16, seed=11, device=device)
    mask_token = _rand((case.dim,), torch.float32, seed=12, device=device)
    pos = _rand((1 + case.length, case.dim), torch.float32, seed=13, device=device)
    with K.use_backend("triton"):
        gathered = K.gather_visible(tokens, ids_keep, pos[1:])
        scattered = K.scatter_visible(visible, ids_restore, mask_token, pos, 1)
    assert gathered.dtype == scattered.dtype == torch.float32
    assert_within_pytorch_error(gathered, K.gather_visible_reference(tokens.double(), ids_keep, pos[1:].double()),
                                K.gather_visible_reference(tokens, ids_keep, pos[1:]), "gather")
    exact = K.scatter_visible_reference(visible.double(), ids_restore, mask_token.half().double(), pos.double(), 1)
    assert_within_pytorch_error(scattered, exact, K.scatter_visible_reference(visible, ids_restore, mask_token, pos, 1), "scatter")


@cuda
def test_repeated_ids_add_their_gradients(device):
    tokens = _rand((2, 6, 24), torch.float32, seed=14, device=device)
    ids_keep = torch.tensor([[3, 3, 0], [5, 1, 5]], device=device)
    _check_kernel(lambda t: K.gather_visible(t, ids_keep), lambda t: K.gather_visible_reference(t, ids_keep),
                  (tokens,), torch.float32, "repeated ids")


@cuda
def test_scatter_with_only_the_prefix_visible(device):
    """K = 0: every patch row is the mask token, the [CLS] row still its own."""
    _, ids_restore = _masking(Case(2, 12, 1, 24), seed=35, device=device)
    inputs = tuple(_rand(shape, torch.float32, seed=seed, device=device) for shape, seed in (((2, 1, 24), 36), ((24,), 37), ((13, 24), 38)))
    _check_kernel(lambda v, m, p: K.scatter_visible(v, ids_restore, m, p, 1),
                  lambda v, m, p: K.scatter_visible_reference(v, ids_restore, m, p, 1), inputs, torch.float32, "prefix only")


@cuda
def test_linear_on_gathered_patches_is_the_patch_embedding(device):
    """What the encoder relies on: conv(x) then gather == linear(gather_patches(x), W.flatten(1))."""
    conv = torch.nn.Conv2d(3, 40, kernel_size=8, stride=8).to(device)
    imgs = _rand((2, 3, 32, 48), torch.float32, seed=23, device=device)
    ids_keep, _ = _masking(Case(2, 24, 5, 40), seed=24, device=device)
    with torch.no_grad():
        dense = conv(imgs).flatten(2).transpose(1, 2)  # (B, L, D)
        exact = F.conv2d(imgs.double(), conv.weight.double(), conv.bias.double(), stride=8).flatten(2).transpose(1, 2)
        with K.use_backend("triton"):
            sparse = F.linear(K.gather_patches(imgs, ids_keep, 8), conv.weight.flatten(1), conv.bias)
    assert_within_pytorch_error(sparse, K.gather_visible_reference(exact, ids_keep), K.gather_visible_reference(dense, ids_keep), "embedding")


def _poisoned(shape, device, dtype=torch.float32):
    return torch.full(shape, float("nan"), dtype=dtype, device=device)


@cuda
def test_launchers_write_every_element(device):
    """Small blocks leave partial tiles in every direction; NaN-filled outputs show any gap."""
    case = Case(3, 37, 5, 70)
    ids_keep, ids_restore = _masking(case, seed=25, device=device)
    blocks = dict(block_rows=4, block_d=32)
    rand = lambda shape, seed: _rand(shape, torch.float32, seed=seed, device=device)  # noqa: E731

    def check(got, formula, inputs, what):  # formula(*inputs) in float32 and float64
        assert_within_pytorch_error(got, formula(*[x.double() for x in inputs]), formula(*inputs), what)

    tokens, pos = rand((3, 37, 70), 26), rand((37, 70), 27)
    out = masking_triton.gather_rows(tokens, ids_keep, pos, out=_poisoned((3, 5, 70), device), **blocks)
    check(out, lambda t, p: K.gather_visible_reference(t, ids_keep, p), (tokens, pos), "gather_rows")

    grad = rand((3, 5, 70), 28)
    full = masking_triton.gather_rows_backward(grad, ids_keep, 37, torch.float32, out=_poisoned((3, 37, 70), device), **blocks)
    check(full, lambda g: torch.zeros(3, 37, 70, dtype=g.dtype, device=device).scatter(1, ids_keep[..., None].expand(-1, -1, 70), g),
          (grad,), "gather_rows_backward")

    visible, mask_token, pos = rand((3, 6, 70), 29), rand((70,), 30), rand((38, 70), 31)
    out = masking_triton.scatter_rows(visible, ids_restore, mask_token, pos, 1, out=_poisoned((3, 38, 70), device), **blocks)
    check(out, lambda v, m, p: K.scatter_visible_reference(v, ids_restore, m, p, 1), (visible, mask_token, pos), "scatter_rows")

    grad = rand((3, 38, 70), 32)
    grad_visible, partials = masking_triton.scatter_rows_backward(
        grad, ids_restore, 5, 1, torch.float32, grad_visible=_poisoned((3, 6, 70), device),
        mask_partials=_poisoned((3, 10, 70), device), **blocks)
    masked = torch.cat([torch.zeros(3, 1, device=device), 1 - (ids_restore < 5).float()], dim=1)  # rows that held the mask token
    # (3, 40, 70): 38 rows padded to 10 blocks of 4, summed per block
    check(partials, lambda g: F.pad(g * masked[..., None].to(g.dtype), (0, 0, 0, 2)).reshape(3, 10, 4, 70).sum(2), (grad,), "partials")
    kept_rows = torch.argsort(ids_restore, dim=1)[:, :5] + 1  # ids_keep, shifted past the prefix
    check(grad_visible, lambda g: torch.cat([g[:, :1], torch.gather(g, 1, kept_rows[..., None].expand(-1, -1, 70))], dim=1),
          (grad,), "grad_visible")

    imgs = rand((3, 3, 24, 40), 33)
    patches_keep, _ = _masking(Case(3, 15, 5, 1), seed=34, device=device)
    out = masking_triton.gather_patches_rows(imgs, patches_keep, 8, out=_poisoned((3, 5, 192), device), patches_per_program=4)
    check(out, lambda x: K.gather_patches_reference(x, patches_keep, 8), (imgs,), "gather_patches_rows")


# --- dispatch -----------------------------------------------------------------------------------


def test_masking_ops_name_bad_arguments():
    with pytest.raises(ValueError, match="int64"):
        K.gather_visible(torch.randn(1, 4, 2), torch.zeros(1, 2, dtype=torch.int32))
    with pytest.raises(ValueError, match="pos_embed"):
        K.scatter_visible(torch.randn(1, 2, 3), torch.arange(4)[None], torch.randn(3), torch.randn(5, 3))


def test_forced_triton_explains_float64_and_cpu_without_interpreter(monkeypatch):
    tokens, ids_keep = torch.randn(1, 4, 8, dtype=torch.float64), torch.tensor([[2]])
    with K.use_backend("triton"), pytest.raises(K.BackendUnavailable, match="tokens is torch.float64"):
        K.gather_visible(tokens, ids_keep)
    with K.use_backend("auto"):  # auto takes the reference instead
        torch.testing.assert_close(K.gather_visible(tokens, ids_keep), tokens[:, 2:3], rtol=0, atol=0)
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with K.use_backend("triton"), pytest.raises(K.BackendUnavailable) as info:
        K.scatter_visible(torch.randn(1, 1, 8), torch.tensor([[1, 0]]), torch.randn(8), torch.randn(2, 8))
    assert str(info.value).count("not CUDA") == 4 and "scatter_visible" in str(info.value)
    with K.use_backend("triton"), pytest.raises(K.BackendUnavailable, match="gather_patches"):
        K.gather_patches(torch.randn(1, 3, 8, 8), torch.tensor([[1]]), 4)


# --- custom operators ---------------------------------------------------------------------------


def _opcheck_cases(device):
    """(op, args) for every masking custom op, small random inputs (never zeros)."""
    g = torch.Generator().manual_seed(3)
    batch, length, kept, dim = 2, 16, 5, 8
    ids_shuffle = torch.stack([torch.randperm(length, generator=g) for _ in range(batch)])
    ids_keep, ids_restore = ids_shuffle[:, :kept].to(device), ids_shuffle.argsort(1).to(device)
    rand = lambda *shape, grad=True: torch.randn(*shape, generator=g).to(device).requires_grad_(grad)  # noqa: E731
    tokens, pos, imgs = rand(batch, length, dim), rand(length, dim), rand(batch, 3, 8, 8)
    visible, mask_token, dec_pos = rand(batch, 1 + kept, dim), rand(dim), rand(1 + length, dim, grad=False)
    ops = torch.ops.smae
    return {
        "gather_visible": (ops.gather_visible, (tokens, ids_keep, pos)),
        "gather_visible-no-pos": (ops.gather_visible, (tokens, ids_keep, None)),
        "gather_patches": (ops.gather_patches, (imgs, ids_keep, 2)),
        "scatter_visible": (ops.scatter_visible, (visible, ids_restore, mask_token, dec_pos, 1)),
        "gather_visible_backward": (ops.gather_visible_backward, (rand(batch, kept, dim, grad=False), ids_keep, length, torch.float32)),
        "scatter_visible_backward": (ops.scatter_visible_backward,
                                     (rand(batch, 1 + length, dim, grad=False), ids_restore, kept, 1, torch.float32, True, True)),
    }


@pytest.mark.slow
@cuda
@pytest.mark.parametrize("case", ["gather_visible", "gather_visible-no-pos", "gather_patches", "scatter_visible",
                                  "gather_visible_backward", "scatter_visible_backward"])
def test_custom_ops_pass_opcheck(case, device):
    """torch.library.opcheck: schema, fake implementation against the real outputs (shapes,
    dtypes, strides), autograd registration, and AOTAutograd's dynamic-shape tracing."""
    op, args = _opcheck_cases(device)[case]
    torch.library.opcheck(op, args, test_utils=("test_schema", "test_autograd_registration", "test_faketensor", "test_aot_dispatch_dynamic"))
