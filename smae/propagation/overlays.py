"""Pictures of a propagation result for people to look at: frames blended with label colours,
or with the propagated joints drawn on them (DAVIS palette colours in both cases)."""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from smae.layouts.images import DAVIS_PALETTE

BLEND = 0.5  # weight of the label colour where a label is present


def blend_labels(rgb: np.ndarray, labels: np.ndarray, palette: np.ndarray = DAVIS_PALETTE) -> np.ndarray:
    """rgb (H, W, 3) uint8, labels (h, w) ids, palette (256, 3) -> (H, W, 3) uint8: labelled
    pixels tinted with their palette colour, background untouched (labels nearest-resized to the
    frame if needed)."""
    if labels.shape != rgb.shape[:2]:
        labels = np.asarray(Image.fromarray(labels).resize((rgb.shape[1], rgb.shape[0]), Image.NEAREST))
    colours = palette[labels].astype(np.float32)
    tinted = rgb.astype(np.float32) * (1 - BLEND) + colours * BLEND
    return np.where(labels[..., None] > 0, tinted, rgb).round().astype(np.uint8)


def draw_joints(rgb: np.ndarray, joints: np.ndarray) -> np.ndarray:
    """rgb (H, W, 3) uint8, joints (J, 2) (x, y) pixels, negative = lost -> (H, W, 3) uint8."""
    image = Image.fromarray(rgb)
    draw = ImageDraw.Draw(image)
    radius = max(2, round(min(rgb.shape[:2]) / 80))
    for index, (x, y) in enumerate(joints):
        if x >= 0 and y >= 0:
            colour = tuple(int(c) for c in DAVIS_PALETTE[index + 1])
            draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=colour, outline=(255, 255, 255))
    return np.asarray(image)


def even_crop(rgb: np.ndarray) -> np.ndarray:
    """Drops a last odd row / column: H.264 in yuv420p needs even sizes."""
    return rgb[: rgb.shape[0] // 2 * 2, : rgb.shape[1] // 2 * 2]
