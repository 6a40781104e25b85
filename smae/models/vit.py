"""Vision Transformer encoder with timm-compatible parameter names.

Names: patch_embed.proj, cls_token, pos_embed, blocks.{i}.norm1, .attn.qkv, .attn.proj, .norm2,
.mlp.fc1, .mlp.fc2, norm; so DINO, MAE and timm ViT weights load without renaming.
Position embeddings are fixed 2-D sin-cos (a frozen parameter, as MAE, so loaded learned tables
replace them) and are resized bicubically to any input grid by one of the named rules of
smae.models.pos_embed (`pos_resize`: dino, timm or plain).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from smae.kernels import attention, gather_patches

from .pos_embed import DEFAULT_POS_RESIZE, resize_pos_embed, sincos_2d
from .presets import EncoderConfig

LAYER_NORM_EPS = 1e-6  # MAE / timm ViT


class Attention(nn.Module):
    """Multi-head attention with one packed (3D, D) q/k/v projection (timm's `qkv`, the layout of
    nn.MultiheadAttention's in_proj_weight): self-attention, or cross-attention where the
    queries come from x and keys / values from `context` through the same packed matrix."""

    def __init__(self, dim: int, num_heads: int, attn_dropout: float = 0.0):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"width {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.attn_dropout = attn_dropout
        self.qkv = nn.Linear(dim, 3 * dim, bias=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, Nq, D) attends to itself, or to context (B, Nk, D) -> (B, Nq, D)."""
        batch, length, dim = x.shape
        heads, head_dim = self.num_heads, dim // self.num_heads
        if context is None:
            q, k, v = self.qkv(x).view(batch, length, 3, heads, head_dim).unbind(2)  # 3 x (B, N, H, Dh)
        else:
            weight_q, weight_kv = self.qkv.weight.split([dim, 2 * dim])
            bias_q, bias_kv = self.qkv.bias.split([dim, 2 * dim])
            q = F.linear(x, weight_q, bias_q).view(batch, length, heads, head_dim)  # (B, Nq, H, Dh)
            k, v = F.linear(context, weight_kv, bias_kv).view(batch, context.shape[1], 2, heads, head_dim).unbind(2)
        dropout_p = self.attn_dropout if self.training else 0.0
        return self.proj(attention(q, k, v, dropout_p=dropout_p).reshape(batch, length, dim))


class Mlp(nn.Module):
    """fc2(dropout(GELU(fc1(x)))); dropout only in training and only when asked (decoders)."""

    def __init__(self, dim: int, hidden: int, dropout: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.drop = nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.drop(self.act(self.fc1(x))))


def drop_path(branch: torch.Tensor, rate: float) -> torch.Tensor:
    """Stochastic depth (Huang et al. 2016), per sample: branch (B, ...) zeroed for each sample
    with probability `rate`, else scaled by 1 / (1 - rate) so that its expectation is unchanged."""
    keep = torch.rand(branch.shape[0], *(1,) * (branch.dim() - 1), device=branch.device) >= rate
    return branch * keep.to(branch.dtype) / (1 - rate)


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm1(x)), then x + mlp(norm2(x)); in training each
    branch is skipped per sample with probability `drop_path_rate` (stochastic depth)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, drop_path_rate: float = 0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.drop_path_rate = drop_path_rate

    def _branch(self, branch: torch.Tensor) -> torch.Tensor:
        return drop_path(branch, self.drop_path_rate) if self.training and self.drop_path_rate > 0 else branch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self._branch(self.attn(self.norm1(x)))
        return x + self._branch(self.mlp(self.norm2(x)))


class PatchEmbed(nn.Module):
    def __init__(self, patch_size: int, dim: int, in_chans: int = 3):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, imgs: torch.Tensor) -> torch.Tensor:
        """imgs (B, 3, H, W) -> (B, h*w, D), row-major tokens."""
        return self.proj(imgs).flatten(2).transpose(1, 2)


