"""The augmentation of SiamMAE, written out (there is no torchvision here): one random resized
crop and one horizontal flip, drawn once per pair and applied identically to both frames, then
ImageNet normalisation.

Random resized crop (the usual Inception-style rule): draw a target area fraction s ~ U(scale)
and a log-uniform aspect ratio r in `ratio`; the box is w = round(sqrt(s*H*W*r)),
h = round(sqrt(s*H*W/r)); if it fits, its corner is uniform; after `attempts` misses, the
largest centred box whose ratio is clamped into `ratio` is used.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class CropBox(NamedTuple):
    top: int
    left: int
    height: int
    width: int


def sample_crop_box(rng: np.random.Generator, height: int, width: int, scale: tuple[float, float],
                    ratio: tuple[float, float], attempts: int = 10) -> CropBox:
    """A random crop of an (height, width) image: area fraction in `scale`, width/height in `ratio`."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(attempts):
        target_area = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(*log_ratio))
        box_w = int(round(math.sqrt(target_area * aspect)))
        box_h = int(round(math.sqrt(target_area / aspect)))
        if 0 < box_w <= width and 0 < box_h <= height:
            top = int(rng.integers(0, height - box_h + 1))
            left = int(rng.integers(0, width - box_w + 1))
            return CropBox(top, left, box_h, box_w)
    # Fallback: the whole image, trimmed to the nearest allowed aspect ratio, centred.
    aspect = width / height
    if aspect < ratio[0]:
        box_w, box_h = width, int(round(width / ratio[0]))
    elif aspect > ratio[1]:
        box_w, box_h = int(round(height * ratio[1])), height
    else:
        box_w, box_h = width, height
    return CropBox((height - box_h) // 2, (width - box_w) // 2, box_h, box_w)


def normalize(images: torch.Tensor) -> torch.Tensor:
    """(..., 3, H, W) in [0, 1] -> ImageNet-normalised."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=images.dtype, device=images.device).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=images.dtype, device=images.device).view(3, 1, 1)
    return (images - mean) / std


def denormalize(images: torch.Tensor) -> torch.Tensor:
    """Inverse of `normalize`: (..., 3, H, W) -> [0, 1] (not clamped)."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=images.dtype, device=images.device).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=images.dtype, device=images.device).view(3, 1, 1)
    return images * std + mean


@dataclass(frozen=True)
class PairAugment:
    """Shared crop + flip + normalisation for the frames of one pair (or any group of frames)."""

    size: int  # output side in pixels (the model's img_size)
    scale: tuple[float, float] = (0.5, 1.0)  # crop area as a fraction of the frame
    ratio: tuple[float, float] = (3 / 4, 4 / 3)  # crop width / height
    flip_prob: float = 0.5  # probability of one horizontal flip for the whole group

    def __call__(self, frames: list[np.ndarray], rng: np.random.Generator) -> torch.Tensor:
        """frames: same-size (H, W, 3) uint8 arrays -> (N, 3, size, size) float32, normalised."""
        shapes = {frame.shape for frame in frames}
        if len(shapes) != 1 or len(frames[0].shape) != 3 or frames[0].shape[2] != 3:
            raise ValueError(f"expected same-size (H, W, 3) frames, got shapes {sorted(shapes)}")
        height, width = frames[0].shape[:2]
        box = sample_crop_box(rng, height, width, self.scale, self.ratio)
        flip = bool(rng.random() < self.flip_prob)
        crops = np.stack([f[box.top:box.top + box.height, box.left:box.left + box.width] for f in frames])
        images = torch.from_numpy(crops).permute(0, 3, 1, 2).float().div_(255)  # (N, 3, h, w)
        # Antialiasing matters when a large crop shrinks a lot (e.g. 480p -> 64 px).
        images = F.interpolate(images, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=True)
        if flip:
            images = images.flip(-1)
        return normalize(images.clamp_(0, 1))


def jpeg_scale(box: CropBox, size: int) -> int:
    """The largest JPEG decode scale 1/k (k in 1, 2, 4, 8: what libjpeg decodes at for free) that
    leaves the crop at least `size` pixels on each side, so no detail the output keeps is lost."""
    scale = 1
    while scale < 8 and min(box.height, box.width) >= 2 * scale * size:
        scale *= 2
    return scale


def crop_jpegs(jpegs: list[bytes], augment: PairAugment, rng: np.random.Generator) -> np.ndarray:
    """PairAugment's crop and flip on same-size JPEG frames, decoding only what the crop needs:
    the same random draws (so the same crop and flip for a given generator), Pillow's draft mode
    to decode at a reduced scale, the crop resized in Pillow (antialiased bilinear) on uint8.
    -> (N, size, size, 3) uint8; normalize_uint8 finishes the job (on the CPU or a GPU)."""
    import io

    from PIL import Image

    images = [Image.open(io.BytesIO(data)) for data in jpegs]
    sizes = {image.size for image in images}
    if len(sizes) != 1:
        raise ValueError(f"expected same-size frames, got (width, height) {sorted(sizes)}")
    width, height = images[0].size
    box = sample_crop_box(rng, height, width, augment.scale, augment.ratio)
    flip = bool(rng.random() < augment.flip_prob)
    scale = jpeg_scale(box, augment.size)
    crops = np.empty((len(images), augment.size, augment.size, 3), np.uint8)
    for image, out in zip(images, crops):
        if scale > 1:
            image.draft("RGB", (-(-width // scale), -(-height // scale)))
        if image.mode != "RGB":
            image = image.convert("RGB")
        sx, sy = image.size[0] / width, image.size[1] / height  # the scale draft chose
        region = (box.left * sx, box.top * sy, (box.left + box.width) * sx, (box.top + box.height) * sy)
        crop = image.resize((augment.size, augment.size), Image.BILINEAR, box=region)
        out[:] = np.asarray(crop.transpose(Image.FLIP_LEFT_RIGHT) if flip else crop)
    return crops


# normalize(x / 255) = x * _PIXEL_SCALE - _PIXEL_SHIFT, per channel: two passes over the floats.
_PIXEL_SCALE = (1 / (255 * torch.tensor(IMAGENET_STD))).view(3, 1, 1)
_PIXEL_SHIFT = (torch.tensor(IMAGENET_MEAN) / torch.tensor(IMAGENET_STD)).view(3, 1, 1)


def normalize_uint8(pixels: torch.Tensor) -> torch.Tensor:
    """(..., 3, H, W) uint8 -> ImageNet-normalised float32 (= normalize(pixels / 255))."""
    return pixels.float().mul_(_PIXEL_SCALE.to(pixels.device)).sub_(_PIXEL_SHIFT.to(pixels.device))
