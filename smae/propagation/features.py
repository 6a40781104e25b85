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

from smae.errors import UserError
from smae.models import ENCODERS, VisionTransformer, WeightsError, build_encoder, encoder_from_config, load_encoder_weights, read_checkpoint
from smae.models.pos_embed import DEFAULT_POS_RESIZE, check_pos_resize
from smae.models.vit import init_mae_

RANDOM_INIT_SEED = 0
DEFAULT_PRESET = "vits16"  # the architecture assumed for foreign weights when --preset is not given


class FeatureSource(TypingProtocol):
    stride: int
    device: torch.device

    def __call__(self, frames: torch.Tensor) -> torch.Tensor: ...


class EncoderFeatures:
    """Last-block patch tokens of a ViT after its final LayerNorm, [CLS] dropped.

    On CUDA the encoder runs under bf16 autocast (features returned in float32); on the CPU in
    float32. The encoder is put in eval mode on `device`. pos_resize: how the position table is
    resized to the frames' grid ('dino', 'timm', 'plain'; smae.models.pos_embed), the protocol's.
    """

    def __init__(self, encoder: VisionTransformer, device: str | torch.device = "cpu", autocast: bool = True,
                 pos_resize: str = DEFAULT_POS_RESIZE):
        self.device = torch.device(device)
        self.encoder = encoder.to(self.device).eval()
        self.stride = encoder.patch_size
        self.autocast = autocast and self.device.type == "cuda"
        self.pos_resize = check_pos_resize(pos_resize)

    @torch.inference_mode()
    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        """frames (B, 3, H, W) -> (B, H/p, W/p, C) float32."""
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
            return self.encoder.get_features(frames, pos_resize=self.pos_resize).float()


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
    preset: str | None = None,
    weights: str | None = None,
    device: str | torch.device = "cpu",
    pos_resize: str = DEFAULT_POS_RESIZE,
    checkpoint_key: str | None = None,
) -> EncoderFeatures | PixelFeatures:
    """'encoder': a ViT with `weights` (any checkpoint smae.models.load_encoder_weights reads).
    An smae training checkpoint builds the encoder it was trained with (its saved config); foreign
    weights (DINO, MAE, CropMAE, timm) go into the encoder of `preset` (default vits16), and a
    wrong guess names the preset that fits. No weights: the preset at a fixed random init, with a
    warning. 'pixels': raw pixels on the preset's patch grid (no weights).
    checkpoint_key: 'teacher', 'student' or 'model' (None: teacher where present, else model)."""
    if kind == "pixels":
        if weights is not None:
            raise UserError("--weights: has no meaning with --features pixels; drop one of them")
        encoder = build_encoder(preset or DEFAULT_PRESET)
        return PixelFeatures(stride=encoder.patch_size, cells=min(4, encoder.patch_size), device=device)
    if kind != "encoder":
        raise UserError(f"--features {kind}: unknown feature source; choose from encoder, pixels")
    if weights is None:
        preset = preset or DEFAULT_PRESET
        warnings.warn(f"no encoder weights given: propagating with a randomly initialised {preset} encoder "
                      "(its masks show the machinery, not a model)", stacklevel=2)
        encoder = build_encoder(preset)
        # MAE's initialisation from a fixed seed: every torchrun rank gets the same random encoder.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_INIT_SEED)
            init_mae_(encoder)
    else:
        encoder = encoder_for_weights(weights, preset, checkpoint_key)
    return EncoderFeatures(encoder, device, pos_resize=pos_resize)


def encoder_for_weights(weights: str, preset: str | None, checkpoint_key: str | None) -> VisionTransformer:
    """The encoder the weights file describes (smae checkpoints) or `preset`'s, weights loaded."""
    checkpoint = read_checkpoint(weights)
    model_config = _smae_model_config(checkpoint, weights)
    if model_config is None:
        encoder = build_encoder(preset or DEFAULT_PRESET)
    else:
        if preset is not None and ENCODERS[preset] != model_config.encoder:
            raise UserError(f"--preset {preset}: {weights} is an smae checkpoint of another encoder "
                            f"(width {model_config.encoder.embed_dim}, patch {model_config.encoder.patch_size}), which it builds itself; "
                            f"drop --preset")
        encoder = encoder_from_config(model_config.encoder)
    load_encoder_weights(encoder, checkpoint, checkpoint_key, name=str(weights))
    return encoder


def _smae_model_config(checkpoint, where: str):
    """The ModelConfig an smae training checkpoint was trained with, or None for foreign weights."""
    config = checkpoint.get("config")
    if not (isinstance(config, dict) and isinstance(config.get("model"), dict) and isinstance(checkpoint.get("model"), dict)):
        return None
    from smae.train.config import train_config_from_dict

    try:
        return train_config_from_dict(config, where=where).model
    except (TypeError, ValueError) as error:
        raise WeightsError(f"{where}: its saved config does not describe a model this smae builds ({error}); "
                           f"load it with the smae version that wrote it, or give --preset with a plain state dict") from None
