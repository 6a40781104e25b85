"""SiamMAE decoders: the future frame's tokens attend to the past frame's tokens.

The block is CropMAE's SiamMAE decoder block (alexandre-eymael/CropMAE models/components/
DecoderBlock.py: nn.TransformerDecoderLayer with norm_first=False and its sublayers reordered),
the only public SiamMAE decoder shown to reproduce the paper's DAVIS number. Post-norm: each
sublayer is
    x = norm(x + dropout(sublayer(x)))
or, with norm_first (pre-norm, as the encoder's blocks; the `tiny` preset's decoder),
    x = x + dropout(sublayer(norm(x)))
in the order of the variant (SiamMAE paper, section 3 and Table 2):
- cross-self (default): cross-attention (queries = f2 tokens, keys/values = f1's decoder tokens
  as they are, no extra norm), MLP, self-attention among f2 tokens;
- cross: cross-attention, MLP;
- joint: self-attention over [f1 tokens, f2 tokens], MLP; f2's part is read out.
Dropout (training only) acts on the attention probabilities, the MLP's hidden layer and each
residual branch; the MLP is fc2(GELU(fc1(x))). The decoder ends with its own LayerNorm, after a
block that already ends in one (as CropMAE).
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .presets import DECODER_VARIANTS
from .vit import LAYER_NORM_EPS, Attention, Mlp

SUBLAYER_ORDER = {"cross-self": ("cross", "mlp", "self"), "cross": ("cross", "mlp"), "joint": ("self", "mlp")}


class DecoderBlock(nn.Module):
    """Post-norm (or with norm_first, pre-norm) block; parameters cross_attn / self_attn (packed
    qkv, proj), mlp (fc1, fc2) and norm_cross / norm_mlp / norm_self, one per sublayer of the variant."""

    def __init__(self, variant: str, dim: int, num_heads: int, mlp_hidden: int, dropout: float,
                 norm_first: bool = False):
        super().__init__()
        self.order = SUBLAYER_ORDER[variant]
        self.norm_first = norm_first
        if "cross" in self.order:
            self.cross_attn = Attention(dim, num_heads, attn_dropout=dropout)
            self.norm_cross = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.mlp = Mlp(dim, mlp_hidden, dropout)
        self.norm_mlp = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        if "self" in self.order:
            self.self_attn = Attention(dim, num_heads, attn_dropout=dropout)
            self.norm_self = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.drop = nn.Dropout(dropout)  # on each residual branch

    def forward(self, x: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
        """x (B, N, D), context (B, Nc, D) or None (joint) -> (B, N, D)."""
        for sublayer in self.order:
            norm = getattr(self, f"norm_{sublayer}")
            if self.norm_first:
                x = x + self.drop(self._sublayer(sublayer, norm(x), context))
            else:
                x = norm(x + self.drop(self._sublayer(sublayer, x, context)))
        return x

    def _sublayer(self, sublayer: str, x: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
        if sublayer == "cross":
            return self.cross_attn(x, context)  # context as it is, never normalised here
        if sublayer == "mlp":
            return self.mlp(x)
        return self.self_attn(x)


class SiamDecoder(nn.Module):
    """Blocks over f2's decoder tokens conditioned on f1's, then the final LayerNorm `norm`."""

    def __init__(self, variant: str, dim: int, depth: int, num_heads: int, mlp_hidden: int, dropout: float,
                 norm_first: bool = False):
        super().__init__()
        if variant not in DECODER_VARIANTS:
            raise ValueError(f"decoder variant {variant!r} is not one of {', '.join(DECODER_VARIANTS)}")
        self.variant = variant
        self.blocks = nn.ModuleList([DecoderBlock(variant, dim, num_heads, mlp_hidden, dropout, norm_first)
                                     for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)

    def forward(self, future: torch.Tensor, past: torch.Tensor) -> torch.Tensor:
        """future (B, N2, D) decoder tokens of f2, past (B, N1, D) of f1 -> (B, N2, D)."""
        if self.variant == "joint":
            x = torch.cat([past, future], dim=1)
            for block in self.blocks:
                x = block(x, None)
            return self.norm(x[:, past.shape[1]:])
        x = future
        for block in self.blocks:
            x = block(x, past)
        return self.norm(x)
