"""Model configurations: frozen dataclasses and named presets.

`build_model("vits16", decoder="dec512d8b", mask_ratio=0.9)` builds SiamMAE from a preset;
overrides are ModelConfig fields, and `encoder` / `decoder` also take preset names.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field


@dataclass(frozen=True)
class EncoderConfig:
    img_size: int = 224  # pre-training resolution; fixes the native position grid
    patch_size: int = 16
    embed_dim: int = 384
    depth: int = 12
    num_heads: int = 6
    mlp_ratio: float = 4.0


@dataclass(frozen=True)
class DecoderConfig:
    embed_dim: int = 256
    depth: int = 4
    num_heads: int = 8
    mlp_hidden: int = 2048  # MLP hidden width (CropMAE: nn.TransformerDecoderLayer's dim_feedforward default)
    dropout: float = 0.1  # training only: attention probabilities, MLP hidden layer, residual branches


@dataclass(frozen=True)
class ModelConfig:
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    decoder_variant: str = "cross-self"  # cross-self | cross | joint
    mask_ratio: float = 0.95  # of the future frame f2 (SiamMAE: 0.95)
    past_mask_ratio: float = 0.0  # of the past frame f1 (SiamMAE: unmasked)
    norm_pix_loss: bool = True  # MAE's per-patch normalised target


ENCODERS: dict[str, EncoderConfig] = {
    # Small enough to pre-train on a 2-core CPU in minutes: 64x64 frames, 8x8 grid.
    "tiny": EncoderConfig(img_size=64, patch_size=8, embed_dim=128, depth=4, num_heads=4),
    "vits16": EncoderConfig(patch_size=16, embed_dim=384, depth=12, num_heads=6),
    "vits8": EncoderConfig(patch_size=8, embed_dim=384, depth=12, num_heads=6),
    "vitb16": EncoderConfig(patch_size=16, embed_dim=768, depth=12, num_heads=12),
}

DECODERS: dict[str, DecoderConfig] = {
    # The demo's: MLP 4x wide and no dropout, which learn faster in the demo's 600 CPU steps.
    "dectiny": DecoderConfig(embed_dim=128, depth=2, num_heads=4, mlp_hidden=512, dropout=0.0),
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
