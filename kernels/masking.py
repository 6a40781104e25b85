"""Random-masking gathers (encoder side) and scatter (decoder side) of MAE / SiamMAE.

Gather, for the visible tokens of the masked frame:
    out[b, k] = tokens[b, ids_keep[b, k]] + pos_embed[ids_keep[b, k]]
    tokens (B, L, D), ids_keep (B, K) int64, pos_embed (L, D) or None -> out (B, K, D)

Gather of pixels, so the patch embedding runs on the kept patches only (1/20 of its FLOPs at 95%
masking; `patch_embed(x)[b, ids_keep]` equals `linear(gather_patches(x), conv.weight.flatten(1))`):
    out[b, k, (c, i, j)] = imgs[b, c, row * p + i, col * p + j],  (row, col) = divmod(ids_keep[b, k], W / p)
    imgs (B, C, H, W), ids_keep (B, K) -> out (B, K, C*p*p) in Conv2d weight order (c, i, j)

Scatter, the full decoder sequence (MAE's unshuffle + decoder position embeddings):
    out[b, p]     = visible[b, p] + pos_embed[p]                         for p < P (prefix, e.g. [CLS])
    out[b, P + l] = (visible[b, P + r] if r < K else mask_token) + pos_embed[P + l],  r = ids_restore[b, l]
    visible (B, P + K, D), ids_restore (B, L) int64, mask_token (D,), pos_embed (P + L, D)
    -> out (B, P + L, D)

ids_restore is the inverse permutation of the shuffle whose first K entries are ids_keep, so a
token kept at slot r of `visible` lands back at its place l. Outputs have the promoted dtype of
the inputs (as the references' additions); the mask token is rounded to the visible dtype first.

Bytes (element size s): gather moves 2*B*K*D*s in (tokens and pos rows) and B*K*D*s out;
gather_patches B*K*C*p*p*s each way; scatter B*K*D*s + (P + L)*D*s in, B*(P + L)*D*s out. The
backwards move the same amounts the other way; the gather's backward writes the whole (B, L, D)
gradient once, zeros included. The Triton kernels live in `masking_triton.py`, imported on first
use, and read ids_restore as a permutation (MAE's) and ids_keep as positions in [0, L).

The Triton paths are custom operators (`torch.ops.smae.*`, `torch.library.custom_op`) with fake
implementations and autograd formulas, so `torch.compile` keeps them in its graph as opaque
calls instead of breaking the graph; the references are plain PyTorch it traces and fuses.
"""
from __future__ import annotations

import torch
from einops import rearrange

from .backend import triton_device_reasons, use_triton

TRITON_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def gather_visible_reference(tokens: torch.Tensor, ids_keep: torch.Tensor, pos_embed: torch.Tensor | None = None) -> torch.Tensor:
    """tokens (B, L, D), ids_keep (B, K), pos_embed (L, D) or None -> (B, K, D)."""
    index = ids_keep.unsqueeze(-1).expand(-1, -1, tokens.shape[-1])  # (B, K, D)
    visible = torch.gather(tokens, 1, index)
    if pos_embed is not None:
        visible = visible + pos_embed[ids_keep]
    return visible


def gather_patches_reference(imgs: torch.Tensor, ids_keep: torch.Tensor, patch_size: int) -> torch.Tensor:
    """imgs (B, C, H, W), ids_keep (B, K) -> (B, K, C*p*p) in (c, p, q) order."""
    patches = rearrange(imgs, "b c (h p) (w q) -> b (h w) (c p q)", p=patch_size, q=patch_size)  # (B, L, C*p*p)
    return gather_visible_reference(patches, ids_keep)


def scatter_visible_reference(
    visible: torch.Tensor,
    ids_restore: torch.Tensor,
    mask_token: torch.Tensor,
    pos_embed: torch.Tensor,
    num_prefix: int = 0,
) -> torch.Tensor:
    """visible (B, P + K, D), ids_restore (B, L), mask_token (D,), pos_embed (P + L, D) -> (B, P + L, D)."""
    batch, _, dim = visible.shape
    length = ids_restore.shape[1]
    prefix, kept = visible[:, :num_prefix], visible[:, num_prefix:]
    fill = mask_token.reshape(1, 1, dim).expand(batch, length - kept.shape[1], dim)
    padded = torch.cat([kept, fill.to(kept.dtype)], dim=1)  # (B, L, D), kept first, as after the shuffle
    unshuffled = torch.gather(padded, 1, ids_restore.unsqueeze(-1).expand(-1, -1, dim))
    return torch.cat([prefix, unshuffled], dim=1) + pos_embed


