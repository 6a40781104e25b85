"""Feature sources for label propagation: a ViT encoder, or raw pixels.

A feature source has a `stride` (input pixels per feature cell), a `device` (where it wants the
frames) and maps a batch of normalised frames to a grid of features:

    source(frames)   frames (B, 3, H, W) float32 on source.device, H and W multiples of stride
                     -> (B, H / stride, W / stride, C)

Features come back as computed (not normalised): `normalize_features` L2-normalises each cell
over its C channels, never over the tokens.
"""
from __future__ import annotations

import warnings
from typing import Protocol as TypingProtocol

import torch
import torch.nn.functional as F

from smae.models import VisionTransformer, build_encoder, load_encoder_weights
from smae.models.vit import init_mae_

RANDOM_INIT_SEED = 0


class FeatureSource(TypingProtocol):
    stride: int
    device: torch.device

    def __call__(self, frames: torch.Tensor) -> torch.Tensor: ...


class EncoderFeatures:
    """Last-block patch tokens of a ViT after its final LayerNorm, [CLS] dropped.

    On CUDA the encoder runs under bf16 autocast (features returned in float32); on the CPU in
    float32. The encoder is put in eval mode on `device`.
    """

    def __init__(self, encoder: VisionTransformer, device: str | torch.device = "cpu", autocast: bool = True):
        self.device = torch.device(device)
        self.encoder = encoder.to(self.device).eval()
        self.stride = encoder.patch_size
        self.autocast = autocast and self.device.type == "cuda"

    @torch.inference_mode()
    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        """frames (B, 3, H, W) -> (B, H/p, W/p, C) float32."""
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
            return self.encoder.get_features(frames).float()


class PixelFeatures:
    """The raw-pixel baseline: each stride x stride patch of the normalised frame, average-pooled
    to `cells` x `cells` sub-cells, is the feature of its cell (C = 3 * cells^2)."""

    def __init__(self, stride: int = 16, cells: int = 4, device: str | torch.device = "cpu"):
        if stride < 1 or cells < 1 or stride % cells:
            raise ValueError(f"pixel features need a stride divisible by cells, got stride {stride}, cells {cells}")
        self.stride, self.cells, self.device = stride, cells, torch.device(device)

    @torch.inference_mode()
    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        """frames (B, 3, H, W) -> (B, H/s, W/s, 3 * cells^2)."""
        batch, _, height, width = frames.shape
        h, w = height // self.stride, width // self.stride
        pooled = F.avg_pool2d(frames.float(), self.stride // self.cells)  # (B, 3, h*c, w*c)
        pooled = pooled.reshape(batch, 3, h, self.cells, w, self.cells)
        return pooled.permute(0, 2, 4, 1, 3, 5).reshape(batch, h, w, 3 * self.cells * self.cells)


def normalize_features(features: torch.Tensor) -> torch.Tensor:
    """(..., C) -> float32 unit vectors over C (the channel axis, never the token axis)."""
    return F.normalize(features.float(), dim=-1)


def build_feature_source(
    kind: str = "encoder",
    preset: str = "vits16",
    weights: str | None = None,
    device: str | torch.device = "cpu",
) -> EncoderFeatures | PixelFeatures:
    """'encoder': the ViT of model preset `preset` with `weights` (any checkpoint that
    smae.models.load_encoder_weights reads; None: random init, with a warning);
    'pixels': raw pixels on the preset's patch grid (no weights)."""
    encoder = build_encoder(preset)
    if kind == "pixels":
        if weights is not None:
            raise ValueError("--weights has no meaning with --features pixels")
        return PixelFeatures(stride=encoder.patch_size, cells=min(4, encoder.patch_size), device=device)
    if kind != "encoder":
        raise ValueError(f"unknown feature source {kind!r}; choose from encoder, pixels")
    if weights is None:
        warnings.warn(f"no --weights given: propagating with a randomly initialised {preset} encoder", stacklevel=2)
        # MAE's initialisation from a fixed seed: every torchrun rank gets the same random encoder.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_INIT_SEED)
            init_mae_(encoder)
    else:
        load_encoder_weights(encoder, weights)
    return EncoderFeatures(encoder, device)
