"""SiamMAE (Gupta et al., NeurIPS 2023): a siamese ViT encodes a past frame f1 in full and a
future frame f2 with 95% of its patches masked; a decoder predicts f2's masked patches from its
few visible tokens while attending to f1.

As CropMAE's SiamMAE (models/SiamMAE.py), the decoder inputs are
    past   = decoder_embed(encoder(f1))                                   (no position embedding)
    future = unshuffle([decoder_embed(encoder(f2 visible)), mask tokens]) + decoder_pos_embed
both with [CLS] first; the prediction is decoder_pred(decoder(future, past)) without [CLS].
A decoder with past_pos_embed (the `tiny` preset's) adds decoder_pos_embed to `past` too, at
the positions of f1's tokens.

Shapes: f1, f2 (B, 3, H, W); L = (H/p)*(W/p) patches; K = int(L * (1 - mask_ratio)) visible.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from smae.kernels import masked_patch_loss, scatter_visible

from .decoder import SiamDecoder
from .masking import random_masking
from .pos_embed import resize_pos_embed, sincos_2d
from .presets import ModelConfig
from .vit import encoder_from_config, init_mae_


class SiamMAE(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        enc, dec = config.encoder, config.decoder
        self.encoder = encoder_from_config(enc)
        self.patch_size = enc.patch_size
        self.decoder_embed = nn.Linear(enc.embed_dim, dec.embed_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dec.embed_dim))
        self.decoder_grid = self.encoder.grid  # native grid of the decoder's position table
        self.decoder_pos_embed = nn.Parameter(sincos_2d(dec.embed_dim, self.decoder_grid).unsqueeze(0), requires_grad=False)
        self.decoder = SiamDecoder(config.decoder_variant, dec.embed_dim, dec.depth, dec.num_heads, dec.mlp_hidden,
                                   dec.dropout, dec.norm_first)
        self.decoder_pred = nn.Linear(dec.embed_dim, enc.patch_size**2 * 3)
        init_mae_(self)

    def encode(self, imgs: torch.Tensor, mask_ratio: float, generator: torch.Generator | None = None):
        """imgs (B, 3, H, W) -> tokens (B, 1 + K, E), masking (ids_keep, ids_restore, mask) or
        None when nothing is masked."""
        if mask_ratio == 0:
            return self.encoder(imgs), None
        grid = self.encoder.grid_of(imgs)
        masking = random_masking(imgs.shape[0], grid[0] * grid[1], mask_ratio, imgs.device, generator)
        return self.encoder(imgs, masking.ids_keep), masking

    def _past_tokens(self, tokens: torch.Tensor, masking, pos_embed: torch.Tensor) -> torch.Tensor:
        """f1's encoder tokens (B, 1 + K1, E) -> its decoder tokens (B, 1 + K1, Dd); with
        past_pos_embed, plus the position embeddings (1 + L, Dd) of the tokens kept."""
        past = self.decoder_embed(tokens)
        if not self.config.decoder.past_pos_embed:
            return past
        if masking is None:
            return past + pos_embed
        kept = pos_embed[1:][masking.ids_keep]  # (B, K1, Dd)
        return past + torch.cat([pos_embed[:1].expand(len(kept), 1, -1), kept], dim=1)

    def _future_tokens(self, tokens: torch.Tensor, masking, pos_embed: torch.Tensor) -> torch.Tensor:
        """f2's encoder tokens (B, 1 + K, E) -> the full decoder sequence (B, 1 + L, Dd), with mask
        tokens at the masked positions and the decoder position embeddings (1 + L, Dd)."""
        if masking is None:  # nothing masked
            return self.decoder_embed(tokens) + pos_embed
        return scatter_visible(self.decoder_embed(tokens), masking.ids_restore, self.mask_token.reshape(-1), pos_embed, num_prefix=1)

    def forward(self, f1: torch.Tensor, f2: torch.Tensor, generator: torch.Generator | None = None):
        """f1, f2 (B, 3, H, W) -> loss (), pred (B, L, p*p*3) in MAE's patchify order, mask (B, L) 1 = masked.

        f1 is encoded first (unmasked: no random numbers drawn), then f2's mask is drawn, so a
        seeded run draws the same mask as CropMAE's SiamMAE."""
        if f1.shape != f2.shape:
            raise ValueError(f"f1 and f2 must have the same shape, got {tuple(f1.shape)} and {tuple(f2.shape)}")
        grid = self.encoder.grid_of(f2)
        pos_embed = resize_pos_embed(self.decoder_pos_embed, self.decoder_grid, grid)[0]  # (1 + L, Dd)
        past_tokens, past_masking = self.encode(f1, self.config.past_mask_ratio, generator)  # (B, 1 + K1, E)
        future_tokens, future_masking = self.encode(f2, self.config.mask_ratio, generator)
        past = self._past_tokens(past_tokens, past_masking, pos_embed)  # keys / values of the cross-attention
        future = self._future_tokens(future_tokens, future_masking, pos_embed)
        mask = f2.new_zeros(len(f2), grid[0] * grid[1]) if future_masking is None else future_masking.mask  # (B, L)
        pred = self.decoder_pred(self.decoder(future, past))[:, 1:]  # drop [CLS]: (B, L, p*p*3)
        loss = masked_patch_loss(pred, f2, mask, patch_size=self.patch_size, norm_pix=self.config.norm_pix_loss)
        return loss, pred, mask
