"""Fixed 2-D sin-cos position embeddings (MAE's layout) and their bicubic resizing.

For a (h, w) grid and width D, token n = i*w + j gets
    [sincos_1d(D/2, j), sincos_1d(D/2, i)]       (column half first, as MAE)
    sincos_1d(d, x) = [sin(x * omega), cos(x * omega)],  omega_k = 10000^(-k / (d/2)), k < d/2
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def _sincos_1d(dim: int, positions: torch.Tensor) -> torch.Tensor:
    """positions (N,) -> (N, dim)."""
    omega = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64) / (dim / 2.0))
    angles = positions.to(torch.float64)[:, None] * omega[None, :]  # (N, dim/2)
    return torch.cat([angles.sin(), angles.cos()], dim=1)


def sincos_2d(dim: int, grid: tuple[int, int], num_prefix: int = 1) -> torch.Tensor:
    """(num_prefix + h*w, dim) float32 table; prefix rows ([CLS]) are zero."""
    if dim % 4:
        raise ValueError(f"sin-cos position embeddings need a width divisible by 4, got {dim}")
    rows, cols = torch.meshgrid(torch.arange(grid[0]), torch.arange(grid[1]), indexing="ij")
    table = torch.cat([_sincos_1d(dim // 2, cols.flatten()), _sincos_1d(dim // 2, rows.flatten())], dim=1)
    return torch.cat([torch.zeros(num_prefix, dim, dtype=torch.float64), table]).float()


def resize_pos_embed(pos_embed: torch.Tensor, src_grid: tuple[int, int], dst_grid: tuple[int, int], num_prefix: int = 1) -> torch.Tensor:
    """Bicubic resize of the patch part of a (1, P + h0*w0, D) table to (1, P + h*w, D)."""
    if tuple(src_grid) == tuple(dst_grid):
        return pos_embed
    prefix, patches = pos_embed[:, :num_prefix], pos_embed[:, num_prefix:]
    dim = patches.shape[-1]
    image = patches.reshape(1, src_grid[0], src_grid[1], dim).permute(0, 3, 1, 2)  # (1, D, h0, w0)
    image = F.interpolate(image.float(), size=tuple(dst_grid), mode="bicubic", align_corners=False)
    patches = image.permute(0, 2, 3, 1).reshape(1, dst_grid[0] * dst_grid[1], dim).to(pos_embed.dtype)
    return torch.cat([prefix, patches], dim=1)
