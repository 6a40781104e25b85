"""Fixed 2-D sin-cos position embeddings (MAE's layout) and the three ways to resize a table.

For a (h, w) grid and width D, token n = i*w + j gets
    [sincos_1d(D/2, j), sincos_1d(D/2, i)]       (column half first, as MAE)
    sincos_1d(d, x) = [sin(x * omega), cos(x * omega)],  omega_k = 10000^(-k / (d/2)), k < d/2

Resizing the patch part of a table from a (h0, w0) grid to (h, w) (the [CLS] row is kept). Each
mode is bicubic with half-pixel centres; along one axis, output row i samples the source at
    plain:  s = (i + 0.5) * h0 / h - 0.5                     (F.interpolate(size=(h, w)))
    dino:   s = (i + 0.5) * h0 / (h + 0.1) - 0.5             (DINO's and CropMAE's evaluation encoders:
            F.interpolate(scale_factor=((h + 0.1) / h0, (w + 0.1) / w0)); the 0.1 guards the
            output size against rounding, and moves the samples)
    timm:   PIL-style antialiased bicubic (a = -0.5, taps normalised, no border clamping), as
            timm's resample_abs_pos_embed (F.interpolate(size=(h, w), antialias=True))
plain and dino use the cubic convolution with a = -0.75 and clamp taps to the border.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

POS_RESIZE_MODES = ("dino", "timm", "plain")
DEFAULT_POS_RESIZE = "dino"  # what DINO's and CropMAE's evaluation code computes


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


def check_pos_resize(mode: str) -> str:
    if mode not in POS_RESIZE_MODES:
        raise ValueError(f"unknown position-table resize {mode!r}; choose from {', '.join(POS_RESIZE_MODES)}")
    return mode


def _resize_image(image: torch.Tensor, src_grid: tuple[int, int], dst_grid: tuple[int, int], mode: str) -> torch.Tensor:
    """image (1, D, h0, w0) -> (1, D, h, w)."""
    if mode == "dino":
        # The scale factor itself goes to F.interpolate (not the size): the kernel then samples
        # at (i + 0.5) / scale - 0.5, exactly as DINO's interpolate_pos_encoding.
        scale = ((dst_grid[0] + 0.1) / src_grid[0], (dst_grid[1] + 0.1) / src_grid[1])
        return F.interpolate(image, scale_factor=scale, mode="bicubic", align_corners=False)
    return F.interpolate(image, size=tuple(dst_grid), mode="bicubic", align_corners=False, antialias=mode == "timm")


def resize_pos_embed(
    pos_embed: torch.Tensor, src_grid: tuple[int, int], dst_grid: tuple[int, int], mode: str = DEFAULT_POS_RESIZE, num_prefix: int = 1
) -> torch.Tensor:
    """(1, P + h0*w0, D) table -> (1, P + h*w, D), the patch part resized by `mode` (see above).

    The table is returned unchanged when the grids are equal (as DINO and timm do). Float32 and
    float64 tables are resized in their own precision, lower ones in float32 (as timm)."""
    check_pos_resize(mode)
    if tuple(src_grid) == tuple(dst_grid):
        return pos_embed
    prefix, patches = pos_embed[:, :num_prefix], pos_embed[:, num_prefix:]
    dim = patches.shape[-1]
    work_dtype = pos_embed.dtype if pos_embed.dtype in (torch.float32, torch.float64) else torch.float32
    image = patches.reshape(1, src_grid[0], src_grid[1], dim).permute(0, 3, 1, 2).to(work_dtype)  # (1, D, h0, w0)
    image = _resize_image(image, src_grid, dst_grid, mode)
    patches = image.permute(0, 2, 3, 1).reshape(1, dst_grid[0] * dst_grid[1], dim).to(pos_embed.dtype)
    return torch.cat([prefix, patches], dim=1)
