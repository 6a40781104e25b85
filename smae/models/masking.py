"""Per-sample random masking as in MAE: each sample draws its own uniform noise, the tokens
with the smallest noise are kept."""
from __future__ import annotations

from typing import NamedTuple

import torch


class Masking(NamedTuple):
    ids_keep: torch.Tensor  # (B, K) int64, positions of the visible tokens, in shuffle order
    ids_restore: torch.Tensor  # (B, L) int64, inverse permutation of the shuffle
    mask: torch.Tensor  # (B, L) float, 1 = masked (to be reconstructed), 0 = visible


def num_visible(length: int, mask_ratio: float) -> int:
    """Tokens kept out of `length`: int(L * (1 - ratio)), as MAE (9 of 196 at 0.95), at least 1."""
    if not 0.0 <= mask_ratio < 1.0:
        raise ValueError(f"mask_ratio must be in [0, 1), got {mask_ratio}")
    return max(1, int(length * (1 - mask_ratio)))


def random_masking(batch: int, length: int, mask_ratio: float, device: torch.device | str = "cpu", generator: torch.Generator | None = None) -> Masking:
    """Draws an independent random mask per sample."""
    keep = num_visible(length, mask_ratio)
    noise = torch.rand(batch, length, device=device, generator=generator)  # (B, L)
    ids_shuffle = torch.argsort(noise, dim=1)
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    mask = torch.ones(batch, length, device=device)
    mask[:, :keep] = 0
    mask = torch.gather(mask, 1, ids_restore)
    return Masking(ids_shuffle[:, :keep], ids_restore, mask)
