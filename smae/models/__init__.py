"""The SiamMAE model layer: ViT encoder, decoders, presets and weight loading."""
from .presets import DECODERS, ENCODERS, PRESETS, DecoderConfig, EncoderConfig, ModelConfig, model_config
from .siammae import SiamMAE
from .vit import VisionTransformer
from .weights import encoder_state_dict, load_encoder_weights

__all__ = [
    "DECODERS", "ENCODERS", "PRESETS", "DecoderConfig", "EncoderConfig", "ModelConfig", "SiamMAE",
    "VisionTransformer", "build_encoder", "build_model", "encoder_state_dict", "load_encoder_weights", "model_config",
]


def build_model(name: str = "vits16", **overrides) -> SiamMAE:
    """SiamMAE from the preset `name` ('tiny', 'vits16', 'vits8', 'vitb16') with ModelConfig overrides."""
    return SiamMAE(model_config(name, **overrides))


def build_encoder(name: str = "vits16") -> VisionTransformer:
    """Just the ViT encoder of a preset (e.g. to evaluate DINO or MAE weights)."""
    enc = model_config(name).encoder
    return VisionTransformer(enc.img_size, enc.patch_size, enc.embed_dim, enc.depth, enc.num_heads, enc.mlp_ratio)
