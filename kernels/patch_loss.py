"""MAE's normalised-pixel reconstruction loss on masked patches.

    target[b, l] = patchify(imgs)[b, l]                          (p*p*3 values, (p, q, c) order)
    target      <- (target - mean) / sqrt(var_unbiased + eps)    per patch, when norm_pix
    err[b, l]    = mean over the patch of (pred[b, l] - target[b, l])^2
    loss         = sum(err * mask) / sum(mask)

pred (B, L, p*p*3), imgs (B, 3, H, W) with H, W multiples of p, mask (B, L) with 1 = counted
(masked). The loss is computed in float32 (float64 for float64 inputs) and returned as a 0-dim
tensor of that dtype. d loss / d pred[b, l] = 2 * mask[b, l] * (pred - target) / (N * sum(mask)),
N = p*p*3.

Bytes (the Triton path, `patch_loss_triton.py`, imported on first use): forward reads pred and
imgs once (plus the mask) and writes the gradient once, already computed; backward reads it
and writes it scaled by the incoming gradient. About 5*N FLOPs per patch: memory-bound.

The Triton path is the custom operator `torch.ops.smae.masked_patch_loss_sums` (fake and
autograd registered), so `torch.compile` keeps it in one graph; the division by sum(mask) stays
outside it, in plain PyTorch.
"""
from __future__ import annotations

import torch
from einops import rearrange

from .backend import triton_device_reasons, use_triton


def patchify(imgs: torch.Tensor, patch_size: int) -> torch.Tensor:
    """imgs (B, C, H, W) -> (B, L, p*p*C) in MAE's (p, q, c) order, L = (H/p)*(W/p) row-major."""
    return rearrange(imgs, "b c (h p) (w q) -> b (h w) (p q c)", p=patch_size, q=patch_size)


def unpatchify(patches: torch.Tensor, patch_size: int, grid: tuple[int, int]) -> torch.Tensor:
    """(B, L, p*p*C) -> (B, C, h*p, w*p); the inverse of `patchify` for a (h, w) grid."""
    return rearrange(patches, "b (h w) (p q c) -> b c (h p) (w q)", h=grid[0], w=grid[1], p=patch_size, q=patch_size)


def masked_patch_loss_reference(
    pred: torch.Tensor,
    imgs: torch.Tensor,
    mask: torch.Tensor,
    *,
    patch_size: int,
    norm_pix: bool = True,
    eps: float = 1e-6,
) -> torch.Tensor:
    """MAE's forward_loss, upcast to float32: pred (B, L, p*p*3), imgs (B, 3, H, W), mask (B, L) -> ()."""
    compute = torch.promote_types(pred.dtype, torch.float32)
    target = patchify(imgs.to(compute), patch_size)  # (B, L, p*p*3)
    if norm_pix:
        mean = target.mean(dim=-1, keepdim=True)
        var = target.var(dim=-1, keepdim=True)  # unbiased, as torch.var by default
        target = (target - mean) / (var + eps) ** 0.5
    per_patch = ((pred.to(compute) - target) ** 2).mean(dim=-1)  # (B, L)
    mask = mask.to(compute)
    return (per_patch * mask).sum() / mask.sum()


def _triton():
    from . import patch_loss_triton  # Triton is optional: imported on the first kernel call only

    return patch_loss_triton


