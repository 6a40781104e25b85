"""Triton kernels and launchers for the masking ops of `masking.py` (imported lazily from there,
so `import smae` needs no Triton).

Every kernel loads in the input dtype, computes in float32 registers and stores in the output
buffer's dtype; every index tensor and every input may have any strides. Launchers take an
optional preallocated `out` (tests pass NaN-poisoned buffers to catch unwritten elements) and
block sizes (tests use small ones to cover the edge masks).

- `gather_rows`: out[b, k] = tokens[b, ids[b, k]] + pos[ids[b, k]]          (gather_visible)
- `gather_rows_backward`: grad_tokens[b, l] = sum_k [ids[b, k] == l] grad[b, k]; every element of
  (B, L, D) is written once (zero rows included), repeated ids add up, no atomics.
- `scatter_rows`: the decoder sequence from visible rows, the mask token and pos (scatter_visible)
- `scatter_rows_backward`: grad of the visible rows, and per-(sample, row block) partial sums of
  the rows that held the mask token (the caller sums them: deterministic, no atomics).
- `gather_patches_rows`: the pixels of the kept patches, (B, K, C*p*p) in Conv2d weight order.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

BLOCK_ROWS = 32  # tokens per program
MAX_BLOCK_D = 128  # feature columns per program; wider D spreads over a third grid axis (384 = 3 x 128)
PATCH_ELEMENTS_PER_PROGRAM = 4096  # pixels per program of the patch gather


@triton.jit
def _gather_rows_kernel(
    tokens_ptr, ids_ptr, pos_ptr, out_ptr,
    K, L, D,
    st_b, st_l, st_d, si_b, si_k, sp_l, sp_d, so_b, so_k, so_d,
    HAS_POS: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr,
):
    b = tl.program_id(0).to(tl.int64)
    slots = tl.program_id(1) * BLOCK_K + tl.arange(0, BLOCK_K)  # (BLOCK_K,) positions in ids[b]
    cols = tl.program_id(2) * BLOCK_D + tl.arange(0, BLOCK_D)
    slot_ok = slots < K
    ids = tl.load(ids_ptr + b * si_b + slots * si_k, mask=slot_ok, other=0)
    slot_ok &= (ids >= 0) & (ids < L)  # never read outside tokens, whatever the indices hold
    io_mask = slot_ok[:, None] & (cols < D)[None, :]
    x = tl.load(tokens_ptr + b * st_b + ids[:, None] * st_l + cols[None, :] * st_d, mask=io_mask, other=0.0).to(tl.float32)
    if HAS_POS:
        x += tl.load(pos_ptr + ids[:, None] * sp_l + cols[None, :] * sp_d, mask=io_mask, other=0.0).to(tl.float32)
    out_mask = (slots < K)[:, None] & (cols < D)[None, :]
    tl.store(out_ptr + b * so_b + slots[:, None] * so_k + cols[None, :] * so_d, x.to(out_ptr.dtype.element_ty), mask=out_mask)


@triton.jit
def _gather_rows_backward_kernel(
    grad_ptr, ids_ptr, out_ptr,
    K, L, D,
    sg_b, sg_k, sg_d, si_b, si_k, so_b, so_l, so_d,
    BLOCK_L: tl.constexpr, BLOCK_D: tl.constexpr,
):
    b = tl.program_id(0).to(tl.int64)
    first = tl.program_id(1) * BLOCK_L
    rows = first + tl.arange(0, BLOCK_L)  # (BLOCK_L,) token positions l
    cols = tl.program_id(2) * BLOCK_D + tl.arange(0, BLOCK_D)
    acc = tl.zeros((BLOCK_L, BLOCK_D), dtype=tl.float32)
    # K is a few percent of L: visit every kept slot, touch only those landing in this block.
    # A while loop: Triton 3.6's interpreter cannot run range() over a run-time int under NumPy 2.4.
    k = 0
    while k < K:
        target = tl.load(ids_ptr + b * si_b + k * si_k)
        if (target >= first) & (target < first + BLOCK_L):
            g = tl.load(grad_ptr + b * sg_b + k * sg_k + cols * sg_d, mask=cols < D, other=0.0).to(tl.float32)
            acc += tl.where(rows[:, None] == target, g[None, :], 0.0)
        k += 1
    io_mask = (rows < L)[:, None] & (cols < D)[None, :]
    tl.store(out_ptr + b * so_b + rows[:, None] * so_l + cols[None, :] * so_d, acc.to(out_ptr.dtype.element_ty), mask=io_mask)


@triton.jit
def _scatter_rows_kernel(
    visible_ptr, ids_ptr, mask_token_ptr, pos_ptr, out_ptr,
    P, K, L, D,
    sv_b, sv_n, sv_d, si_b, si_l, sm_d, sp_n, sp_d, so_b, so_n, so_d,
    BLOCK_L: tl.constexpr, BLOCK_D: tl.constexpr,
):
    b = tl.program_id(0).to(tl.int64)
    rows = tl.program_id(1) * BLOCK_L + tl.arange(0, BLOCK_L)  # (BLOCK_L,) output rows, prefix first
    cols = tl.program_id(2) * BLOCK_D + tl.arange(0, BLOCK_D)
    row_ok = rows < P + L
    col_ok = cols < D
    is_prefix = rows < P
    slot = tl.load(ids_ptr + b * si_b + (rows - P) * si_l, mask=row_ok & ~is_prefix, other=0)  # r = ids_restore[b, l]
    kept = is_prefix | ((slot >= 0) & (slot < K))
    source = tl.where(is_prefix, rows, P + slot)  # row of `visible` feeding this output row
    x = tl.load(visible_ptr + b * sv_b + source[:, None] * sv_n + cols[None, :] * sv_d, mask=(row_ok & kept)[:, None] & col_ok[None, :], other=0.0).to(tl.float32)
    # The reference casts the mask token to the visible dtype before the add: round the same way.
    token = tl.load(mask_token_ptr + cols * sm_d, mask=col_ok, other=0.0).to(visible_ptr.dtype.element_ty).to(tl.float32)
    x = tl.where(kept[:, None], x, token[None, :])
    io_mask = row_ok[:, None] & col_ok[None, :]
    x += tl.load(pos_ptr + rows[:, None] * sp_n + cols[None, :] * sp_d, mask=io_mask, other=0.0).to(tl.float32)
    tl.store(out_ptr + b * so_b + rows[:, None] * so_n + cols[None, :] * so_d, x.to(out_ptr.dtype.element_ty), mask=io_mask)


@triton.jit
def _scatter_rows_backward_kernel(
    grad_ptr, ids_ptr, grad_visible_ptr, mask_partial_ptr,
    P, K, L, D,
    sg_b, sg_n, sg_d, si_b, si_l, sv_b, sv_n, sv_d,
    STORE_VISIBLE: tl.constexpr, REDUCE_MASK: tl.constexpr,
    BLOCK_L: tl.constexpr, BLOCK_D: tl.constexpr,
):
    b = tl.program_id(0).to(tl.int64)
    block = tl.program_id(1)
    rows = block * BLOCK_L + tl.arange(0, BLOCK_L)  # (BLOCK_L,) rows of the decoder sequence
    cols = tl.program_id(2) * BLOCK_D + tl.arange(0, BLOCK_D)
    row_ok = rows < P + L
    col_ok = cols < D
    is_prefix = rows < P
    slot = tl.load(ids_ptr + b * si_b + (rows - P) * si_l, mask=row_ok & ~is_prefix, other=0)
    kept = is_prefix | ((slot >= 0) & (slot < K))
    g = tl.load(grad_ptr + b * sg_b + rows[:, None] * sg_n + cols[None, :] * sg_d, mask=row_ok[:, None] & col_ok[None, :], other=0.0)
    # Gradients reach the visible rows and the mask token in the visible dtype (as the reference's).
    g = g.to(grad_visible_ptr.dtype.element_ty)
    if STORE_VISIBLE:
        target = tl.where(is_prefix, rows, P + slot)  # each visible row is written by exactly one output row
        tl.store(grad_visible_ptr + b * sv_b + target[:, None] * sv_n + cols[None, :] * sv_d, g, mask=(row_ok & kept)[:, None] & col_ok[None, :])
    if REDUCE_MASK:
        mask_sum = tl.sum(tl.where((row_ok & ~kept)[:, None], g.to(tl.float32), 0.0), axis=0)  # (BLOCK_D,)
        tl.store(mask_partial_ptr + (b * tl.num_programs(1) + block) * D + cols, mask_sum, mask=col_ok)


@triton.jit
def _gather_patches_kernel(
    imgs_ptr, ids_ptr, out_ptr,
    total, K, L, grid_w, N,
    sx_b, sx_c, sx_h, sx_w, si_b, si_k, so_b, so_k, so_n,
    PATCH: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_N: tl.constexpr,
):
    kept = tl.program_id(0).to(tl.int64) * BLOCK_P + tl.arange(0, BLOCK_P)  # flat (b, k)
    kept_ok = kept < total
    b = kept // K
    k = kept % K
    patch = tl.load(ids_ptr + b * si_b + k * si_k, mask=kept_ok, other=0)
    kept_ok &= (patch >= 0) & (patch < L)
    i = tl.arange(0, BLOCK_N)  # (c, p, q) flattened, Conv2d weight order
    # Address = where the patch starts (per patch) + where the pixel sits in it (per element).
    corner = b * sx_b + (patch // grid_w) * PATCH * sx_h + (patch % grid_w) * PATCH * sx_w  # (BLOCK_P,)
    inside = (i // (PATCH * PATCH)) * sx_c + ((i // PATCH) % PATCH) * sx_h + (i % PATCH) * sx_w  # (BLOCK_N,)
    x = tl.load(imgs_ptr + corner[:, None] + inside[None, :], mask=kept_ok[:, None] & (i < N)[None, :], other=0.0)
    out_mask = (kept < total)[:, None] & (i < N)[None, :]
    tl.store(out_ptr + (b * so_b + k * so_k)[:, None] + i[None, :] * so_n, x.to(out_ptr.dtype.element_ty), mask=out_mask)


def _block_d(dim: int, block_d: int | None) -> int:
    return block_d or min(triton.next_power_of_2(dim), MAX_BLOCK_D)


def _buffer(out: torch.Tensor | None, shape: tuple[int, ...], like: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    if out is None:
        return torch.empty(shape, device=like.device, dtype=dtype)
    if tuple(out.shape) != shape or out.dtype != dtype:
        raise ValueError(f"out buffer must be {shape} {dtype}, got {tuple(out.shape)} {out.dtype}")
    return out


def gather_rows(tokens, ids_keep, pos_embed, out=None, *, block_rows=BLOCK_ROWS, block_d=None) -> torch.Tensor:
    """tokens (B, L, D), ids_keep (B, K), pos_embed (L, D) or None -> (B, K, D) in the promoted dtype."""
    batch, length, dim = tokens.shape
    kept = ids_keep.shape[1]
    dtype = tokens.dtype if pos_embed is None else torch.promote_types(tokens.dtype, pos_embed.dtype)
    out = _buffer(out, (batch, kept, dim), tokens, dtype)
    pos = tokens if pos_embed is None else pos_embed  # any valid pointer when there is no pos table
    block_d = _block_d(dim, block_d)
    grid = (batch, triton.cdiv(kept, block_rows), triton.cdiv(dim, block_d))
    _gather_rows_kernel[grid](
        tokens, ids_keep, pos, out, kept, length, dim,
        *tokens.stride(), *ids_keep.stride(), pos.stride(-2), pos.stride(-1), *out.stride(),
        HAS_POS=pos_embed is not None, BLOCK_K=block_rows, BLOCK_D=block_d,
    )
    return out


def gather_rows_backward(grad, ids_keep, length, dtype, out=None, *, block_rows=BLOCK_ROWS, block_d=None) -> torch.Tensor:
    """grad (B, K, D), ids_keep (B, K) -> (B, L, D) of `dtype`: each grad row summed at its position."""
    batch, kept, dim = grad.shape
    out = _buffer(out, (batch, length, dim), grad, dtype)
    block_d = _block_d(dim, block_d)
    grid = (batch, triton.cdiv(length, block_rows), triton.cdiv(dim, block_d))
    _gather_rows_backward_kernel[grid](
        grad, ids_keep, out, kept, length, dim,
        *grad.stride(), *ids_keep.stride(), *out.stride(),
        BLOCK_L=block_rows, BLOCK_D=block_d,
    )
    return out


def scatter_rows(visible, ids_restore, mask_token, pos_embed, num_prefix, out=None, *, block_rows=BLOCK_ROWS, block_d=None) -> torch.Tensor:
    """visible (B, P + K, D), ids_restore (B, L), mask_token (D,), pos_embed (P + L, D) -> (B, P + L, D)."""
    batch, rows, dim = visible.shape
    length = ids_restore.shape[1]
    dtype = torch.promote_types(visible.dtype, pos_embed.dtype)
    out = _buffer(out, (batch, num_prefix + length, dim), visible, dtype)
    mask_token = mask_token.reshape(dim)
    block_d = _block_d(dim, block_d)
    grid = (batch, triton.cdiv(num_prefix + length, block_rows), triton.cdiv(dim, block_d))
    _scatter_rows_kernel[grid](
        visible, ids_restore, mask_token, pos_embed, out,
        num_prefix, rows - num_prefix, length, dim,
        *visible.stride(), *ids_restore.stride(), mask_token.stride(0), *pos_embed.stride(), *out.stride(),
        BLOCK_L=block_rows, BLOCK_D=block_d,
    )
    return out


def scatter_rows_backward(grad, ids_restore, num_kept, num_prefix, visible_dtype, *, store_visible=True, reduce_mask=True,
                          grad_visible=None, mask_partials=None, block_rows=BLOCK_ROWS, block_d=None):
    """grad (B, P + L, D) -> grad_visible (B, P + K, D) or None, mask_partials (B, R, D) float32 or None.

    mask_partials[b, r] sums grad[b] over the rows of row block r that held the mask token; the
    caller sums over (b, r), a fixed order: deterministic, no atomics.
    """
    batch, rows, dim = grad.shape
    length = ids_restore.shape[1]
    block_d = _block_d(dim, block_d)
    grid = (batch, triton.cdiv(rows, block_rows), triton.cdiv(dim, block_d))
    if store_visible:
        grad_visible = _buffer(grad_visible, (batch, num_prefix + num_kept, dim), grad, visible_dtype)
    if reduce_mask:
        mask_partials = _buffer(mask_partials, (batch, grid[1], dim), grad, torch.float32)
    # Unused pointers still need a tensor of the right dtype: the store's cast reads it.
    visible_arg = grad_visible if store_visible else torch.empty(0, device=grad.device, dtype=visible_dtype)
    partial_arg = mask_partials if reduce_mask else torch.empty(0, device=grad.device, dtype=torch.float32)
    _scatter_rows_backward_kernel[grid](
        grad, ids_restore, visible_arg, partial_arg,
        num_prefix, num_kept, length, dim,
        *grad.stride(), *ids_restore.stride(), *(visible_arg.stride() if store_visible else (0, 0, 0)),
        STORE_VISIBLE=store_visible, REDUCE_MASK=reduce_mask, BLOCK_L=block_rows, BLOCK_D=block_d,
    )
    return (grad_visible if store_visible else None), (mask_partials if reduce_mask else None)


def gather_patches_rows(imgs, ids_keep, patch_size, out=None, *, patches_per_program=None) -> torch.Tensor:
    """imgs (B, C, H, W), ids_keep (B, K) -> (B, K, C*p*p) in (c, p, q) order, imgs' dtype."""
    batch, channels, height, width = imgs.shape
    kept = ids_keep.shape[1]
    numel = channels * patch_size * patch_size
    grid_w = width // patch_size
    out = _buffer(out, (batch, kept, numel), imgs, imgs.dtype)
    block_n = triton.next_power_of_2(numel)
    block_p = patches_per_program or max(1, PATCH_ELEMENTS_PER_PROGRAM // block_n)
    _gather_patches_kernel[(triton.cdiv(batch * kept, block_p),)](
        imgs, ids_keep, out,
        batch * kept, kept, (height // patch_size) * grid_w, grid_w, numel,
        *imgs.stride(), *ids_keep.stride(), *out.stride(),
        PATCH=patch_size, BLOCK_P=block_p, BLOCK_N=block_n,
    )
    return out
