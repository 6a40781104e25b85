"""Loading encoder weights from DINO, MAE, timm and smae checkpoints.

Accepted containers (found by key, outermost first): DINO's {"teacher"} or {"student"},
MAE's {"model"}, {"state_dict"}, smae's own {"model"} (whose encoder keys start with
"encoder."), or a plain state dict. Prefixes "module." (DDP), "backbone." (DINO) and
"encoder." (smae) are stripped. Keys of heads and decoders that an encoder never has are
dropped; anything else that does not fit is an error listing missing and unexpected keys.
A position table of another grid is resized bicubically to the encoder's.
"""
from __future__ import annotations

import math
import os
from typing import Mapping

import torch

from .pos_embed import resize_pos_embed
from .vit import VisionTransformer

CONTAINER_KEYS = ("teacher", "student", "model", "state_dict")
STRIPPED_PREFIXES = ("module.", "backbone.", "encoder.")
# Parameters of MAE's decoder, timm / DINO heads and smae's decoder: never part of an encoder.
FOREIGN_PREFIXES = ("decoder", "mask_token", "head", "fc_norm", "pre_logits")


def _unwrap(checkpoint: Mapping) -> Mapping:
    for key in CONTAINER_KEYS:
        if key in checkpoint and isinstance(checkpoint[key], Mapping):
            return checkpoint[key]
    return checkpoint


def encoder_state_dict(checkpoint: Mapping) -> dict[str, torch.Tensor]:
    """The encoder part of any supported checkpoint, with smae / timm key names."""
    state = {}
    for key, value in _unwrap(checkpoint).items():
        changed = True
        while changed:  # prefixes may be stacked: "module.backbone.blocks..."
            changed = False
            for prefix in STRIPPED_PREFIXES:
                if key.startswith(prefix):
                    key, changed = key[len(prefix):], True
        if not key.startswith(FOREIGN_PREFIXES) and isinstance(value, torch.Tensor):
            state[key] = value
    return state


def _fit_pos_embed(state: dict[str, torch.Tensor], encoder: VisionTransformer, name: str) -> None:
    table = state.get("pos_embed")
    if table is None or table.shape == encoder.pos_embed.shape:
        return
    side = math.isqrt(table.shape[1] - 1)
    if side * side != table.shape[1] - 1 or table.shape[-1] != encoder.embed_dim:
        raise ValueError(f"{name}: pos_embed of shape {tuple(table.shape)} does not fit an encoder of width {encoder.embed_dim} (a square grid of that width is needed)")
    state["pos_embed"] = resize_pos_embed(table, (side, side), encoder.grid)


def load_encoder_weights(encoder: VisionTransformer, source: str | os.PathLike | Mapping) -> None:
    """Loads a checkpoint file (torch.load with weights_only=True) or a loaded dict into `encoder`.

    Raises ValueError naming the file and listing missing and unexpected keys.
    """
    name = str(source) if not isinstance(source, Mapping) else "the given state dict"
    if not isinstance(source, Mapping):
        if not os.path.isfile(source):
            raise FileNotFoundError(f"checkpoint {source} does not exist")
        source = torch.load(source, map_location="cpu", weights_only=True)
    if not isinstance(source, Mapping):
        raise ValueError(f"{name}: expected a dict of tensors, got {type(source).__name__}")
    state = encoder_state_dict(source)
    _fit_pos_embed(state, encoder, name)
    expected = set(encoder.state_dict())
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise ValueError(f"{name} does not fit the encoder: missing keys {missing}, unexpected keys {unexpected}")
    mismatched = [k for k, v in encoder.state_dict().items() if v.shape != state[k].shape]
    if mismatched:
        details = ", ".join(f"{k} {tuple(state[k].shape)} vs {tuple(encoder.state_dict()[k].shape)}" for k in mismatched)
        raise ValueError(f"{name}: shapes do not match the encoder: {details}")
    encoder.load_state_dict(state)