def _check_inputs(pred: torch.Tensor, imgs: torch.Tensor, mask: torch.Tensor, patch_size: int) -> None:
    if imgs.dim() != 4 or imgs.shape[2] % patch_size or imgs.shape[3] % patch_size:
        raise ValueError(f"masked_patch_loss: imgs must be (B, C, H, W) with H, W multiples of patch_size={patch_size}; got {tuple(imgs.shape)}")
    batch, channels, height, width = imgs.shape
    expected = (batch, (height // patch_size) * (width // patch_size), patch_size * patch_size * channels)
    if tuple(pred.shape) != expected:
        raise ValueError(f"masked_patch_loss: pred must be (B, L, p*p*C) = {expected}, got {tuple(pred.shape)}")
    if tuple(mask.shape) != expected[:2]:
        raise ValueError(f"masked_patch_loss: mask must be (B, L) = {expected[:2]}, got {tuple(mask.shape)}")


def _triton_reasons(pred: torch.Tensor, imgs: torch.Tensor, mask: torch.Tensor) -> list[str]:
    """Why the kernel cannot take these inputs; [] if it can."""
    reasons = triton_device_reasons(pred, imgs, mask)
    for name, tensor in (("pred", pred), ("imgs", imgs)):
        if tensor.dtype not in (torch.float32, torch.float16, torch.bfloat16):
            reasons.append(f"{name} is {tensor.dtype}; the kernel takes float32, float16 or bfloat16")
    if mask.dtype not in (torch.bool, torch.float32, torch.float16, torch.bfloat16):
        reasons.append(f"mask is {mask.dtype}; the kernel takes bool, float32, float16 or bfloat16")
    if torch.is_grad_enabled():
        reasons += [f"{name} requires grad; the kernel differentiates pred only" for name, t in (("imgs", imgs), ("mask", mask)) if t.requires_grad]
    return reasons


@torch.library.custom_op("smae::masked_patch_loss_sums", mutates_args=())
def _loss_sums_op(pred: torch.Tensor, imgs: torch.Tensor, mask: torch.Tensor, patch_size: int, norm_pix: bool,
                  eps: float, store_grad: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """-> sums (2,) float32 = [sum err * m, sum m] (a fixed-order reduction), and
    g = 2 * m * (pred - target) (B, L, N) in pred's dtype, so d sums[0] / d pred = g / N; (0,) unless store_grad."""
    partials, grad = _triton().patch_loss_forward(pred, imgs, mask, patch_size, norm_pix, eps, store_grad=store_grad)
    return partials.sum(0), (pred.new_empty(0) if grad is None else grad)


@_loss_sums_op.register_fake
def _(pred, imgs, mask, patch_size, norm_pix, eps, store_grad):
    return pred.new_empty(2, dtype=torch.float32), pred.new_empty(pred.shape if store_grad else (0,))


def _loss_sums_setup(ctx, inputs, output):
    _, grad = output
    ctx.mark_non_differentiable(grad)
    ctx.save_for_backward(grad)


def _loss_sums_backward(ctx, grad_sums, _):
    # Only sums[0] depends on pred; 1/sum(m) of the mean reaches here through grad_sums[0].
    # Eager: scaled in place, as Liger-Kernel does (the forward's buffer becomes pred's gradient).
    # Traced (torch.compile, AOT: tensor subclasses), out of place: a traced backward may not
    # mutate a saved forward output, and the compiler plans buffer reuse itself.
    (grad,) = ctx.saved_tensors
    scale = grad_sums[0] / grad.shape[-1]
    in_place = type(grad) is torch.Tensor and not torch.compiler.is_compiling()
    return grad.mul_(scale) if in_place else grad * scale, None, None, None, None, None, None


_loss_sums_op.register_autograd(_loss_sums_backward, setup_context=_loss_sums_setup)


def masked_patch_loss(
    pred: torch.Tensor,
    imgs: torch.Tensor,
    mask: torch.Tensor,
    *,
    patch_size: int,
    norm_pix: bool = True,
    eps: float = 1e-6,
) -> torch.Tensor:
    """Mean over masked patches of the per-patch MSE to the (normalised) pixels; see module doc."""
    _check_inputs(pred, imgs, mask, patch_size)
    if use_triton("masked_patch_loss", _triton_reasons(pred, imgs, mask)):
        store_grad = pred.requires_grad and torch.is_grad_enabled()  # else the kernel skips the gradient's store
        sums, _ = _loss_sums_op(pred, imgs, mask, patch_size, norm_pix, eps, store_grad)
        return sums[0] / sums[1]
    return masked_patch_loss_reference(pred, imgs, mask, patch_size=patch_size, norm_pix=norm_pix, eps=eps)
