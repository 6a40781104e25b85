"""SiamMAE decoders: the future frame's tokens attend to the past frame's tokens.

Variants (SiamMAE paper, section 3 and Table 2):
- cross-self (default): each block is cross-attention (queries = f2, keys/values = f1), then
  self-attention among f2 tokens, then an MLP;
- cross: cross-attention then MLP;
- joint: plain self-attention blocks over [f1 tokens, f2 tokens]; f2's part is read out.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from smae.kernels import attention

from .presets import DECODER_VARIANTS
from .vit import LAYER_NORM_EPS, Block, Mlp, SelfAttention


class CrossAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """x (B, Nq, D) attends to context (B, Nk, D) -> (B, Nq, D)."""
        batch, length, dim = x.shape
        head_dim = dim // self.num_heads
        q = self.q(x).view(batch, length, self.num_heads, head_dim)  # (B, Nq, H, Dh)
        k, v = self.kv(context).view(batch, context.shape[1], 2, self.num_heads, head_dim).unbind(2)  # (B, Nk, H, Dh)
        return self.proj(attention(q, k, v).reshape(batch, length, dim))


class CrossBlock(nn.Module):
    """x + cross(norm_x(x), norm_context(context)) [+ self-attention] + MLP, all pre-norm."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, with_self_attention: bool):
        super().__init__()
        self.norm_x = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.norm_context = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.cross_attn = CrossAttention(dim, num_heads)
        self.norm1 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS) if with_self_attention else None
        self.attn = SelfAttention(dim, num_heads) if with_self_attention else None
        self.norm2 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        x = x + self.cross_attn(self.norm_x(x), self.norm_context(context))
        if self.attn is not None:
            x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class SiamDecoder(nn.Module):
    """Transformer over f2's decoder tokens conditioned on f1's; ends with its LayerNorm."""

    def __init__(self, variant: str, dim: int, depth: int, num_heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        if variant not in DECODER_VARIANTS:
            raise ValueError(f"decoder variant {variant!r} is not one of {', '.join(DECODER_VARIANTS)}")
        self.variant = variant
        if variant == "joint":
            self.blocks = nn.ModuleList([Block(dim, num_heads, mlp_ratio) for _ in range(depth)])
        else:
            with_self = variant == "cross-self"
            self.blocks = nn.ModuleList([CrossBlock(dim, num_heads, mlp_ratio, with_self) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)

    def forward(self, future: torch.Tensor, past: torch.Tensor) -> torch.Tensor:
        """future (B, N2, D) decoder tokens of f2, past (B, N1, D) of f1 -> (B, N2, D)."""
        if self.variant == "joint":
            x = torch.cat([past, future], dim=1)
            for block in self.blocks:
                x = block(x)
            return self.norm(x[:, past.shape[1]:])
        x = future
        for block in self.blocks:
            x = block(x, past)
        return self.norm(x)
