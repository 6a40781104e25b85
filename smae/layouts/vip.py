"""VIP (VIP_Fine, as CRW / UVC / mmaction read it):

    Images/<video>/000000000001.jpg                     12-digit 1-based frame numbers
    Annotations/Category_ids/<video>/000000000001.png   "L" PNG, class ids 0..19
    lists/<split>_videos.txt                            one video name per line
Results: OUT/<video>/<frame>.png, grey PNGs of class ids.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from .images import annotation_pngs, read_name_list, write_jpeg, write_lines

NAME = "VIP"
ANNOTATIONS = Path("Annotations") / "Category_ids"
NUM_CLASSES = 20


def looks_like(root: Path) -> bool:
    return (root / ANNOTATIONS).is_dir() or (root / "lists").is_dir()


def videos(root: str | os.PathLike, split: str) -> list[str]:
    """Video names of a VIP split, in list-file order."""
    return read_name_list(Path(root) / "lists" / f"{split}_videos.txt")


def frames_folder(root: str | os.PathLike, video: str) -> Path:
    return Path(root) / "Images" / video


def annotation_paths(root: str | os.PathLike, video: str) -> list[Path]:
    """Sorted category-id PNGs of one VIP video."""
    folder = Path(root) / ANNOTATIONS / video
    return annotation_pngs(folder)


class VipLayout:
    """Writes a VIP folder under `root` (smae synth)."""

    def __init__(self, root: Path):
        self.root = root

    def write_frame(self, video: str, index: int, rgb: np.ndarray, classes: np.ndarray) -> None:
        if classes.max(initial=0) >= NUM_CLASSES:
            raise ValueError(f"VIP class ids must be < {NUM_CLASSES}, got {classes.max()}")
        images = frames_folder(self.root, video)
        annotations = self.root / ANNOTATIONS / video
        images.mkdir(parents=True, exist_ok=True)
        annotations.mkdir(parents=True, exist_ok=True)
        write_jpeg(images / f"{index + 1:012d}.jpg", rgb)
        Image.fromarray(classes).save(annotations / f"{index + 1:012d}.png")

    def write_lists(self, videos: list[str]) -> None:
        write_lines(self.root / "lists" / "val_videos.txt", videos)
