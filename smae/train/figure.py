"""The reconstruction figure saved with each checkpoint (Pillow only).

One row per pair: past frame f1 | future frame f2 with its masked patches greyed out | the
prediction | the target f2. The prediction shows the model's output on the masked patches and
the visible patches copied from f2 (the loss never asks the model to reproduce those). With
MAE's normalised-pixel target the output is per-patch standardised pixels; it is mapped back
with the mean and standard deviation of the true patch, as MAE's own visualisation does.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from smae.data.transforms import denormalize
from smae.kernels import patchify, unpatchify

from smae.atomic import atomic_path

COLUMNS = ("past f1", "masked f2", "prediction", "target f2")
MIN_PANEL = 128  # small frames are enlarged (nearest neighbour) to at least this many pixels
HEADER = 14
MASK_GREY = 0.5


@torch.no_grad()
def reconstruction_panels(model: torch.nn.Module, f1: torch.Tensor, f2: torch.Tensor,
                          generator: torch.Generator | None = None) -> torch.Tensor:
    """f1, f2 (B, 3, H, W) normalised -> (B, 4, 3, H, W) in [0, 1]: the four columns."""
    was_training = model.training
    model.eval()
    _, pred, mask = model(f1, f2, generator=generator)  # pred (B, L, p*p*3), mask (B, L)
    model.train(was_training)
    patch = model.patch_size
    grid = (f2.shape[-2] // patch, f2.shape[-1] // patch)
    target = patchify(f2.float(), patch)  # (B, L, p*p*3)
    pred = pred.float()
    if model.config.norm_pix_loss:
        mean = target.mean(dim=-1, keepdim=True)
        std = (target.var(dim=-1, keepdim=True) + 1e-6).sqrt()
        pred = pred * std + mean
    masked = mask.unsqueeze(-1).bool()  # (B, L, 1)
    prediction = unpatchify(torch.where(masked, pred, target), patch, grid)
    greyed = denormalize(unpatchify(target, patch, grid))
    greyed = torch.where(unpatchify(masked.expand_as(target).float(), patch, grid).bool(), MASK_GREY, greyed)
    columns = [denormalize(f1.float()), greyed, denormalize(prediction), denormalize(f2.float())]
    return torch.stack(columns, dim=1).clamp(0, 1).cpu()


def panels_to_image(panels: torch.Tensor) -> Image.Image:
    """(B, 4, 3, H, W) in [0, 1] -> one RGB image: a header row of column names, B rows of panels."""
    rows, cols, _, height, width = panels.shape
    zoom = max(1, -(-MIN_PANEL // min(height, width)))
    cell_h, cell_w, gap = height * zoom, width * zoom, 2
    canvas = Image.new("RGB", (cols * (cell_w + gap) + gap, HEADER + rows * (cell_h + gap) + gap), "white")
    draw = ImageDraw.Draw(canvas)
    for c, name in enumerate(COLUMNS):
        draw.text((gap + c * (cell_w + gap) + 2, 1), name, fill="black")
    pixels = (panels.permute(0, 1, 3, 4, 2).numpy() * 255).round().astype(np.uint8)  # (B, 4, H, W, 3)
    for r in range(rows):
        for c in range(cols):
            tile = Image.fromarray(pixels[r, c]).resize((cell_w, cell_h), Image.NEAREST)
            canvas.paste(tile, (gap + c * (cell_w + gap), HEADER + gap + r * (cell_h + gap)))
    return canvas


def save_reconstruction_figure(path: str | os.PathLike, model: torch.nn.Module, f1: torch.Tensor, f2: torch.Tensor,
                               generator: torch.Generator | None = None) -> Path:
    """Renders the figure for the pairs (f1, f2) and writes it as a PNG, atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image = panels_to_image(reconstruction_panels(model, f1, f2, generator))
    with atomic_path(path) as temporary:
        image.save(temporary, format="PNG")
    return path
