"""The Triton masked_patch_loss against the reference and against MAE's definition in float64:
the value and d loss / d pred, every mask kind, norm_pix on and off, awkward layouts."""
from typing import NamedTuple

import pytest
import torch
from kernel_cases import KERNEL_DTYPES, TOLERANCES
from float64_specs import mae_loss_float64

import smae.kernels as K
from smae.kernels import patch_loss_triton


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


def _inputs(case: Case, pred_dtype, imgs_dtype, mask_kind, seed=0):
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
    return pred.to(pred_dtype), imgs.to(imgs_dtype), mask


def _loss_and_grad(pred, imgs, mask, patch, norm_pix=True):
    """The loss and d(loss * scale)/d pred; scale = N * sum(mask), as a loss scaler would, keeps the
    gradient O(1) so that float16 compares values rather than underflow."""
    pred = pred.detach().requires_grad_()
    loss = K.masked_patch_loss(pred, imgs, mask, patch_size=patch, norm_pix=norm_pix)
    scale = pred.shape[-1] * mask.double().sum().item()
    (grad,) = torch.autograd.grad(loss, pred, torch.tensor(scale, dtype=loss.dtype))
    return loss, grad


@pytest.mark.parametrize("dtype", KERNEL_DTYPES, ids=str)
@pytest.mark.parametrize("name,mask_kind,norm_pix", LOSS_CASES)
def test_kernel_matches_reference(name, mask_kind, norm_pix, dtype):
    case = CASES[name]
    pred, imgs, mask = _inputs(case, dtype, torch.float32, mask_kind)
    want = _loss_and_grad(pred, imgs, mask, case.patch, norm_pix)
    with K.use_backend("triton"):
        got = _loss_and_grad(pred, imgs, mask, case.patch, norm_pix)
    assert got[0].dtype == torch.float32 and got[1].dtype == dtype
    torch.testing.assert_close(got[0], want[0], **TOLERANCES[torch.float32])  # float32 sums either way
    torch.testing.assert_close(got[1], want[1], **TOLERANCES[dtype])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
@pytest.mark.parametrize("name", ["batch1-3x5", "strided-p4"])
def test_kernel_matches_mae_definition_in_float64(name, dtype):
    case = CASES[name]
    pred, imgs, mask = _inputs(case, dtype, torch.float32, "binary", seed=1)
    with K.use_backend("triton"):
        loss, grad = _loss_and_grad(pred, imgs, mask, case.patch)
    pred64 = pred.double().requires_grad_()
    want = mae_loss_float64(pred64, imgs, mask, case.patch)
    (want_grad,) = torch.autograd.grad(want, pred64, torch.tensor(pred.shape[-1] * mask.double().sum().item(), dtype=torch.float64))
    torch.testing.assert_close(loss.double(), want, **TOLERANCES[torch.float32])
    torch.testing.assert_close(grad.double(), want_grad, **TOLERANCES[dtype])


@pytest.mark.parametrize("imgs_dtype", [torch.float16, torch.bfloat16], ids=str)
def test_low_precision_images(imgs_dtype):
    """bfloat16 images are only read (exactly) by the kernel, so the interpreter checks them too."""
    case = CASES["batch1-3x5"]
    pred, imgs, mask = _inputs(case, torch.float32, imgs_dtype, "binary", seed=2)
    want = _loss_and_grad(pred, imgs, mask, case.patch)
    with K.use_backend("triton"):
        got = _loss_and_grad(pred, imgs, mask, case.patch)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, **TOLERANCES[torch.float32])


def test_launcher_writes_every_element_and_skips_an_unneeded_gradient():
    """4 patches per program over 3*15 patches: the last program holds one. NaN-filled
    buffers show any unwritten value; without store_grad the gradient buffer is left alone."""
    case = CASES["strided-p4"]
    pred, imgs, mask = _inputs(case, torch.float32, torch.float32, "weights", seed=3)
    programs = -(-pred.shape[0] * pred.shape[1] // 4)
    grad = torch.full(pred.shape, float("nan"))
    partials, grad = patch_loss_triton.patch_loss_forward(
        pred, imgs, mask, case.patch, True, 1e-6, store_grad=True, grad=grad, partials=torch.full((programs, 2), float("nan")), patches_per_program=4)
    assert torch.isfinite(partials).all() and torch.isfinite(grad).all()
    want_loss, want_grad = _loss_and_grad(pred, imgs, mask, case.patch)
    torch.testing.assert_close(partials[:, 0].sum() / partials[:, 1].sum(), want_loss, **TOLERANCES[torch.float32])
    torch.testing.assert_close(grad, want_grad, **TOLERANCES[torch.float32])

    untouched = torch.full(pred.shape, float("nan"))
    again, no_grad = patch_loss_triton.patch_loss_forward(pred, imgs, mask, case.patch, True, 1e-6, store_grad=False, grad=untouched, patches_per_program=4)
    assert no_grad is None and untouched.isnan().all()
    torch.testing.assert_close(again, partials, rtol=0, atol=0)


def test_loss_without_gradient_and_determinism():
    case = CASES["vits16"]
    pred, imgs, mask = _inputs(case, torch.float32, torch.float32, "binary", seed=4)
    with K.use_backend("triton"):
        first, second = _loss_and_grad(pred, imgs, mask, case.patch), _loss_and_grad(pred, imgs, mask, case.patch)
        frozen = K.masked_patch_loss(pred, imgs, mask, patch_size=case.patch)  # pred needs no gradient
    for a, b in zip(first, second):
        torch.testing.assert_close(a, b, rtol=0, atol=0)  # fixed-order sums, no atomics
    assert not frozen.requires_grad
    torch.testing.assert_close(frozen, first[0], rtol=0, atol=0)


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


def test_backward_scales_the_forward_gradient_in_place(monkeypatch):
    """No second (B, L, N) buffer: the gradient pred receives is the one the forward kernel wrote,
    scaled where it lies; a second backward through the graph then refuses (autograd's version
    check on the saved buffer) rather than scale it twice."""
    case = CASES["batch1-3x5"]
    pred, imgs, mask = _inputs(case, torch.float32, torch.float32, "weights", seed=6)
    written = []
    forward = patch_loss_triton.patch_loss_forward
    monkeypatch.setattr(patch_loss_triton, "patch_loss_forward",
                        lambda *args, **kwargs: (lambda out: written.append(out[1]) or out)(forward(*args, **kwargs)))
    pred = pred.requires_grad_()
    with K.use_backend("triton"):
        loss = K.masked_patch_loss(pred, imgs, mask, patch_size=case.patch)
    (grad,) = torch.autograd.grad(loss, pred, retain_graph=True)
    assert grad.data_ptr() == written[0].data_ptr()
    torch.testing.assert_close(grad, _loss_and_grad(pred, imgs, mask, case.patch)[1] / (pred.shape[-1] * mask.sum()),
                               **TOLERANCES[torch.float32])
    with pytest.raises(RuntimeError, match="inplace operation"):
        torch.autograd.grad(loss, pred)
