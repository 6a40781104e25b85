"""Triton kernel and launcher for `masked_patch_loss` (imported lazily from `patch_loss.py`, so
`import smae` needs no Triton).

One program takes BLOCK_P consecutive patches (b, l) and holds each whole patch in registers.
It reads the image in its own (c, p, q) order, so consecutive lanes read consecutive pixels of one
row of one channel plane (coalesced, vectorised), and permutes that tile in registers to pred's
(p, q, c) order; pred's rows are read contiguously (no patchified copy of the image). Channels
are padded to a power of two (3 -> 4, masked) because Triton tiles have power-of-two sides. It
computes the per-patch mean and unbiased variance in two passes over the registers, and writes

    partials[program] = (sum over its patches of err * m, sum of m)        (float32)
    grad[b, l]        = 2 * m * (pred - target)   (when pred needs a gradient; pred's dtype)

The caller sums the partials (a fixed-order reduction: deterministic, no atomics) and scales the
gradient by grad_output / (N * sum(mask)) in backward. Leaving 1/(N * sum(mask)) out of the
stored gradient keeps it O(1): stored in float16 it would underflow before a loss scale could
lift it.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

ELEMENTS_PER_PROGRAM = 4096  # patches per program = this / (next_pow2(p*p) * next_pow2(C)): 4 at p=16, 16 at p=8
NUM_WARPS = 8  # 16 values per thread of each (BLOCK_P, pixels, channels) tile
# Without the gradient store (the evaluation loss) ptxas squeezes the full tile into 64
# registers and spills at p = 8 in fp16 (sm_90 with Triton 3.9, sm_70 / sm_75 / sm_80 with 4
# warps under 3.6); half the patches per program spill nowhere (tests/gpu_budget.py, both).
NO_GRAD_ELEMENTS_PER_PROGRAM = ELEMENTS_PER_PROGRAM // 2


@triton.jit
def _patch_loss_kernel(
    pred_ptr, imgs_ptr, mask_ptr, grad_ptr, partial_ptr,
    total, L, grid_w, N, eps,
    sp_b, sp_l, sp_n, sx_b, sx_c, sx_h, sx_w, sm_b, sm_l, sg_b, sg_l, sg_n,
    PATCH: tl.constexpr, CHANNELS: tl.constexpr, NORM_PIX: tl.constexpr, STORE_GRAD: tl.constexpr,
    BLOCK_P: tl.constexpr, PIXELS_PAD: tl.constexpr, CHANNELS_PAD: tl.constexpr,
):
    pid = tl.program_id(0)
    patch = pid.to(tl.int64) * BLOCK_P + tl.arange(0, BLOCK_P)  # (BLOCK_P,) flat (b, l)
    patch_ok = patch < total
    b = patch // L
    l = patch % L
    pixel = tl.arange(0, PIXELS_PAD)  # p * PATCH + q
    channel = tl.arange(0, CHANNELS_PAD)
    pixel_ok = pixel < PATCH * PATCH
    channel_ok = channel < CHANNELS

    # The image tile in (patch, c, pixel) order: the last axis walks along image rows.
    corner = b * sx_b + (l // grid_w) * PATCH * sx_h + (l % grid_w) * PATCH * sx_w  # (BLOCK_P,)
    plane = channel * sx_c  # (CHANNELS_PAD,)
    inside = (pixel // PATCH) * sx_h + (pixel % PATCH) * sx_w  # (PIXELS_PAD,)
    image_ok = patch_ok[:, None, None] & channel_ok[None, :, None] & pixel_ok[None, None, :]
    target = tl.load(imgs_ptr + corner[:, None, None] + plane[None, :, None] + inside[None, None, :], mask=image_ok, other=0.0)
    target = tl.permute(target.to(tl.float32), (0, 2, 1))  # (patch, pixel, c): pred's order
    ok = tl.permute(image_ok, (0, 2, 1))
    element = pixel[:, None] * CHANNELS + channel[None, :]  # (PIXELS_PAD, CHANNELS_PAD) index in a pred row
    row = b * sp_b + l * sp_l
    pred = tl.load(pred_ptr + row[:, None, None] + element[None, :, :] * sp_n, mask=ok, other=0.0).to(tl.float32)
    weight = tl.load(mask_ptr + b * sm_b + l * sm_l, mask=patch_ok, other=0).to(tl.float32)  # (BLOCK_P,)

    if NORM_PIX:
        mean = tl.sum(tl.sum(target, axis=2), axis=1) / N
        centred = tl.where(ok, target - mean[:, None, None], 0.0)
        var = tl.sum(tl.sum(centred * centred, axis=2), axis=1) / (N - 1)  # unbiased, as torch.var
        target = centred / tl.sqrt(var + eps)[:, None, None]
    diff = tl.where(ok, pred - target, 0.0)
    err = tl.sum(tl.sum(diff * diff, axis=2), axis=1) / N  # (BLOCK_P,) per-patch mean squared error
    tl.store(partial_ptr + 2 * pid, tl.sum(err * weight, axis=0))
    tl.store(partial_ptr + 2 * pid + 1, tl.sum(weight, axis=0))
    if STORE_GRAD:
        grad = 2.0 * weight[:, None, None] * diff
        tl.store(grad_ptr + (b * sg_b + l * sg_l)[:, None, None] + element[None, :, :] * sg_n,
                 grad.to(grad_ptr.dtype.element_ty), mask=ok)


def patch_loss_forward(pred, imgs, mask, patch_size, norm_pix, eps, *, store_grad, grad=None, partials=None, patches_per_program=None):
    """pred (B, L, p*p*C), imgs (B, C, H, W), mask (B, L) bool or float
    -> partials (programs, 2) float32 [sum err*m, sum m], grad (B, L, p*p*C) in pred's dtype or None."""
    batch, channels, height, width = imgs.shape
    length, numel = pred.shape[1], pred.shape[2]
    pixels_pad, channels_pad = triton.next_power_of_2(patch_size * patch_size), triton.next_power_of_2(channels)
    elements = ELEMENTS_PER_PROGRAM if store_grad else NO_GRAD_ELEMENTS_PER_PROGRAM
    block_p = patches_per_program or max(1, elements // (pixels_pad * channels_pad))
    programs = triton.cdiv(batch * length, block_p)
    if partials is None:
        partials = torch.empty(programs, 2, device=pred.device, dtype=torch.float32)
    if store_grad and grad is None:
        grad = torch.empty(pred.shape, device=pred.device, dtype=pred.dtype)
    if partials.shape != (programs, 2) or (store_grad and (grad.shape != pred.shape or grad.dtype != pred.dtype)):
        raise ValueError(f"buffers must be partials ({programs}, 2) and grad {tuple(pred.shape)} {pred.dtype}")
    grad_arg = grad if store_grad else torch.empty(0, device=pred.device, dtype=pred.dtype)
    grad_strides = grad.stride() if store_grad else (0, 0, 0)
    _patch_loss_kernel[(programs,)](
        pred, imgs, mask, grad_arg, partials,
        batch * length, length, width // patch_size, numel, eps,
        *pred.stride(), *imgs.stride(), *mask.stride(), *grad_strides,
        PATCH=patch_size, CHANNELS=channels, NORM_PIX=norm_pix, STORE_GRAD=store_grad,
        BLOCK_P=block_p, PIXELS_PAD=pixels_pad, CHANNELS_PAD=channels_pad, num_warps=NUM_WARPS,
    )
    return partials, (grad if store_grad else None)
