"""smae: Siamese Masked Autoencoders (Gupta et al., NeurIPS 2023) with fused kernels.

    import smae
    model = smae.build_model("vits16")           # SiamMAE with the dec256d4b decoder
    loss, pred, mask = model(f1, f2)             # (B, 3, 224, 224) frame pairs
    feats = model.encoder.get_features(frames)   # (B, h, w, 384)
    for mask in smae.propagate("clip.mp4", "first.png", weights="ckpt.pth"):   # (H, W) uint8 per frame
        ...

The model names are imported on first use, so `smae --help` does not load torch.
"""
import importlib

__version__ = "0.1.0"
__all__ = ["PRESETS", "SiamMAE", "VisionTransformer", "build_encoder", "build_model", "load_encoder_weights",
           "load_siammae_weights", "propagate"]


def __getattr__(name: str):
    if name == "propagate":
        return importlib.import_module("smae.propagation.api").propagate
    if name in __all__:
        return getattr(importlib.import_module("smae.models"), name)
    raise AttributeError(f"module 'smae' has no attribute {name!r}")