def _triton():
    from . import masking_triton  # Triton is optional: imported on the first kernel call only

    return masking_triton


def _check_gather(tokens: torch.Tensor, ids_keep: torch.Tensor, pos_embed: torch.Tensor | None) -> None:
    if tokens.dim() != 3 or ids_keep.dim() != 2 or ids_keep.shape[0] != tokens.shape[0]:
        raise ValueError(f"gather_visible: tokens must be (B, L, D) and ids_keep (B, K); got {tuple(tokens.shape)} and {tuple(ids_keep.shape)}")
    if ids_keep.dtype != torch.int64:
        raise ValueError(f"gather_visible: ids_keep must be int64, got {ids_keep.dtype}")
    if pos_embed is not None and pos_embed.shape != tokens.shape[1:]:
        raise ValueError(f"gather_visible: pos_embed must be (L, D) = {tuple(tokens.shape[1:])}, got {tuple(pos_embed.shape)}")


def _check_gather_patches(imgs: torch.Tensor, ids_keep: torch.Tensor, patch_size: int) -> None:
    if imgs.dim() != 4 or imgs.shape[2] % patch_size or imgs.shape[3] % patch_size:
        raise ValueError(f"gather_patches: imgs must be (B, C, H, W) with H, W multiples of patch_size={patch_size}; got {tuple(imgs.shape)}")
    if ids_keep.dim() != 2 or ids_keep.shape[0] != imgs.shape[0] or ids_keep.dtype != torch.int64:
        raise ValueError(f"gather_patches: ids_keep must be (B, K) int64 with B = {imgs.shape[0]}, got {tuple(ids_keep.shape)} {ids_keep.dtype}")


def _check_scatter(visible: torch.Tensor, ids_restore: torch.Tensor, mask_token: torch.Tensor, pos_embed: torch.Tensor, num_prefix: int) -> None:
    if visible.dim() != 3 or ids_restore.dim() != 2 or ids_restore.shape[0] != visible.shape[0]:
        raise ValueError(f"scatter_visible: visible must be (B, P + K, D) and ids_restore (B, L); got {tuple(visible.shape)} and {tuple(ids_restore.shape)}")
    if ids_restore.dtype != torch.int64:
        raise ValueError(f"scatter_visible: ids_restore must be int64, got {ids_restore.dtype}")
    length, dim = ids_restore.shape[1], visible.shape[2]
    if not 0 <= visible.shape[1] - num_prefix <= length:
        raise ValueError(f"scatter_visible: {visible.shape[1] - num_prefix} visible tokens for a sequence of {length}")
    if mask_token.numel() != dim:
        raise ValueError(f"scatter_visible: mask_token must have D = {dim} elements, got {tuple(mask_token.shape)}")
    if pos_embed.shape != (num_prefix + length, dim):
        raise ValueError(f"scatter_visible: pos_embed must be (P + L, D) = {(num_prefix + length, dim)}, got {tuple(pos_embed.shape)}")


def _triton_reasons(indices: torch.Tensor, **floats: torch.Tensor | None) -> list[str]:
    """Why the masking kernels cannot take these inputs (device, dtype); [] if they can."""
    present = {name: t for name, t in floats.items() if t is not None}
    reasons = triton_device_reasons(*present.values(), indices)
    reasons += [f"{name} is {t.dtype}; the kernels take float32, float16 or bfloat16" for name, t in present.items() if t.dtype not in TRITON_DTYPES]
    return reasons


# Forward ops. Fakes give the launchers' output shapes and dtypes for tracing.
@torch.library.custom_op("smae::gather_visible", mutates_args=())
def _gather_visible_op(tokens: torch.Tensor, ids_keep: torch.Tensor, pos_embed: torch.Tensor | None) -> torch.Tensor:
    return _triton().gather_rows(tokens, ids_keep, pos_embed)


@_gather_visible_op.register_fake
def _(tokens, ids_keep, pos_embed):
    dtype = tokens.dtype if pos_embed is None else torch.promote_types(tokens.dtype, pos_embed.dtype)
    return tokens.new_empty((tokens.shape[0], ids_keep.shape[1], tokens.shape[2]), dtype=dtype)


