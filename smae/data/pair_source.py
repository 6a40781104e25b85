"""Which pair dataset a `--data` argument opens, and how its batches reach the model's device.

It sits above both dataset modules (smae.data.pairs: decoded in the loader workers;
smae.data.gpu_decode: JPEG bytes decoded on the GPU), so neither needs to know the other.
"""
from __future__ import annotations

import torch

from .gpu_decode import StoreJpegPairDataset, decode_pairs, jpeg_decode_device
from .pairs import FramePairDataset, StorePairDataset
from .store import FrameStore, is_store
from .transforms import PairAugment, normalize_uint8
from .video import find_videos


def open_pair_dataset(data: str, augment: PairAugment, gap_range: tuple[int, int], repeats: int,
                      seed: int) -> FramePairDataset:
    """The pair dataset of `--data`: a prepared store (smae prepare) or videos (a folder, a video
    file or a list file). A store's JPEGs are decoded in the workers, or with SMAE_JPEG_DECODE=cuda
    in the training process on the GPU."""
    if is_store(data):
        kind = StoreJpegPairDataset if jpeg_decode_device() == "cuda" else StorePairDataset
        return kind(FrameStore(data), augment, gap_range, repeats, seed)
    return FramePairDataset(find_videos(data), augment, gap_range, repeats, seed)


def pair_batch_to_device(batch: dict, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """f1, f2 (B*R, 3, S, S) float32 normalised on `device`: moved there (and normalised there if
    they come as uint8 pixels), or decoded there from JPEGs."""
    if "jpegs" in batch:
        return decode_pairs(batch, device)
    frames = [batch[key].to(device, non_blocking=device.type == "cuda") for key in ("f1", "f2")]
    f1, f2 = [normalize_uint8(f) if f.dtype == torch.uint8 else f for f in frames]
    return f1, f2
