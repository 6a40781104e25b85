"""Loading encoder weights from DINO, MAE, CropMAE, timm and smae checkpoints, and CropMAE's
SiamMAE checkpoints into a whole SiamMAE.

Encoder weights are found under a checkpoint key: DINO's "teacher" (the default where present)
or "student", "model" (MAE, CropMAE, smae), "state_dict", or a plain state dict. Prefixes
"module." (DDP), "backbone." (DINO) and "encoder." (smae) are stripped; keys of heads and
decoders are dropped; anything else that does not fit is an error listing missing and unexpected
keys, and a wrong architecture names the preset that fits. A position table of another grid
replaces the encoder's (the encoder's native grid becomes the table's), so it is resized once,
at the input size, by the rule the caller asks for (smae.models.pos_embed).
"""
from __future__ import annotations

import math
import os
import re
from typing import Mapping

import torch
import torch.nn as nn

from .checkpoint_file import WeightsError, read_checkpoint
from .presets import CHECKPOINT_KEYS, ENCODERS
from .vit import VisionTransformer

FALLBACK_KEYS = ("teacher", "student", "model", "state_dict")  # tried in order when no key is given
STRIPPED_PREFIXES = ("module.", "backbone.", "encoder.")
# Parameters of MAE's decoder, timm / DINO heads and smae's decoder: never part of an encoder.
FOREIGN_PREFIXES = ("decoder", "mask_token", "head", "fc_norm", "pre_logits")


def _source_name(source: object) -> str:
    return str(source) if not isinstance(source, Mapping) else "the given state dict"


def _select(checkpoint: Mapping, key: str | None, name: str) -> Mapping:
    """The state dict under `key` (or the first of FALLBACK_KEYS present, or the checkpoint itself)."""
    if key is not None:
        if key not in CHECKPOINT_KEYS:
            raise WeightsError(f"--checkpoint-key {key}: not one of {', '.join(CHECKPOINT_KEYS)}")
        if not isinstance(checkpoint.get(key), Mapping):
            held = ", ".join(map(str, checkpoint)) or "nothing"
            raise WeightsError(f"--checkpoint-key {key}: {name} has no '{key}' entry (it holds {held}); "
                               f"choose a key it has, or omit --checkpoint-key")
        return checkpoint[key]
    for fallback in FALLBACK_KEYS:
        if isinstance(checkpoint.get(fallback), Mapping):
            return checkpoint[fallback]
    return checkpoint


def _strip(key: str) -> str:
    changed = True
    while changed:  # prefixes may be stacked: "module.backbone.blocks..."
        changed = False
        for prefix in STRIPPED_PREFIXES:
            if key.startswith(prefix):
                key, changed = key[len(prefix):], True
    return key


def encoder_state_dict(checkpoint: Mapping, checkpoint_key: str | None = None, name: str = "the checkpoint") -> dict[str, torch.Tensor]:
    """The encoder part of any supported checkpoint, with smae / timm key names."""
    state = {}
    for key, value in _select(checkpoint, checkpoint_key, name).items():
        key = _strip(str(key))
        if not key.startswith(FOREIGN_PREFIXES) and isinstance(value, torch.Tensor):
            state[key] = value
    if not state:
        held = ", ".join(map(str, checkpoint)) or "nothing"
        raise WeightsError(f"{name}: no encoder weights found (it holds {held}); "
                           f"give a DINO, MAE, CropMAE, timm or smae checkpoint, or choose --checkpoint-key")
    return state


def infer_encoder_shape(state: Mapping[str, torch.Tensor]) -> dict[str, int] | None:
    """width, depth and patch size of the ViT a state dict (timm names) holds; None if not a ViT."""
    proj = state.get("patch_embed.proj.weight")
    if proj is None or proj.dim() != 4:
        return None
    blocks = {int(m.group(1)) for key in state if (m := re.match(r"blocks\.(\d+)\.", key))}
    return {"width": proj.shape[0], "depth": 1 + max(blocks, default=-1), "patch": proj.shape[-1]}


