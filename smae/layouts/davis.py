"""DAVIS-2017 (davis2017-evaluation, CRW, DINO):

    JPEGImages/480p/<seq>/00000.jpg
    Annotations/480p/<seq>/00000.png   indexed ("P") PNG, DAVIS palette, 0 = background,
                                       1..n = objects (all present in frame 0), 255 = void
    ImageSets/2017/<split>.txt         one sequence name per line
The folder is named 480p whatever the frame size, as loaders expect. Results mirror the
annotations: OUT/<seq>/<frame>.png.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .images import annotation_pngs, read_name_list, write_indexed_png, write_jpeg, write_lines

NAME = "DAVIS-2017"
RESOLUTION = "480p"


def looks_like(root: Path) -> bool:
    return (root / "JPEGImages" / RESOLUTION).is_dir() or (root / "ImageSets" / "2017").is_dir()


def sequences(root: str | os.PathLike, split: str) -> list[str]:
    """Sequence names of a DAVIS-2017 split, in list-file order."""
    return read_name_list(Path(root) / "ImageSets" / "2017" / f"{split}.txt")


def frames_folder(root: str | os.PathLike, sequence: str) -> Path:
    return Path(root) / "JPEGImages" / RESOLUTION / sequence


def annotation_paths(root: str | os.PathLike, sequence: str) -> list[Path]:
    """Sorted annotation PNGs of one sequence (every frame of a train/val sequence is annotated)."""
    folder = Path(root) / "Annotations" / RESOLUTION / sequence
    return annotation_pngs(folder)


class DavisLayout:
    """Writes a DAVIS-2017 folder under `root` (smae synth)."""

    def __init__(self, root: Path):
        self.root = root

    def write_frame(self, sequence: str, index: int, rgb: np.ndarray, labels: np.ndarray) -> None:
        for kind in ("JPEGImages", "Annotations"):
            (self.root / kind / RESOLUTION / sequence).mkdir(parents=True, exist_ok=True)
        write_jpeg(self.root / "JPEGImages" / RESOLUTION / sequence / f"{index:05d}.jpg", rgb)
        write_indexed_png(self.root / "Annotations" / RESOLUTION / sequence / f"{index:05d}.png", labels)

    def write_lists(self, sequences: list[str]) -> None:
        # Every synthetic sequence is for evaluation; train.txt exists (loaders open it) but
        # is empty: pre-training uses the mp4 videos, never these sequences.
        write_lines(self.root / "ImageSets" / "2017" / "val.txt", sequences)
        write_lines(self.root / "ImageSets" / "2017" / "train.txt", [])