@torch.library.custom_op("smae::gather_patches", mutates_args=())
def _gather_patches_op(imgs: torch.Tensor, ids_keep: torch.Tensor, patch_size: int) -> torch.Tensor:
    return _triton().gather_patches_rows(imgs, ids_keep, patch_size)


@_gather_patches_op.register_fake
def _(imgs, ids_keep, patch_size):
    return imgs.new_empty((imgs.shape[0], ids_keep.shape[1], imgs.shape[1] * patch_size * patch_size))


@torch.library.custom_op("smae::scatter_visible", mutates_args=())
def _scatter_visible_op(visible: torch.Tensor, ids_restore: torch.Tensor, mask_token: torch.Tensor,
                        pos_embed: torch.Tensor, num_prefix: int) -> torch.Tensor:
    return _triton().scatter_rows(visible, ids_restore, mask_token, pos_embed, num_prefix)


@_scatter_visible_op.register_fake
def _(visible, ids_restore, mask_token, pos_embed, num_prefix):
    dtype = torch.promote_types(visible.dtype, pos_embed.dtype)
    return visible.new_empty((visible.shape[0], num_prefix + ids_restore.shape[1], visible.shape[2]), dtype=dtype)


# Backward ops, called by the autograd formulas below.
@torch.library.custom_op("smae::gather_visible_backward", mutates_args=())
def _gather_backward_op(grad: torch.Tensor, ids_keep: torch.Tensor, length: int, dtype: torch.dtype) -> torch.Tensor:
    """grad (B, K, D) -> (B, L, D) of `dtype`, each row added at its position, zeros elsewhere."""
    return _triton().gather_rows_backward(grad, ids_keep, length, dtype)


@_gather_backward_op.register_fake
def _(grad, ids_keep, length, dtype):
    return grad.new_empty((grad.shape[0], length, grad.shape[2]), dtype=dtype)


