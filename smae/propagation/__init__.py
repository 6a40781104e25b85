"""Label propagation: feature sources, protocols, the memory-bounded per-video loop, the Python
API (`propagate`: any clip with a mask) and the dataset pipeline behind `smae propagate`.

Protocols load without torch (so `smae propagate --help` stays fast); the other names are
imported on first use.
"""
import importlib

from .protocols import PROTOCOLS, Protocol, protocol_preset

# name -> submodule defining it, imported when the name is first used
_LAZY = {"EncoderFeatures": ".features", "FeatureSource": ".features", "PixelFeatures": ".features",
         "build_feature_source": ".features", "evaluate_results": ".pipeline", "propagate_dataset": ".pipeline",
         "propagate": ".api"}

__all__ = [
    "PROTOCOLS",
    "EncoderFeatures",
    "FeatureSource",
    "PixelFeatures",
    "Protocol",
    "build_feature_source",
    "evaluate_results",
    "propagate",
    "propagate_dataset",
    "protocol_preset",
]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
