"""The SiamMAE model layer: ViT encoder, decoders, presets and weight loading.

The configs and presets load without torch (so `smae --help` stays fast); the modules are
imported on first use of their names.
"""
import importlib

from .presets import DECODERS, ENCODERS, PRESETS, DecoderConfig, EncoderConfig, ModelConfig, model_config

# name -> submodule defining it, imported when the name is first used
_LAZY = {"SiamMAE": ".siammae", "VisionTransformer": ".vit", "encoder_state_dict": ".weights",
         "load_encoder_weights": ".weights"}

__all__ = [
    "DECODERS", "ENCODERS", "PRESETS", "DecoderConfig", "EncoderConfig", "ModelConfig", "SiamMAE",
    "VisionTransformer", "build_encoder", "build_model", "encoder_state_dict", "load_encoder_weights", "model_config",
]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def build_model(name: str = "vits16", **overrides):
    """SiamMAE from the preset `name` ('tiny', 'vits16', 'vits8', 'vitb16') with ModelConfig overrides."""
    from .siammae import SiamMAE

    return SiamMAE(model_config(name, **overrides))


def build_encoder(name: str = "vits16"):
    """Just the ViT encoder of a preset (e.g. to evaluate DINO or MAE weights)."""
    from .vit import VisionTransformer

    enc = model_config(name).encoder
    return VisionTransformer(enc.img_size, enc.patch_size, enc.embed_dim, enc.depth, enc.num_heads, enc.mlp_ratio)
