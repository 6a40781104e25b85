"""Checkpoints: written atomically, loaded with torch.load(weights_only=True).

A checkpoint is a dict of tensors and plain Python values only:
    {"model": state dict, "optimizer": ..., "scaler": ..., "step": int,
     "config": TrainConfig as a dict, "preset": str, "rng": [per-rank RNG states]}
so it loads without unpickling arbitrary objects. smae.models.load_encoder_weights reads its
"model" entry directly (encoder keys start with "encoder.").
"""
from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch

from smae.atomic import atomic_path

CHECKPOINT_NAME = "checkpoint.pt"
REQUIRED_KEYS = ("model", "optimizer", "scaler", "step", "config", "rng")


def save_atomic(obj: object, path: str | os.PathLike) -> None:
    """torch.save, flushed to disk before the rename."""
    with atomic_path(path) as temporary, open(temporary, "wb") as handle:
        torch.save(obj, handle)
        handle.flush()
        os.fsync(handle.fileno())


def rng_state() -> dict:
    """This process's RNG states as tensors and plain values (loadable with weights_only=True)."""
    numpy_state = np.random.get_state(legacy=False)
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"key": torch.from_numpy(numpy_state["state"]["key"].astype(np.int64)),
                  "pos": int(numpy_state["state"]["pos"]), "has_gauss": int(numpy_state["has_gauss"]),
                  "gauss": float(numpy_state["gauss"])},
        "python": random.getstate(),
    }


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    numpy_state = state["numpy"]
    np.random.set_state({"bit_generator": "MT19937",
                         "state": {"key": numpy_state["key"].numpy().astype(np.uint32), "pos": numpy_state["pos"]},
                         "has_gauss": numpy_state["has_gauss"], "gauss": numpy_state["gauss"]})
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


def load_checkpoint(path: str | os.PathLike) -> dict:
    """A training checkpoint; FileNotFoundError / ValueError naming the file when it is not one."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for truncated or foreign files
        raise ValueError(f"{path} is not a readable checkpoint ({type(error).__name__}: {error})") from None
    missing = [key for key in REQUIRED_KEYS if not isinstance(checkpoint, dict) or key not in checkpoint]
    if missing:
        raise ValueError(f"{path} is not an smae training checkpoint (missing {', '.join(missing)})")
    return checkpoint


def build_model_from_checkpoint(path: str | os.PathLike):
    """The SiamMAE of a training checkpoint (architecture from its saved config), weights loaded."""
    from smae.models import SiamMAE

    from .config import train_config_from_dict

    checkpoint = load_checkpoint(path)
    config = train_config_from_dict(checkpoint["config"], where=str(path))
    model = SiamMAE(config.model)
    model.load_state_dict(checkpoint["model"])
    return model
