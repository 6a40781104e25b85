"""The SiamMAE model layer: ViT encoder, decoders, presets and weight loading.

The configs and presets load without torch (so `smae --help` stays fast); the modules are
imported on first use of their names.
"""
import importlib

from .presets import DECODERS, ENCODERS, PRESETS, DecoderConfig, EncoderConfig, ModelConfig, model_config

# name -> submodule defining it, imported when the name is first used
_LAZY = {"SiamMAE": ".siammae", "VisionTransformer": ".vit", "encoder_from_config": ".vit",
         "encoder_state_dict": ".weights", "load_encoder_weights": ".weights", "load_siammae_weights": ".weights",
         "WeightsError": ".checkpoint_file", "read_checkpoint": ".checkpoint_file", "POS_RESIZE_MODES": ".pos_embed"}

__all__ = [
    "DECODERS", "ENCODERS", "POS_RESIZE_MODES", "PRESETS", "DecoderConfig", "EncoderConfig", "ModelConfig", "SiamMAE",
    "VisionTransformer", "WeightsError", "build_encoder", "build_model", "encoder_from_config", "encoder_state_dict",
    "load_encoder_weights", "load_siammae_weights", "model_config", "read_checkpoint",
]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def build_model(name: str = "vits16", weights=None, **overrides):
    """SiamMAE from the preset `name` ('tiny', 'vits16', 'vits8', 'vitb16') with ModelConfig overrides;
    weights: a CropMAE SiamMAE or smae checkpoint (file or state dict) loaded into the whole model."""
    from .siammae import SiamMAE
    from .weights import load_siammae_weights

    model = SiamMAE(model_config(name, **overrides))
    if weights is not None:
        load_siammae_weights(model, weights)
    return model


def build_encoder(name: str = "vits16"):
    """Just the ViT encoder of a preset (e.g. to evaluate DINO or MAE weights)."""
    from .vit import encoder_from_config

    return encoder_from_config(model_config(name).encoder)
