"""smae: Siamese Masked Autoencoders (Gupta et al., NeurIPS 2023) with fused kernels.

    import smae
    model = smae.build_model("vits16")           # SiamMAE with the dec256d4b decoder
    loss, pred, mask = model(f1, f2)             # (B, 3, 224, 224) frame pairs
    feats = model.encoder.get_features(frames)   # (B, h, w, 384)

The model names are imported on first use, so `smae --help` does not load torch.
"""
import importlib

__version__ = "0.1.0"
__all__ = ["PRESETS", "SiamMAE", "VisionTransformer", "build_encoder", "build_model", "load_encoder_weights", "load_siammae_weights"]


def __getattr__(name: str):
    if name in __all__:
        return getattr(importlib.import_module("smae.models"), name)
    raise AttributeError(f"module 'smae' has no attribute {name!r}")
