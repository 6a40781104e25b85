"""The SiamMAE model layer: ViT encoder, decoders, presets and weight loading."""
from .checkpoint_file import WeightsError, read_checkpoint
from .pos_embed import POS_RESIZE_MODES
from .presets import DECODERS, ENCODERS, PRESETS, DecoderConfig, EncoderConfig, ModelConfig, model_config
from .siammae import SiamMAE
from .vit import VisionTransformer
from .weights import encoder_state_dict, load_encoder_weights, load_siammae_weights

__all__ = [
    "DECODERS", "ENCODERS", "POS_RESIZE_MODES", "PRESETS", "DecoderConfig", "EncoderConfig", "ModelConfig", "SiamMAE",
    "VisionTransformer", "WeightsError", "build_encoder", "build_model", "encoder_state_dict", "load_encoder_weights",
    "load_siammae_weights", "model_config", "read_checkpoint",
]


def build_model(name: str = "vits16", weights=None, **overrides) -> SiamMAE:
    """SiamMAE from the preset `name` ('tiny', 'vits16', 'vits8', 'vitb16') with ModelConfig overrides;
    weights: a CropMAE SiamMAE or smae checkpoint (file or state dict) loaded into the whole model."""
    model = SiamMAE(model_config(name, **overrides))
    if weights is not None:
        load_siammae_weights(model, weights)
    return model


def build_encoder(name: str = "vits16") -> VisionTransformer:
    """Just the ViT encoder of a preset (e.g. to evaluate DINO or MAE weights)."""
    return encoder_from_config(model_config(name).encoder)


def encoder_from_config(enc: EncoderConfig) -> VisionTransformer:
    return VisionTransformer(enc.img_size, enc.patch_size, enc.embed_dim, enc.depth, enc.num_heads, enc.mlp_ratio)