def preset_for(state: Mapping[str, torch.Tensor]) -> str | None:
    """The encoder preset whose width, depth and patch size the state dict has, or None."""
    shape = infer_encoder_shape(state)
    for name, enc in ENCODERS.items():
        if shape is not None and (enc.embed_dim, enc.depth, enc.patch_size) == (shape["width"], shape["depth"], shape["patch"]):
            return name
    return None


def describe_fit(state: Mapping[str, torch.Tensor]) -> str:
    """'a ViT of width 384, depth 12, patch 8 (preset vits8)' or why no preset fits."""
    shape = infer_encoder_shape(state)
    if shape is None:
        return "no ViT patch embedding (patch_embed.proj.weight)"
    fit = preset_for(state)
    text = f"a ViT of width {shape['width']}, depth {shape['depth']}, patch {shape['patch']}"
    return text + (f" (preset {fit})" if fit else f" (no preset has this shape: {', '.join(ENCODERS)})")


def _few(keys: list[str], shown: int = 5) -> str:
    """'[a, b, c] and 7 more' for long key lists, so an error stays one readable line."""
    return str(keys[:shown]) + (f" and {len(keys) - shown} more" if len(keys) > shown else "")


def _adopt_pos_embed(state: dict[str, torch.Tensor], encoder: VisionTransformer, name: str) -> None:
    """A position table of another square grid becomes the encoder's (its native grid changes)."""
    table = state.get("pos_embed")
    if table is None or table.shape == encoder.pos_embed.shape:
        return
    side = math.isqrt(table.shape[1] - 1)
    if table.dim() != 3 or side * side != table.shape[1] - 1 or table.shape[-1] != encoder.embed_dim:
        raise WeightsError(f"{name}: pos_embed of shape {tuple(table.shape)} does not fit an encoder of width "
                           f"{encoder.embed_dim}; the weights hold {describe_fit(state)}")
    encoder.pos_embed = nn.Parameter(torch.empty_like(table, dtype=encoder.pos_embed.dtype), requires_grad=False)
    encoder.grid = (side, side)


def load_encoder_weights(
    encoder: VisionTransformer, source: str | os.PathLike | Mapping, checkpoint_key: str | None = None, *, name: str | None = None
) -> None:
    """Loads a checkpoint file (weights-only, see smae.models.checkpoint_file) or a loaded dict into `encoder`.

    checkpoint_key: 'teacher', 'student' or 'model'; None: teacher where present, else model.
    name: what error messages call a dict source (e.g. the file it was read from).
    Raises WeightsError (a UserError and a ValueError) naming the file and what does not fit."""
    name = name or _source_name(source)
    checkpoint = source if isinstance(source, Mapping) else read_checkpoint(source)
    state = encoder_state_dict(checkpoint, checkpoint_key, name)
    expected_shapes = {key: value.shape for key, value in encoder.state_dict().items()}
    ours = infer_encoder_shape(encoder.state_dict())
    theirs = infer_encoder_shape(state)
    if theirs is not None and theirs != ours:
        fit = preset_for(state)
        raise WeightsError(f"{name}: holds {describe_fit(state)}, not the encoder asked for (width {ours['width']}, depth "
                           f"{ours['depth']}, patch {ours['patch']}); " + (f"use --preset {fit}" if fit else "no preset fits these weights"))
    missing, unexpected = sorted(set(expected_shapes) - set(state)), sorted(set(state) - set(expected_shapes))
    if missing or unexpected:
        raise WeightsError(f"{name} does not fit the encoder: missing keys {_few(missing)}, unexpected keys {_few(unexpected)}; "
                           f"give the weights of a timm-style ViT ({describe_fit(state)} found)")
    mismatched = [k for k, shape in expected_shapes.items() if k != "pos_embed" and state[k].shape != shape]
    if mismatched:
        details = ", ".join(f"{k} {tuple(state[k].shape)} vs {tuple(expected_shapes[k])}" for k in mismatched[:3])
        raise WeightsError(f"{name}: shapes do not match the encoder ({details}); the weights hold {describe_fit(state)}")
    _adopt_pos_embed(state, encoder, name)
    encoder.load_state_dict(state)


