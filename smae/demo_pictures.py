"""The demo's pictures: a side-by-side strip of one evaluation sequence, and the loss curve.

strip: one row per chosen frame, columns frame | ground truth | trained | random init | pixels,
each mask blended over the frame in the DAVIS palette; the header names each column and, for
the feature sources, gives their J&F on the whole set. The sequence is the set's first one
(not chosen by its scores). Frames are enlarged `ZOOM` times (nearest neighbour).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from smae.atomic import atomic_path

ZOOM = 2
GAP = 2
HEADER = 16
STRIP_FRAMES = 4
LOSS_FIGSIZE = (6.4, 4.0)  # inches at 100 dpi: a 640 x 400 PNG
LOSS_DPI = 100


def strip_frames(num_frames: int, count: int = STRIP_FRAMES) -> list[int]:
    """Up to `count` frames spread over frames 1..T-1 (frame 0 is the one given with its mask),
    the last one included."""
    return sorted({1 + round(i * (num_frames - 2) / count) for i in range(1, count + 1)})


def strip_size(height: int, width: int, rows: int, columns: int) -> tuple[int, int]:
    """(width, height) in pixels of a strip of rows x columns frames of height x width."""
    return (columns * (width * ZOOM + GAP) + GAP, HEADER + rows * (height * ZOOM + GAP) + GAP)


def _indexed(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


def save_strip(path: Path, davis_root: Path, results: dict[str, Path], scores: dict[str, dict]) -> Path:
    """Writes the strip of the set's first sequence (results: source name -> its result folder,
    holding <sequence>/<frame>.png) as a PNG, atomically."""
    from smae.propagation.overlays import blend_labels

    sequence = (davis_root / "ImageSets" / "2017" / "val.txt").read_text().split()[0]
    images = sorted((davis_root / "JPEGImages" / "480p" / sequence).glob("*.jpg"))
    annotations = davis_root / "Annotations" / "480p" / sequence
    chosen = strip_frames(len(images))
    titles = ["frame", "ground truth"] + [f"{name.replace('_', ' ')} J&F {100 * scores[name]['J&F-Mean']:.1f}"
                                          for name in results]
    first = np.asarray(Image.open(images[0]).convert("RGB"))
    height, width = first.shape[:2]
    canvas = Image.new("RGB", strip_size(height, width, len(chosen), len(titles)), "white")
    draw = ImageDraw.Draw(canvas)
    for column, title in enumerate(titles):
        draw.text((GAP + column * (width * ZOOM + GAP) + 2, 2), title, fill="black")
    for row, index in enumerate(chosen):
        rgb = np.asarray(Image.open(images[index]).convert("RGB"))
        name = images[index].stem + ".png"
        tiles = [rgb, blend_labels(rgb, _indexed(annotations / name))]
        tiles += [blend_labels(rgb, _indexed(folder / sequence / name)) for folder in results.values()]
        for column, tile in enumerate(tiles):
            enlarged = Image.fromarray(tile).resize((width * ZOOM, height * ZOOM), Image.NEAREST)
            canvas.paste(enlarged, (GAP + column * (width * ZOOM + GAP), HEADER + GAP + row * (height * ZOOM + GAP)))
    with atomic_path(path) as temporary:
        canvas.save(temporary, format="PNG")
    return path


def save_loss_curve(path: Path, metrics_path: Path) -> Path:
    """The training loss of a run (its metrics.jsonl) against the step, as a 640 x 400 PNG."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    lines = [json.loads(line) for line in metrics_path.read_text().splitlines() if line.strip()]
    figure, axes = plt.subplots(figsize=LOSS_FIGSIZE, dpi=LOSS_DPI)
    axes.plot([line["step"] for line in lines], [line["loss"] for line in lines])
    axes.set(xlabel="optimizer step", ylabel="loss (masked patches of f2)", title="pre-training loss")
    axes.grid(alpha=0.3)
    figure.tight_layout()
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", dpi=LOSS_DPI)
    plt.close(figure)
    return path
