"""Model configurations: frozen dataclasses and named presets.

`build_model("vits16", decoder="dec512d8b", mask_ratio=0.9)` builds SiamMAE from a preset;
overrides are ModelConfig fields, and `encoder` / `decoder` also take preset names.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from smae.config import check_fields

DECODER_VARIANTS = ("cross-self", "cross", "joint")
# Entries of a DINO / MAE / CropMAE training checkpoint that hold a ViT (`--checkpoint-key`);
# here, not in weights.py, so that the command line lists them without importing torch.
CHECKPOINT_KEYS = ("teacher", "student", "model")


def _transformer_rules(config) -> dict:
    """Rules shared by the encoder and decoder configs (widths are split into heads and, for the
    sin-cos position table, into four)."""
    return {
        "embed_dim": (lambda v: v >= 4 and v % 4 == 0 and v % config.num_heads == 0,
                      f"must be a positive multiple of 4 and of num_heads ({config.num_heads})"),
        "depth": (lambda v: v >= 1, "must be at least 1"),
        "num_heads": (lambda v: v >= 1, "must be at least 1"),
    }


@dataclass(frozen=True)
class EncoderConfig:
    img_size: int = 224  # pre-training resolution; fixes the native position grid
    patch_size: int = 16
    embed_dim: int = 384
    depth: int = 12
    num_heads: int = 6
    mlp_ratio: float = 4.0
    drop_path_rate: float = 0.0  # stochastic depth in pre-training, last block's (0: MAE's and SiamMAE's)

    def __post_init__(self) -> None:
        check_fields(self, {
            "patch_size": (lambda v: v >= 1, "must be at least 1"),
            "drop_path_rate": (lambda v: 0 <= v < 1, "must be in [0, 1)"),
            "img_size": (lambda v: v >= self.patch_size and v % self.patch_size == 0,
                         f"must be a positive multiple of patch_size ({self.patch_size})"),
            "mlp_ratio": (lambda v: math.isfinite(v) and v > 0, "must be positive"),
            **_transformer_rules(self),
        })


@dataclass(frozen=True)
class DecoderConfig:
    embed_dim: int = 256
    depth: int = 4
    num_heads: int = 8
    mlp_hidden: int = 2048  # MLP hidden width (CropMAE: nn.TransformerDecoderLayer's dim_feedforward default)
    dropout: float = 0.1  # training only: attention probabilities, MLP hidden layer, residual branches
    norm_first: bool = False  # pre-norm blocks, x + sublayer(norm(x)) (CropMAE: post-norm, norm(x + sublayer(x)))
    past_pos_embed: bool = False  # add the decoder position table to f1's tokens too (CropMAE: f2's only)

    def __post_init__(self) -> None:
        check_fields(self, {
            "mlp_hidden": (lambda v: v >= 1, "must be at least 1"),
            "dropout": (lambda v: 0 <= v < 1, "must be in [0, 1)"),
            **_transformer_rules(self),
        })


@dataclass(frozen=True)
class ModelConfig:
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    decoder_variant: str = "cross-self"  # cross-self | cross | joint
    mask_ratio: float = 0.95  # of the future frame f2 (SiamMAE: 0.95)
    past_mask_ratio: float = 0.0  # of the past frame f1 (SiamMAE: unmasked)
    norm_pix_loss: bool = True  # MAE's per-patch normalised target

    def __post_init__(self) -> None:
        check_fields(self, {
            "decoder_variant": (lambda v: v in DECODER_VARIANTS, f"must be one of {', '.join(DECODER_VARIANTS)}"),
            # f2's masked patches are all the loss scores (0: nothing to score, a NaN loss) and its
            # visible ones all the decoder sees of it (1: none).
            "mask_ratio": (lambda v: 0 < v < 1, "must be in (0, 1) (f2 needs masked patches to score and visible ones)"),
            "past_mask_ratio": (lambda v: 0 <= v < 1, "must be in [0, 1)"),
        })


ENCODERS: dict[str, EncoderConfig] = {
    # Small enough to pre-train on a 2-core CPU in minutes: 64x64 frames, 8x8 grid.
    "tiny": EncoderConfig(img_size=64, patch_size=8, embed_dim=128, depth=4, num_heads=4),
    "vits16": EncoderConfig(patch_size=16, embed_dim=384, depth=12, num_heads=6),
    "vits8": EncoderConfig(patch_size=8, embed_dim=384, depth=12, num_heads=6),
    "vitb16": EncoderConfig(patch_size=16, embed_dim=768, depth=12, num_heads=12),
}

DECODERS: dict[str, DecoderConfig] = {
    # The demo's: MLP 4x wide, no dropout, pre-norm blocks, and position embeddings on f1's tokens
    # as on f2's. In the demo's few CPU minutes CropMAE's post-norm decoder, which must first
    # learn where f1's tokens are from what the encoder carries, stays on its loss plateau;
    # these choices let it copy from the right place of f1 early, so the encoder learns
    # correspondence sooner (measured on a held-out synthetic set: smae.train.config, "tiny").
    "dectiny": DecoderConfig(embed_dim=128, depth=2, num_heads=4, mlp_hidden=512, dropout=0.0, norm_first=True,
                             past_pos_embed=True),
    "dec256d4b": DecoderConfig(embed_dim=256, depth=4, num_heads=8),  # CropMAE's SiamMAE decoder (siam_mae_vit_small)
    "dec512d8b": DecoderConfig(embed_dim=512, depth=8, num_heads=16),  # MAE's default size (CropMAE's siam_mae_vit_base)
}

PRESETS: dict[str, ModelConfig] = {
    "tiny": ModelConfig(encoder=ENCODERS["tiny"], decoder=DECODERS["dectiny"]),
    "vits16": ModelConfig(encoder=ENCODERS["vits16"]),
    "vits8": ModelConfig(encoder=ENCODERS["vits8"]),
    "vitb16": ModelConfig(encoder=ENCODERS["vitb16"]),
}


def _named(value: object, table: dict, kind: str) -> object:
    if isinstance(value, str):
        if value not in table:
            raise ValueError(f"unknown {kind} preset {value!r}; choose from {', '.join(table)}")
        return table[value]
    return value


def model_config(name: str, **overrides: object) -> ModelConfig:
    """The preset `name` with ModelConfig fields replaced; `encoder` / `decoder` may be preset names."""
    if name not in PRESETS:
        raise ValueError(f"unknown model preset {name!r}; choose from {', '.join(PRESETS)}")
    known = {f.name for f in dataclasses.fields(ModelConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"unknown model option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    if "encoder" in overrides:
        overrides["encoder"] = _named(overrides["encoder"], ENCODERS, "encoder")
    if "decoder" in overrides:
        overrides["decoder"] = _named(overrides["decoder"], DECODERS, "decoder")
    return dataclasses.replace(PRESETS[name], **overrides)
