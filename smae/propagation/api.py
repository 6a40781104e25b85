"""Propagating masks through any clip, from Python; `smae propagate --video` runs the same code.

    import smae
    masks = smae.propagate("clip.mp4", "first.png", weights="dino_vits16.pth", protocol="dino", settings={"topk": 7})
    for index, mask in enumerate(masks):     # one (H, W) uint8 label map per frame, in order
        ...
    # an object that enters later: its mask at the frame it is first seen
    masks = smae.propagate(frames, first, new_objects={40: mask_40}, encoder=PixelFeatures())  # smae.propagation

frames: a video file (any container PyAV reads, rotation honoured), a folder of frame images, a
list of image paths, a list of (H, W, 3) uint8 arrays, or a tensor (T, 3, H, W) / (T, H, W, 3),
uint8 or float in [0, 1]. Masks: a path of an indexed or grey PNG, or an (H, W) integer array of
label ids (0 background, 1..254 objects, 255 void = background), at the frames' size. Frames
before the first mask come out as background (all 0) and are not encoded.
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator, Mapping

import numpy as np

from smae.errors import UserError

from .engine import FramePrediction, propagate_masks
from .features import FeatureSource, build_feature_source
from .frames import FrameSequence, open_frames
from .labels import VOID_LABEL
from .protocols import PROTOCOLS, Protocol, protocol_preset


def propagate(
    frames,
    first_mask,
    *,
    encoder: str | FeatureSource | None = None,
    weights: str | os.PathLike | None = None,
    protocol: str | Protocol = "siammae",
    settings: Mapping[str, object] | None = None,
    mask_frame: int = 0,
    new_objects: Mapping[int, object] | None = None,
    device: str | None = None,
    batch_size: int = 8,
) -> Iterator[np.ndarray]:
    """Yields one (H, W) uint8 label map per frame of `frames`, in order.

    first_mask: the labels of frame `mask_frame`; new_objects: {frame index: mask} of objects
    that enter later (a mask's ids already tracked are not re-given); encoder: a preset name
    (smae.models.ENCODERS; None: the one an smae checkpoint was trained with, else vits16) or a
    feature source (smae.propagation.PixelFeatures, EncoderFeatures);
    weights: the encoder's checkpoint (smae, DINO, MAE, CropMAE, timm; None: random init, with a
    warning); protocol: a preset name (smae.propagation.PROTOCOLS) or a Protocol; settings:
    Protocol fields to change, e.g. {"resize": "native"} (frames at their own size: the fast
    setting on a CPU for frames under 480x880); device: 'cpu', 'cuda', 'cuda:N' (default: CUDA if
    available); batch_size: frames encoded at once.
    Frames and masks are checked here, before the first mask is yielded.
    """
    found = predictions(frames, first_mask, encoder=encoder, weights=weights, protocol=protocol, settings=settings,
                        mask_frame=mask_frame, new_objects=new_objects, device=device, batch_size=batch_size)
    return (prediction.labels for prediction in found)


def predictions(
    frames, first_mask, *, encoder: str | FeatureSource | None = None, weights=None, protocol: str | Protocol = "siammae",
    settings: Mapping[str, object] | None = None, mask_frame: int = 0, new_objects: Mapping[int, object] | None = None, device: str | None = None,
    batch_size: int = 8, mask_name: str = "first_mask",
) -> Iterator[FramePrediction]:
    """As `propagate`, yielding each frame's FramePrediction (labels, the frame itself, its file
    name stem); mask_name: how the first mask is called in messages."""
    if isinstance(protocol, str):
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol={protocol!r}: unknown; choose from {', '.join(PROTOCOLS)} or pass a Protocol")
        protocol = protocol_preset(protocol, "clip")
    if settings:
        unknown = sorted(set(settings) - {field.name for field in dataclasses.fields(Protocol)})
        if unknown:
            raise ValueError(f"settings: unknown Protocol fields {unknown}; see smae.propagation.Protocol")
        protocol = dataclasses.replace(protocol, **settings)
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size}: must be at least 1")
    clip = open_frames(frames)
    masks = {mask_frame: first_mask, **(new_objects or {})}
    names = {index: f"new_objects[{index}]" for index in masks}
    names[mask_frame] = mask_name
    labels = read_masks(clip, masks, names)
    source = _encoder_source(encoder, weights, device, protocol) if encoder is None or isinstance(encoder, str) else encoder
    return propagate_masks(clip, labels, source, protocol, batch_size)


def _encoder_source(preset: str | None, weights, device: str | None, protocol: Protocol) -> FeatureSource:
    import torch

    from smae.models import ENCODERS

    if preset is not None and preset not in ENCODERS:
        raise ValueError(f"encoder={preset!r}: unknown preset; choose from {', '.join(ENCODERS)} or pass a feature source")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return build_feature_source("encoder", preset, None if weights is None else str(weights), device,
                                    pos_resize=protocol.pos_resize)
    except UserError as error:  # the loader's messages name the command line's options
        python_names = str(error).replace("--preset ", "encoder=").replace("--preset", "encoder=").replace("--weights", "weights=")
        raise type(error)(python_names) from None


def read_masks(frames: FrameSequence, masks: Mapping[int, object], names: Mapping[int, str]) -> dict[int, np.ndarray]:
    """{frame index: (H, W) uint8 ids} of the given masks (paths or arrays), each checked
    against the frames; names: how each mask is called in messages ('first_mask', '--mask m.png')."""
    labels = {index: read_mask(mask, names[index], frames.size) for index, mask in sorted(masks.items())}
    for index in labels:
        if index < 0 or (frames.count is not None and index >= frames.count):
            raise UserError(f"{names[index]}: frame {index} is not a frame of {frames.where}"
                            + (f" (frames 0 to {frames.count - 1})" if frames.count else ""))
    return labels


def read_mask(mask, name: str, frame_size: tuple[int, int]) -> np.ndarray:
    """A mask (a PNG path or an (H, W) integer array) as uint8 label ids, checked against the
    frames: same size, some object, not only void."""
    from smae.layouts.images import read_label_png

    if isinstance(mask, (str, os.PathLike)):
        labels = np.asarray(read_label_png(mask))
    else:
        labels = np.asarray(mask.cpu() if hasattr(mask, "cpu") else mask)
        if labels.ndim != 2 or not np.issubdtype(labels.dtype, np.integer) and labels.dtype != bool:
            raise UserError(f"{name}: expected an (H, W) integer array of label ids, got {labels.dtype} of shape {labels.shape}")
        if labels.size and (labels.min() < 0 or labels.max() > 255):
            raise UserError(f"{name}: label ids must be 0..255, got {labels.min()}..{labels.max()}")
        labels = labels.astype(np.uint8)
    height, width = frame_size
    if labels.shape != (height, width):
        raise UserError(f"{name}: the mask is {labels.shape[1]}x{labels.shape[0]}, the frames {width}x{height}; "
                        f"give a mask of the frames' size")
    present = set(np.unique(labels).tolist()) - {0}
    if not present:
        raise UserError(f"{name}: the mask holds no object (every pixel is 0); label each object with an id 1..254")
    if present == {VOID_LABEL}:
        raise UserError(f"{name}: the mask holds only 255, which marks pixels to ignore (void); "
                        f"label each object with an id 1..254")
    return labels