@torch.library.custom_op("smae::scatter_visible_backward", mutates_args=())
def _scatter_backward_op(grad: torch.Tensor, ids_restore: torch.Tensor, num_kept: int, num_prefix: int,
                         visible_dtype: torch.dtype, store_visible: bool, reduce_mask: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """grad (B, P + L, D) -> grad_visible (B, P + K, D) of visible_dtype, grad_mask (D,) float32: the
    sum of the rows that held the mask token (summed in a fixed order); each (0,) when not asked for."""
    visible, partials = _triton().scatter_rows_backward(grad, ids_restore, num_kept, num_prefix, visible_dtype,
                                                        store_visible=store_visible, reduce_mask=reduce_mask)
    if visible is None:
        visible = grad.new_empty(0, dtype=visible_dtype)
    return visible, (grad.new_empty(0, dtype=torch.float32) if partials is None else partials.sum((0, 1)))


@_scatter_backward_op.register_fake
def _(grad, ids_restore, num_kept, num_prefix, visible_dtype, store_visible, reduce_mask):
    batch, _, dim = grad.shape
    visible = grad.new_empty((batch, num_prefix + num_kept, dim) if store_visible else (0,), dtype=visible_dtype)
    return visible, grad.new_empty((dim,) if reduce_mask else (0,), dtype=torch.float32)


# Autograd formulas.
def _gather_visible_setup(ctx, inputs, output):
    tokens, ids_keep, pos_embed = inputs
    ctx.save_for_backward(ids_keep)
    ctx.length, ctx.token_dtype = tokens.shape[1], tokens.dtype
    ctx.pos_dtype = None if pos_embed is None else pos_embed.dtype


def _gather_visible_backward(ctx, grad):
    (ids_keep,) = ctx.saved_tensors
    need_tokens, _, need_pos = ctx.needs_input_grad
    if not (need_tokens or need_pos):
        return None, None, None
    # Summing over the batch gives the pos_embed gradient, so keep grad's dtype when it is needed.
    dtype = grad.dtype if need_pos else ctx.token_dtype
    full = _gather_backward_op(grad, ids_keep, ctx.length, dtype)  # (B, L, D)
    grad_tokens = full.to(ctx.token_dtype) if need_tokens else None
    grad_pos = full.sum(0, dtype=torch.float32).to(ctx.pos_dtype) if need_pos else None
    return grad_tokens, None, grad_pos


def _gather_patches_setup(ctx, inputs, output):
    imgs, ids_keep, patch_size = inputs
    ctx.save_for_backward(ids_keep)
    ctx.img_shape, ctx.patch_size = imgs.shape, patch_size


def _gather_patches_backward(ctx, grad):
    if not ctx.needs_input_grad[0]:
        return None, None, None
    (ids_keep,) = ctx.saved_tensors
    height, width = ctx.img_shape[-2:]
    size = ctx.patch_size
    full = _gather_backward_op(grad, ids_keep, (height // size) * (width // size), grad.dtype)  # (B, L, C*p*p)
    return rearrange(full, "b (h w) (c p q) -> b c (h p) (w q)", h=height // size, p=size, q=size), None, None


def _scatter_visible_setup(ctx, inputs, output):
    visible, ids_restore, mask_token, pos_embed, num_prefix = inputs
    ctx.save_for_backward(ids_restore)
    ctx.num_kept, ctx.visible_dtype, ctx.num_prefix = visible.shape[1] - num_prefix, visible.dtype, num_prefix
    ctx.mask_shape, ctx.mask_dtype, ctx.pos_dtype = mask_token.shape, mask_token.dtype, pos_embed.dtype


def _scatter_visible_backward(ctx, grad):
    (ids_restore,) = ctx.saved_tensors
    need_visible, _, need_mask, need_pos, _ = ctx.needs_input_grad
    grad_visible = grad_mask = grad_pos = None
    if need_visible or need_mask:
        visible, mask_sum = _scatter_backward_op(grad, ids_restore, ctx.num_kept, ctx.num_prefix, ctx.visible_dtype,
                                                 need_visible, need_mask)
        grad_visible = visible if need_visible else None
        if need_mask:
            grad_mask = mask_sum.to(ctx.mask_dtype).reshape(ctx.mask_shape)
    if need_pos:
        grad_pos = grad.sum(0, dtype=torch.float32).to(ctx.pos_dtype)
    return grad_visible, None, grad_mask, grad_pos, None


_gather_visible_op.register_autograd(_gather_visible_backward, setup_context=_gather_visible_setup)
_gather_patches_op.register_autograd(_gather_patches_backward, setup_context=_gather_patches_setup)
_scatter_visible_op.register_autograd(_scatter_visible_backward, setup_context=_scatter_visible_setup)


def gather_visible(tokens: torch.Tensor, ids_keep: torch.Tensor, pos_embed: torch.Tensor | None = None) -> torch.Tensor:
    """Visible tokens plus their position embeddings; tokens (B, L, D), ids_keep (B, K) -> (B, K, D)."""
    _check_gather(tokens, ids_keep, pos_embed)
    if use_triton("gather_visible", _triton_reasons(ids_keep, tokens=tokens, pos_embed=pos_embed)):
        return _gather_visible_op(tokens, ids_keep, pos_embed)
    return gather_visible_reference(tokens, ids_keep, pos_embed)


def gather_patches(imgs: torch.Tensor, ids_keep: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Pixels of the kept patches: imgs (B, C, H, W), ids_keep (B, K) -> (B, K, C*p*p), (c, p, q) order."""
    _check_gather_patches(imgs, ids_keep, patch_size)
    if use_triton("gather_patches", _triton_reasons(ids_keep, imgs=imgs)):
        return _gather_patches_op(imgs, ids_keep, patch_size)
    return gather_patches_reference(imgs, ids_keep, patch_size)


def scatter_visible(
    visible: torch.Tensor,
    ids_restore: torch.Tensor,
    mask_token: torch.Tensor,
    pos_embed: torch.Tensor,
    num_prefix: int = 0,
) -> torch.Tensor:
    """Full decoder sequence: unshuffle, fill with mask_token, add pos_embed -> (B, P + L, D)."""
    _check_scatter(visible, ids_restore, mask_token, pos_embed, num_prefix)
    if use_triton("scatter_visible", _triton_reasons(ids_restore, visible=visible, mask_token=mask_token, pos_embed=pos_embed)):
        return _scatter_visible_op(visible, ids_restore, mask_token, pos_embed, num_prefix)
    return scatter_visible_reference(visible, ids_restore, mask_token, pos_embed, num_prefix)
