"""Label propagation: feature sources, protocols, the memory-bounded per-video loop and the
dataset pipeline behind `smae propagate`."""
from .features import EncoderFeatures, FeatureSource, PixelFeatures, build_feature_source
from .pipeline import evaluate_results, propagate_dataset
from .protocols import PROTOCOLS, Protocol, protocol_preset

__all__ = [
    "PROTOCOLS",
    "EncoderFeatures",
    "FeatureSource",
    "PixelFeatures",
    "Protocol",
    "build_feature_source",
    "evaluate_results",
    "propagate_dataset",
    "protocol_preset",
]
