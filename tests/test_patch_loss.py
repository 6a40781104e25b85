"""masked_patch_loss: the reference against MAE's definition written independently in float64
(float64_specs.py); the Triton kernel against the reference and the definition, the value and
d loss / d pred, every mask kind, norm_pix on and off, awkward layouts, in fp32 and fp16
(interpreted without a GPU) and bf16 (GPU); dispatch; the custom operator.
Tolerances: tests/tolerance.py."""
from typing import NamedTuple

import pytest
import torch
from float64_specs import mae_loss_float64
from kernel_cases import KERNEL_DTYPES, cuda
from tolerance import assert_all_within_pytorch_error, assert_within_pytorch_error

import smae.kernels as K
from smae.kernels import patch_loss_triton

# --- the reference --------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("norm_pix", [True, False])
@pytest.mark.parametrize("shape", [(2, 3, 16, 24, 4), (1, 3, 32, 32, 16)])
def test_reference_value_and_gradient_match_float64_definition(shape, norm_pix, dtype):
    batch, channels, height, width, patch = shape
    generator = torch.Generator().manual_seed(0)
    length, dim = (height // patch) * (width // patch), patch * patch * channels
    imgs = torch.randn(batch, channels, height, width, generator=generator).to(dtype)
    pred = torch.randn(batch, length, dim, generator=generator).to(dtype)
    mask = (torch.rand(batch, length, generator=generator) < 0.7).float()
    mask[0, 0] = 1.0

    def value_and_grad(loss_fn, pred):
        pred = pred.detach().requires_grad_()
        loss = loss_fn(pred)
        return loss, torch.autograd.grad(loss, pred)[0]

    actual = value_and_grad(lambda p: K.masked_patch_loss(p, imgs, mask, patch_size=patch, norm_pix=norm_pix), pred)
    assert actual[0].dtype == dtype
    exact = value_and_grad(lambda p: mae_loss_float64(p, imgs, mask, patch, norm_pix), pred.double())
    baseline = value_and_grad(lambda p: mae_loss_float64(p, imgs, mask, patch, norm_pix, dtype=dtype), pred)
    assert_all_within_pytorch_error(actual, exact, baseline, "loss, grad")


def test_patchify_round_trip_and_order():
    imgs = torch.randn(2, 3, 8, 12)
    patches = K.patchify(imgs, 4)
    assert patches.shape == (2, 6, 48)
    # Patch (0, 1), pixel (p=1, q=2), channel 2 sits at index (1 * 4 + 2) * 3 + 2.
    assert patches[0, 1, (1 * 4 + 2) * 3 + 2] == imgs[0, 2, 1, 4 + 2]
    torch.testing.assert_close(K.unpatchify(patches, 4, (2, 3)), imgs, rtol=0, atol=0)


def test_shape_errors_name_the_argument():
    with pytest.raises(ValueError, match="pred must be"):
        K.masked_patch_loss(torch.randn(1, 4, 10), torch.randn(1, 3, 4, 4), torch.ones(1, 4), patch_size=2)
    with pytest.raises(ValueError, match="multiples of patch_size"):
        K.masked_patch_loss(torch.randn(1, 4, 12), torch.randn(1, 3, 5, 4), torch.ones(1, 4), patch_size=2)


# --- the Triton kernel ----------------------------------------------------------------------------


class Case(NamedTuple):
    batch: int
    height: int
    width: int
    patch: int
    contiguous: bool = True


CASES = {
    "vits16": Case(2, 224, 224, 16),  # 196 patches of 768 values
    "batch1-3x5": Case(1, 24, 40, 8),
    "strided-p4": Case(3, 12, 20, 4, contiguous=False),
}
MASKS = ["binary", "bool", "weights"]
# Every mask kind and norm_pix setting on the small cases; the slow realistic case once per dtype.
LOSS_CASES = [(name, mask, norm_pix) for name in CASES for mask in MASKS for norm_pix in (True, False)
              if name != "vits16" or (mask == "binary" and norm_pix)]


def _inputs(case: Case, pred_dtype, imgs_dtype, mask_kind, seed=0, device="cpu"):
    """pred (B, L, p*p*3), imgs (B, 3, H, W), mask (B, L); strided cases read pred out of a
    (B, 1 + L, N) decoder output ([CLS] dropped, as the model does) and imgs out of a larger frame."""
    generator = torch.Generator().manual_seed(seed)
    length, numel = (case.height // case.patch) * (case.width // case.patch), case.patch**2 * 3
    if case.contiguous:
        imgs = torch.randn(case.batch, 3, case.height, case.width, generator=generator)
        pred = torch.randn(case.batch, length, numel, generator=generator)
    else:
        imgs = torch.randn(case.batch, 3, case.height + 3, case.width + 2, generator=generator)[:, :, 1:-2, 2:]
        pred = torch.randn(case.batch, 1 + length, numel, generator=generator)[:, 1:]
    weights = torch.rand(case.batch, length, generator=generator)
    mask = {"binary": (weights < 0.8).float(), "bool": weights < 0.8, "weights": weights}[mask_kind]
    return pred.to(device, pred_dtype), imgs.to(device, imgs_dtype), mask.to(device)


def _loss_and_grad(pred, imgs, mask, patch, norm_pix=True, loss_fn=None):
    """The loss and d(loss * scale)/d pred; scale = N * sum(mask), as a loss scaler would, keeps the
    gradient O(1) so that float16 compares values rather than underflow."""
    loss_fn = loss_fn or (lambda p: K.masked_patch_loss(p, imgs, mask, patch_size=patch, norm_pix=norm_pix))
    pred = pred.detach().requires_grad_()
    loss = loss_fn(pred)
    scale = pred.shape[-1] * mask.double().sum().item()
    (grad,) = torch.autograd.grad(loss, pred, torch.tensor(scale, dtype=loss.dtype, device=loss.device))
    return loss, grad


def _check_kernel(pred, imgs, mask, patch, norm_pix=True, what="", exact=None):
    """Kernel loss and gradient against `exact` (default: the reference on float64 copies of the
    inputs) within 2x the reference's own error in the inputs' precision."""
    baseline = _loss_and_grad(pred, imgs, mask, patch, norm_pix)
    exact = exact or _loss_and_grad(pred.double(), imgs.double(), mask, patch, norm_pix)
    with K.use_backend("triton"):
        got = _loss_and_grad(pred, imgs, mask, patch, norm_pix)
    assert got[0].dtype == torch.float32 and got[1].dtype == pred.dtype  # float32 sums whatever pred is
    assert_all_within_pytorch_error(got, exact, baseline, what)


@pytest.mark.parametrize("dtype", KERNEL_DTYPES)
@pytest.mark.parametrize("name,mask_kind,norm_pix", LOSS_CASES)
def test_kernel_matches_reference(name, mask_kind, norm_pix, dtype, device):
    case = CASES[name]
    pred, imgs, mask = _inputs(case, dtype, torch.float32, mask_kind, device=device)
    _check_kernel(pred, imgs, mask, case.patch, norm_pix, f"{name} {mask_kind}")


@pytest.mark.parametrize("dtype", [pytest.param(torch.float32, marks=cuda), pytest.param(torch.float16, marks=cuda)], ids=str)
@pytest.mark.parametrize("name", ["batch1-3x5", "strided-p4"])
def test_kernel_matches_mae_definition_in_float64(name, dtype, device):
    case = CASES[name]
    pred, imgs, mask = _inputs(case, dtype, torch.float32, "binary", seed=1, device=device)
    definition = lambda p: mae_loss_float64(p.cpu(), imgs.cpu(), mask.cpu(), case.patch).to(device)  # noqa: E731
    _check_kernel(pred, imgs, mask, case.patch, what=name, exact=_loss_and_grad(pred.double(), imgs, mask, case.patch, loss_fn=definition))


@cuda
@pytest.mark.parametrize("imgs_dtype", [torch.float16, torch.bfloat16], ids=str)
def test_low_precision_images(imgs_dtype, device):
    """bfloat16 images are only read (exactly) by the kernel, so the interpreter checks them too."""
    case = CASES["batch1-3x5"]
    pred, imgs, mask = _inputs(case, torch.float32, imgs_dtype, "binary", seed=2, device=device)
    _check_kernel(pred, imgs, mask, case.patch, what=str(imgs_dtype))


@cuda
def test_launcher_writes_every_element_and_skips_an_unneeded_gradient(device):
    """4 patches per program over 3*15 patches: the last program holds one. NaN-filled
    buffers show any unwritten value; without store_grad the gradient buffer is left alone."""
    case = CASES["strided-p4"]
    pred, imgs, mask = _inputs(case, torch.float32, torch.float32, "weights", seed=3, device=device)
    programs = -(-pred.shape[0] * pred.shape[1] // 4)
    nan = lambda shape: torch.full(shape, float("nan"), device=device)  # noqa: E731
    partials, grad = patch_loss_triton.patch_loss_forward(
        pred, imgs, mask, case.patch, True, 1e-6, store_grad=True, grad=nan(pred.shape), partials=nan((programs, 2)), patches_per_program=4)
    assert torch.isfinite(partials).all() and torch.isfinite(grad).all()
    # The kernel's gradient is 2 * m * (pred - target): the reference's d loss / d pred * N * sum(m).
    got = (partials[:, 0].sum() / partials[:, 1].sum(), grad)
    assert_all_within_pytorch_error(got, _loss_and_grad(pred.double(), imgs.double(), mask, case.patch),
                                    _loss_and_grad(pred, imgs, mask, case.patch), "launcher")

    untouched = nan(pred.shape)
    again, no_grad = patch_loss_triton.patch_loss_forward(pred, imgs, mask, case.patch, True, 1e-6, store_grad=False, grad=untouched, patches_per_program=4)
    assert no_grad is None and untouched.isnan().all()
    torch.testing.assert_close(again, partials, rtol=0, atol=0)


@cuda
def test_loss_without_gradient_and_determinism(device):
    case = CASES["vits16"]
    pred, imgs, mask = _inputs(case, torch.float32, torch.float32, "binary", seed=4, device=device)
    with K.use_backend("triton"):
        first, second = _loss_and_grad(pred, imgs, mask, case.patch), _loss_and_grad(pred, imgs, mask, case.patch)
        frozen = K.masked_patch_loss(pred, imgs, mask, patch_size=case.patch)  # pred needs no gradient
    for a, b in zip(first, second):
        torch.testing.assert_close(a, b, rtol=0, atol=0)  # fixed-order sums, no atomics
    assert not frozen.requires_grad
    torch.testing.assert_close(frozen, first[0], rtol=0, atol=0)


@cuda
def test_backward_scales_the_forward_gradient_in_place(monkeypatch, device):
    """No second (B, L, N) buffer: the gradient pred receives is the one the forward kernel wrote,
    scaled where it lies; a second backward through the graph then refuses (autograd's version
    check on the saved buffer) rather than scale it twice."""
    case = CASES["batch1-3x5"]
    pred, imgs, mask = _inputs(case, torch.float32, torch.float32, "weights", seed=6, device=device)
    written = []
    forward = patch_loss_triton.patch_loss_forward
    monkeypatch.setattr(patch_loss_triton, "patch_loss_forward",
                        lambda *args, **kwargs: (lambda out: written.append(out[1]) or out)(forward(*args, **kwargs)))
    pred = pred.requires_grad_()
    with K.use_backend("triton"):
        loss = K.masked_patch_loss(pred, imgs, mask, patch_size=case.patch)
    (grad,) = torch.autograd.grad(loss, pred, retain_graph=True)
    assert grad.data_ptr() == written[0].data_ptr()
    unscaled = lambda p: K.masked_patch_loss(p, imgs, mask, patch_size=case.patch)  # noqa: E731
    pred64 = pred.detach().double().requires_grad_()
    pred32 = pred.detach().requires_grad_()
    assert_within_pytorch_error(grad, torch.autograd.grad(unscaled(pred64), pred64)[0], torch.autograd.grad(unscaled(pred32), pred32)[0], "grad")
    with pytest.raises(RuntimeError, match="inplace operation"):
        torch.autograd.grad(loss, pred)


# --- dispatch and the custom operator -----------------------------------------------------------


def test_forced_triton_explains_what_it_cannot_take():
    case = CASES["batch1-3x5"]
    pred, imgs, mask = _inputs(case, torch.float64, torch.float32, "binary", seed=5)
    with K.use_backend("triton"), pytest.raises(K.BackendUnavailable, match="pred is torch.float64"):
        K.masked_patch_loss(pred, imgs, mask, patch_size=case.patch)
    pred, imgs = pred.float(), imgs.requires_grad_()
    with K.use_backend("triton"), pytest.raises(K.BackendUnavailable, match="imgs requires grad"):
        K.masked_patch_loss(pred, imgs, mask, patch_size=case.patch)
    with K.use_backend("auto"):  # the reference takes it, gradient to the images included
        loss = K.masked_patch_loss(pred, imgs, mask, patch_size=case.patch)
    assert torch.autograd.grad(loss, imgs)[0].abs().sum() > 0


@pytest.mark.slow
@cuda
def test_custom_op_passes_opcheck(device):
    """torch.library.opcheck: schema, fake implementation against the real outputs, autograd
    registration. Not the AOT comparison: the op's second output is the gradient buffer that the
    eager backward scales in place (as Liger-Kernel does), so opcheck's eager-vs-AOT comparison
    of outputs after a backward sees the scaled buffer; the traced backward is out of place and
    checked against eager by test_compile.py."""
    g = torch.Generator().manual_seed(3)
    pred = torch.randn(2, 16, 12, generator=g).to(device).requires_grad_()
    imgs = torch.randn(2, 3, 8, 8, generator=g).to(device)
    mask = (torch.rand(2, 16, generator=g) > 0.5).float().to(device)
    torch.library.opcheck(torch.ops.smae.masked_patch_loss_sums, (pred, imgs, mask, 2, True, 1e-6, True),
                          test_utils=("test_schema", "test_autograd_registration", "test_faketensor"))