class VisionTransformer(nn.Module):
    """ViT with a [CLS] token; `img_size` fixes the native grid of the position table.
    drop_path_rate: stochastic depth of the last block in training, rising linearly from 0 at the
    first block (timm's rule); 0 (the default) leaves every block whole."""

    def __init__(self, img_size: int = 224, patch_size: int = 16, embed_dim: int = 384, depth: int = 12, num_heads: int = 6,
                 mlp_ratio: float = 4.0, drop_path_rate: float = 0.0):
        super().__init__()
        if img_size % patch_size:
            raise ValueError(f"img_size {img_size} is not a multiple of patch_size {patch_size}")
        self.patch_size = patch_size
        self.embed_dim = embed_dim
        self.grid = (img_size // patch_size, img_size // patch_size)
        self.patch_embed = PatchEmbed(patch_size, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(sincos_2d(embed_dim, self.grid).unsqueeze(0), requires_grad=False)
        rates = torch.linspace(0, drop_path_rate, depth).tolist()
        self.blocks = nn.ModuleList([Block(embed_dim, num_heads, mlp_ratio, rate) for rate in rates])
        self.norm = nn.LayerNorm(embed_dim, eps=LAYER_NORM_EPS)

    def grid_of(self, imgs: torch.Tensor) -> tuple[int, int]:
        height, width = imgs.shape[-2:]
        if height % self.patch_size or width % self.patch_size:
            raise ValueError(f"frame size {height}x{width} is not a multiple of the patch size {self.patch_size}")
        return height // self.patch_size, width // self.patch_size

    def pos_embed_for(self, grid: tuple[int, int], pos_resize: str = DEFAULT_POS_RESIZE) -> torch.Tensor:
        """(1, 1 + h*w, D): the table, resized by rule `pos_resize` when the grid is not the native one."""
        return resize_pos_embed(self.pos_embed, self.grid, grid, pos_resize)

    def forward(self, imgs: torch.Tensor, ids_keep: torch.Tensor | None = None, pos_resize: str = DEFAULT_POS_RESIZE) -> torch.Tensor:
        """imgs (B, 3, H, W); ids_keep (B, K) or None (all tokens) -> (B, 1 + K, D) after `norm`.
        pos_resize: how the position table is resized to another grid ('dino', 'timm', 'plain')."""
        pos_embed = self.pos_embed_for(self.grid_of(imgs), pos_resize)  # (1, 1 + L, D)
        if ids_keep is None:
            tokens = self.patch_embed(imgs) + pos_embed[:, 1:]  # (B, L, D)
        else:
            # Embed the kept patches only (1/20 of the patch-embedding FLOPs at 95% masking):
            # the stride-p convolution is a linear map of each patch's pixels in (c, p, q) order.
            patches = gather_patches(imgs, ids_keep, self.patch_size)  # (B, K, 3*p*p)
            proj = self.patch_embed.proj
            tokens = F.linear(patches, proj.weight.flatten(1), proj.bias) + pos_embed[0, 1:][ids_keep]  # (B, K, D)
        cls = (self.cls_token + pos_embed[:, :1]).expand(tokens.shape[0], -1, -1)
        x = torch.cat([cls, tokens], dim=1)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)

    def get_features(self, frames: torch.Tensor, pos_resize: str = DEFAULT_POS_RESIZE) -> torch.Tensor:
        """frames (B, 3, H, W) -> (B, h, w, C): last-block patch tokens after the final LayerNorm,
        [CLS] dropped, not L2-normalised (label propagation normalises over C itself).
        pos_resize: 'dino' (DINO's and CropMAE's evaluation; the default), 'timm' or 'plain'."""
        grid = self.grid_of(frames)
        tokens = self.forward(frames, pos_resize=pos_resize)[:, 1:]  # (B, h*w, C)
        return tokens.reshape(frames.shape[0], grid[0], grid[1], self.embed_dim)


def init_mae_(module: nn.Module) -> None:
    """MAE initialisation: xavier-uniform Linear and patch-embedding weights, zero biases,
    unit LayerNorms, N(0, 0.02) tokens. Fixed position tables are left as they are."""
    for sub in module.modules():
        if isinstance(sub, nn.Linear):
            nn.init.xavier_uniform_(sub.weight)
            if sub.bias is not None:
                nn.init.zeros_(sub.bias)
        elif isinstance(sub, nn.LayerNorm):
            nn.init.ones_(sub.weight)
            nn.init.zeros_(sub.bias)
        elif isinstance(sub, PatchEmbed):
            # Xavier on the weight seen as a Linear (D, 3*p*p), as MAE does.
            weight = sub.proj.weight
            nn.init.xavier_uniform_(weight.view(weight.shape[0], -1))
            nn.init.zeros_(sub.proj.bias)
    for name, param in module.named_parameters():
        if name.endswith("cls_token") or name.endswith("mask_token"):
            nn.init.normal_(param, std=0.02)


def encoder_from_config(enc: EncoderConfig) -> VisionTransformer:
    """The ViT encoder an EncoderConfig describes."""
    return VisionTransformer(enc.img_size, enc.patch_size, enc.embed_dim, enc.depth, enc.num_heads, enc.mlp_ratio,
                             enc.drop_path_rate)
