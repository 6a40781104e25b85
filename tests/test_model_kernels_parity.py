"""SiamMAE through the fused kernels (backend "triton") against the PyTorch references (backend
"torch"): the same weights and masking give the same loss, prediction and gradients, and a short
training run falls the same way with kernels on and off. Both are held to the model run in
float64 (references) by the kernel tests' one rule (tests/tolerance.py)."""
import copy

import pytest
import torch
from kernel_cases import KERNEL_DTYPES, cuda
from tolerance import FLOOR_ROUNDINGS, assert_within_pytorch_error, max_error

import smae
import smae.kernels as K
from smae.models import DecoderConfig, EncoderConfig, SiamMAE, model_config

# float16 gradients of a mean over ~100 masked patches underflow without a loss scale, as in
# mixed-precision training; the same scale is used for every dtype.
LOSS_SCALE = 1024.0


def _frames(batch, device, dtype, seed):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, 3, 64, 64, generator=generator).to(device, dtype) for _ in range(2)]


def _step(model, f1, f2, backend):
    """One forward/backward with masks drawn from a fixed seed -> loss, pred, mask, {name: grad}."""
    model.zero_grad(set_to_none=True)
    with K.use_backend(backend):
        loss, pred, mask = model(f1, f2, generator=torch.Generator(f1.device).manual_seed(0))
        (loss * LOSS_SCALE).backward()
    return loss.detach(), pred.detach(), mask, {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("dtype", KERNEL_DTYPES)
def test_tiny_model_step_matches_between_backends(dtype, device):
    torch.manual_seed(0)
    model = smae.build_model("tiny").to(device, dtype)
    f1, f2 = _frames(2, device, dtype, seed=1)
    exact = _step(copy.deepcopy(model).double(), f1.double(), f2.double(), "torch")
    want_loss, want_pred, want_mask, want_grads = _step(model, f1, f2, "torch")
    loss, pred, mask, grads = _step(model, f1, f2, "triton")
    torch.testing.assert_close(mask, want_mask, rtol=0, atol=0)
    torch.testing.assert_close(exact[2], want_mask, rtol=0, atol=0)
    assert_within_pytorch_error(loss, exact[0], want_loss, "loss")
    assert_within_pytorch_error(pred, exact[1], want_pred, "pred")
    assert grads.keys() == want_grads.keys() == exact[3].keys() and "mask_token" in grads and "encoder.patch_embed.proj.weight" in grads
    # Gradients pass through every layer, so which parameter gets PyTorch's luckier rounding varies
    # with the summation order (even with the thread count): each gradient is held, relative to
    # its own scale, to twice the reference path's worst relative error over the whole model.
    worst = max(_relative_error(want, exact[3][name]) for name, want in want_grads.items())
    for name in want_grads:
        error = _relative_error(grads[name], exact[3][name])
        assert error <= 2 * worst + FLOOR_ROUNDINGS * torch.finfo(torch.float32).eps, (
            f"{name}: relative error {error:.3g} exceeds 2 x the reference's worst {worst:.3g} ({dtype})")


def _relative_error(value: torch.Tensor, exact: torch.Tensor) -> float:
    """max |value - exact| / max |exact| (0 for an all-zero exact gradient that value matches)."""
    error, _ = max_error(value, exact)
    scale = float(exact.abs().max())
    return error / scale if scale else error


# Smaller than the `tiny` preset so that 2 x 30 steps stay quick in the Triton interpreter:
# 32x32 frames, 8x8 patches of 4x4 pixels, 6 kept at 90% masking.
SMALL = model_config("tiny", encoder=EncoderConfig(img_size=32, patch_size=4, embed_dim=64, depth=2, num_heads=4),
                     decoder=DecoderConfig(embed_dim=64, depth=1, num_heads=4), mask_ratio=0.9)


def _train(backend, steps, device, dtype=torch.float32):
    torch.manual_seed(0)
    model = SiamMAE(SMALL).to(device, dtype)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95))
    generator = torch.Generator().manual_seed(2)
    f1, f2 = [torch.randn(4, 3, 32, 32, generator=generator).to(device, dtype) for _ in range(2)]  # fixed pairs to memorise
    losses = []
    with K.use_backend(backend):
        for step in range(steps):
            loss, _, _ = model(f1, f2, generator=torch.Generator(device).manual_seed(step))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
    return torch.tensor(losses, dtype=dtype)


@cuda
def test_short_training_converges_alike(device):
    reference, fused = _train("torch", 30, device), _train("triton", 30, device)
    for losses in (reference, fused):
        assert losses[-5:].mean() < 0.7 * losses[:5].mean(), losses
    assert_within_pytorch_error(fused, _train("torch", 30, device, torch.float64), reference, "losses")
