"""masked_patch_loss: eager reference, torch.compile of it, and the Triton kernel.

    python -m pytest bench/bench_loss.py --benchmark-only -s

Shapes: bench/shapes.py (ViT-S/16: 196 patches of 16x16x3; ViT-S/8: 784 of 8x8x3; batch 64 and
256, 95% of the patches masked). Inputs as in bf16-autocast training: pred (B, L, p*p*3) bf16
from the decoder, the float32 frame (B, 3, 224, 224), a float32 mask; norm_pix on.
Passes: forward (pred needs no gradient, so the kernel stores none) and forward+backward.
Bytes moved (extra_info, the same figure for every provider): pred, frame and mask read once;
for forward+backward also the gradient the kernel writes in the forward pass and the read and
write of backward's scaling. Every provider's loss and gradient are checked against eager's first.
Targets (H200, forward+backward at vits16-b256): >= 5x eager, >= 1.5x compile, >= 70% of the
device's copy bandwidth (`fraction_of_copy_bandwidth`).
"""
from __future__ import annotations

import functools

import pytest
import torch

from bench.cuda_measure import assert_close_to_eager, nbytes, time_cuda
from bench.shapes import TRAINING_SHAPES
from smae.kernels import masked_patch_loss, masked_patch_loss_reference, use_backend
from smae.models.masking import random_masking

PROVIDERS = ["eager", "compile", "triton"]  # eager first: the others report their speed-up on it
PASSES = ["forward", "forward+backward"]


def triton_loss(pred, imgs, mask, *, patch_size):
    with use_backend("triton"):
        return masked_patch_loss(pred, imgs, mask, patch_size=patch_size)


@functools.lru_cache(maxsize=None)
def _provider_fn(provider: str):
    if provider == "eager":
        return masked_patch_loss_reference
    if provider == "compile":
        return torch.compile(masked_patch_loss_reference, dynamic=False)
    return triton_loss


@functools.lru_cache(maxsize=None)
def _case(shape_name: str):
    """pred, frame, mask, and eager's loss and gradient for them."""
    shape = TRAINING_SHAPES[shape_name]
    batch, length, patch = shape["batch"], shape["tokens"], shape["patch"]
    generator = torch.Generator("cuda").manual_seed(0)
    pred = torch.randn(batch, length, patch * patch * 3, device="cuda", generator=generator).bfloat16().requires_grad_()
    imgs = torch.randn(batch, 3, shape["img_size"], shape["img_size"], device="cuda", generator=generator)
    mask = random_masking(batch, length, 0.95, "cuda", generator).mask
    loss = masked_patch_loss_reference(pred, imgs, mask, patch_size=patch)
    (grad,) = torch.autograd.grad(loss, pred)
    return pred, imgs, mask, loss.detach(), grad


def _cases():
    for shape_name in TRAINING_SHAPES:
        for pass_ in PASSES:
            for provider in PROVIDERS:
                yield pytest.param(shape_name, pass_, provider, id=f"{pass_}-{shape_name}-{provider}")


@pytest.mark.parametrize("shape_name,pass_,provider", list(_cases()))
def test_loss_speed(benchmark, shape_name, pass_, provider):
    pred, imgs, mask, want_loss, want_grad = _case(shape_name)
    patch = TRAINING_SHAPES[shape_name]["patch"]
    fn = _provider_fn(provider)
    backward = pass_ == "forward+backward"
    frozen = pred.detach()

    def run():
        if backward:
            return torch.autograd.grad(fn(pred, imgs, mask, patch_size=patch), pred)
        return fn(frozen, imgs, mask, patch_size=patch)

    loss = fn(pred, imgs, mask, patch_size=patch)
    (grad,) = torch.autograd.grad(loss, pred)
    assert_close_to_eager(loss.detach(), want_loss)
    assert_close_to_eager(grad, want_grad)
    assert_close_to_eager(fn(frozen, imgs, mask, patch_size=patch), want_loss)  # the path without a gradient
    moved = nbytes(pred, imgs, mask) + (3 * nbytes(pred) if backward else 0)
    time_cuda(benchmark, run, group=f"masked_patch_loss {pass_} {shape_name}", provider=provider, bytes_moved=moved)