# CropMAE's SiamMAE (models/SiamMAE.py) key names -> smae's, per decoder block
# (nn.TransformerDecoderLayer names: norm2 follows the cross-attention, norm3 the MLP, norm1 the self-attention).
CROPMAE_BLOCK_NAMES = {
    "multihead_attn.in_proj_weight": "cross_attn.qkv.weight", "multihead_attn.in_proj_bias": "cross_attn.qkv.bias",
    "multihead_attn.out_proj.weight": "cross_attn.proj.weight", "multihead_attn.out_proj.bias": "cross_attn.proj.bias",
    "self_attn.in_proj_weight": "self_attn.qkv.weight", "self_attn.in_proj_bias": "self_attn.qkv.bias",
    "self_attn.out_proj.weight": "self_attn.proj.weight", "self_attn.out_proj.bias": "self_attn.proj.bias",
    "linear1.weight": "mlp.fc1.weight", "linear1.bias": "mlp.fc1.bias", "linear2.weight": "mlp.fc2.weight", "linear2.bias": "mlp.fc2.bias",
    "norm2.weight": "norm_cross.weight", "norm2.bias": "norm_cross.bias", "norm3.weight": "norm_mlp.weight",
    "norm3.bias": "norm_mlp.bias", "norm1.weight": "norm_self.weight", "norm1.bias": "norm_self.bias",
}
CROPMAE_TOP_NAMES = {"decoder_norm.weight": "decoder.norm.weight", "decoder_norm.bias": "decoder.norm.bias"}
SIAMMAE_OWN = ("decoder_embed.", "decoder_pred.", "mask_token", "decoder_pos_embed")


def siammae_state_dict(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A CropMAE SiamMAE state dict (or smae's own) with smae's SiamMAE key names."""
    out = {}
    for key, value in state.items():
        key = str(key)
        while key.startswith("module."):
            key = key[len("module."):]
        if (m := re.match(r"decoder_blocks\.(\d+)\.(.+)$", key)) and m.group(2) in CROPMAE_BLOCK_NAMES:
            key = f"decoder.blocks.{m.group(1)}.{CROPMAE_BLOCK_NAMES[m.group(2)]}"
        elif key in CROPMAE_TOP_NAMES:
            key = CROPMAE_TOP_NAMES[key]
        elif not key.startswith(("encoder.", "decoder.") + SIAMMAE_OWN):
            key = "encoder." + key  # CropMAE's encoder keys sit at the top level (timm names)
        out[key] = value
    return out


def load_siammae_weights(model: nn.Module, source: str | os.PathLike | Mapping, checkpoint_key: str | None = "model") -> None:
    """Loads a CropMAE SiamMAE checkpoint (train_siammae_k400.py's checkpoint-*.pth, or its "model"
    state dict) or an smae one into a whole SiamMAE `model`, decoder included. The decoder must be
    the post-norm one of the matching size (vits16: dec256d4b, CropMAE's siam_mae_vit_small)."""
    name = _source_name(source)
    checkpoint = source if isinstance(source, Mapping) else read_checkpoint(source)
    if checkpoint_key is not None and isinstance(checkpoint.get(checkpoint_key), Mapping):
        checkpoint = checkpoint[checkpoint_key]
    state = {k: v for k, v in siammae_state_dict(checkpoint).items() if isinstance(v, torch.Tensor)}
    expected = model.state_dict()
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or unexpected:
        raise WeightsError(f"{name} does not fit this SiamMAE: missing keys {_few(missing)}, unexpected keys {_few(unexpected)}; "
                           f"build the model with the checkpoint's encoder and decoder sizes")
    mismatched = [k for k, v in expected.items() if v.shape != state[k].shape]
    if mismatched:
        details = ", ".join(f"{k} {tuple(state[k].shape)} vs {tuple(expected[k].shape)}" for k in mismatched[:3])
        raise WeightsError(f"{name}: shapes do not match this SiamMAE ({details}); build it with the checkpoint's sizes")
    model.load_state_dict(state)
