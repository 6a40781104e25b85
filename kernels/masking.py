"""Random-masking gather (encoder side) and scatter (decoder side) of MAE / SiamMAE.

Gather, for the visible tokens of the masked frame:
    out[b, k] = tokens[b, ids_keep[b, k]] + pos_embed[ids_keep[b, k]]
    tokens (B, L, D), ids_keep (B, K) int64, pos_embed (L, D) or None -> out (B, K, D)

Scatter, the full decoder sequence (MAE's unshuffle + decoder position embeddings):
    out[b, p]     = visible[b, p] + pos_embed[p]                         for p < P (prefix, e.g. [CLS])
    out[b, P + l] = (visible[b, P + r] if r < K else mask_token) + pos_embed[P + l],  r = ids_restore[b, l]
    visible (B, P + K, D), ids_restore (B, L) int64, mask_token (D,), pos_embed (P + L, D)
    -> out (B, P + L, D)

ids_restore is the inverse permutation of the shuffle whose first K entries are ids_keep, so a
token kept at slot r of `visible` lands back at its place l. Both ops move B*K*D (gather) or
B*(P+L)*D (scatter) elements out, plus the same in.
"""
from __future__ import annotations

import torch

from .backend import triton_device_reasons, use_triton


def gather_visible_reference(tokens: torch.Tensor, ids_keep: torch.Tensor, pos_embed: torch.Tensor | None = None) -> torch.Tensor:
    """tokens (B, L, D), ids_keep (B, K), pos_embed (L, D) or None -> (B, K, D)."""
    index = ids_keep.unsqueeze(-1).expand(-1, -1, tokens.shape[-1])  # (B, K, D)
    visible = torch.gather(tokens, 1, index)
    if pos_embed is not None:
        visible = visible + pos_embed[ids_keep]
    return visible


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


def _check_gather(tokens: torch.Tensor, ids_keep: torch.Tensor, pos_embed: torch.Tensor | None) -> None:
    if tokens.dim() != 3 or ids_keep.dim() != 2 or ids_keep.shape[0] != tokens.shape[0]:
        raise ValueError(f"gather_visible: tokens must be (B, L, D) and ids_keep (B, K); got {tuple(tokens.shape)} and {tuple(ids_keep.shape)}")
    if ids_keep.dtype != torch.int64:
        raise ValueError(f"gather_visible: ids_keep must be int64, got {ids_keep.dtype}")
    if pos_embed is not None and pos_embed.shape != tokens.shape[1:]:
        raise ValueError(f"gather_visible: pos_embed must be (L, D) = {tuple(tokens.shape[1:])}, got {tuple(pos_embed.shape)}")


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


def _triton_reasons(*tensors: torch.Tensor) -> list[str]:
    return triton_device_reasons(*tensors) + ["no Triton kernel for the masking ops yet"]


def gather_visible(tokens: torch.Tensor, ids_keep: torch.Tensor, pos_embed: torch.Tensor | None = None) -> torch.Tensor:
    """Visible tokens plus their position embeddings; tokens (B, L, D), ids_keep (B, K) -> (B, K, D)."""
    _check_gather(tokens, ids_keep, pos_embed)
    use_triton("gather_visible", _triton_reasons(tokens))
    return gather_visible_reference(tokens, ids_keep, pos_embed)


def scatter_visible(
    visible: torch.Tensor,
    ids_restore: torch.Tensor,
    mask_token: torch.Tensor,
    pos_embed: torch.Tensor,
    num_prefix: int = 0,
) -> torch.Tensor:
    """Full decoder sequence: unshuffle, fill with mask_token, add pos_embed -> (B, P + L, D)."""
    _check_scatter(visible, ids_restore, mask_token, pos_embed, num_prefix)
    use_triton("scatter_visible", _triton_reasons(visible))
    return scatter_visible_reference(visible, ids_restore, mask_token, pos_embed, num_prefix)
