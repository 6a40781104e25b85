"""Store pairs decoded on the GPU (SMAE_JPEG_DECODE=cuda): loader workers only read the JPEG
bytes and draw each pair's crop and flip; the training process decodes the batch with nvJPEG
(`torchvision.io.decode_jpeg(..., device="cuda")`) and crops, resizes (antialiased bilinear),
flips and normalises on the GPU. CPU decoding tops out at a few hundred pairs per second per
core, while one H200 consumes thousands (README, "Loader rate and model step rate").

The draws are those of StorePairDataset (same generator, same order), so a key gives the same
frames, crops and flips either way; pixels differ slightly (another resizer).

The crop, flip and normalisation run on any device; the suite tests them on the CPU with a CPU
decode standing in for nvJPEG (no GPU figures for this path yet).
"""
from __future__ import annotations

import importlib.util
import os

import numpy as np
import torch
import torch.nn.functional as F

from smae.errors import UserError

from .pairs import StorePairDataset
from .store import StoreVideo
from .transforms import normalize, sample_crop_box

JPEG_DECODE_ENV = "SMAE_JPEG_DECODE"


def jpeg_decode_device() -> str:
    """"cpu" (the default: loader workers decode) or "cuda" (the training process decodes on its
    GPU), from SMAE_JPEG_DECODE; UserError if cuda is asked for and cannot run."""
    value = os.environ.get(JPEG_DECODE_ENV, "cpu")
    if value not in ("cpu", "cuda"):
        raise UserError(f"{JPEG_DECODE_ENV}={value}: expected cpu or cuda")
    if value == "cuda" and not torch.cuda.is_available():
        raise UserError(f"{JPEG_DECODE_ENV}=cuda: no CUDA device here; unset it to decode on the CPU")
    if value == "cuda" and importlib.util.find_spec("torchvision") is None:
        raise UserError(f"{JPEG_DECODE_ENV}=cuda: needs torchvision (nvJPEG); install the build matching torch, "
                        "or unset it")
    return value


class StoreJpegPairDataset(StorePairDataset):
    """Items: {"jpegs": [f1, f2 of pair 0, f1, f2 of pair 1, ...] (1-D uint8 tensors), "boxes":
    (R, 4) int64 (top, left, height, width), "flips": (R,) bool, "frames": (R, 2), "size": S}."""

    def read_pairs(self, source: StoreVideo, rng: np.random.Generator) -> dict:
        pairs = self.sample_pairs(source.path, self.store.num_frames(source.row), rng)
        height, width = self.store.frame_size(source.row)
        jpegs, boxes, flips = [], [], []
        try:
            for i1, i2 in pairs:
                boxes.append(sample_crop_box(rng, height, width, self.augment.scale, self.augment.ratio))
                flips.append(bool(rng.random() < self.augment.flip_prob))
                jpegs += [torch.frombuffer(bytearray(self.store.jpeg(source.row, i)), dtype=torch.uint8) for i in (i1, i2)]
        except OSError as error:
            from .video import VideoError

            raise VideoError(f"{source.path} in the store {self.store.root}: {error}") from None
        return {"jpegs": jpegs, "boxes": torch.tensor(boxes, dtype=torch.int64), "flips": torch.tensor(flips),
                "frames": torch.tensor(pairs, dtype=torch.int64), "size": self.augment.size}


def crop_flip_normalize(images: list[torch.Tensor], boxes: torch.Tensor, flips: torch.Tensor, size: int) -> torch.Tensor:
    """images: N (3, H, W) uint8 (any device); boxes (N, 4) (top, left, height, width); flips (N,)
    -> (N, 3, size, size) float32 normalised, on the images' device."""
    out = torch.empty(len(images), 3, size, size, device=images[0].device)
    for k, (image, (top, left, height, width)) in enumerate(zip(images, boxes.tolist())):
        crop = image[None, :, top:top + height, left:left + width].float()
        out[k] = F.interpolate(crop, size=(size, size), mode="bilinear", align_corners=False, antialias=True)[0]
    flips = flips.to(out.device)
    out[flips] = out[flips].flip(-1)
    return normalize(out.div_(255).clamp_(0, 1))


def decode_pairs(batch: dict, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """A collated batch of StoreJpegPairDataset items -> f1, f2 (B*R, 3, S, S) on `device`."""
    from torchvision.io import decode_jpeg

    images = decode_jpeg(batch["jpegs"], device=device)  # [f1, f2, f1, f2, ...] (3, H, W) uint8
    both = crop_flip_normalize(images, batch["boxes"].repeat_interleave(2, dim=0),
                               batch["flips"].repeat_interleave(2, dim=0), batch["size"])
    return both[0::2], both[1::2]
