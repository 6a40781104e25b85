"""MAE's normalised-pixel reconstruction loss on masked patches.

    target[b, l] = patchify(imgs)[b, l]                          (p*p*3 values, (p, q, c) order)
    target      <- (target - mean) / sqrt(var_unbiased + eps)    per patch, when norm_pix
    err[b, l]    = mean over the patch of (pred[b, l] - target[b, l])^2
    loss         = sum(err * mask) / sum(mask)

pred (B, L, p*p*3), imgs (B, 3, H, W) with H, W multiples of p, mask (B, L) with 1 = counted
(masked). The loss is computed in float32 (float64 for float64 inputs) and returned as a 0-dim
tensor of that dtype. Bytes: the kernel reads pred and imgs once and writes d loss / d pred once.
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


def _check_inputs(pred: torch.Tensor, imgs: torch.Tensor, mask: torch.Tensor, patch_size: int) -> None:
    if imgs.dim() != 4 or imgs.shape[2] % patch_size or imgs.shape[3] % patch_size:
        raise ValueError(f"masked_patch_loss: imgs must be (B, C, H, W) with H, W multiples of patch_size={patch_size}; got {tuple(imgs.shape)}")
    batch, channels, height, width = imgs.shape
    expected = (batch, (height // patch_size) * (width // patch_size), patch_size * patch_size * channels)
    if tuple(pred.shape) != expected:
        raise ValueError(f"masked_patch_loss: pred must be (B, L, p*p*C) = {expected}, got {tuple(pred.shape)}")
    if tuple(mask.shape) != expected[:2]:
        raise ValueError(f"masked_patch_loss: mask must be (B, L) = {expected[:2]}, got {tuple(mask.shape)}")


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
    use_triton("masked_patch_loss", triton_device_reasons(pred, imgs, mask) + ["no Triton kernel for masked_patch_loss yet"])
    return masked_patch_loss_reference(pred, imgs, mask, patch_size=patch_size, norm_pix=norm_pix, eps=eps)
