"""YouTube-VOS (2018 / 2019; MOSE and LVOS use the same layout): objects that enter later.

    JPEGImages/<video>/<frame>.jpg
    Annotations/<video>/<frame>.png    indexed PNG only for the frames where some object first
                                       appears, holding those objects (ids need not be
                                       consecutive; the first frame may hold none)
    meta.json (optional)               {"videos": {"<video>": {"objects": {"<id>": {"category": ..,
                                       "frames": [..]}}}}}
The validation JPEGImages are every 5th frame; `valid_all_frames` holds all of them.
Results, as the evaluation server takes them (zipped): OUT/Annotations/<video>/<frame>.png, one
per frame of JPEGImages/<video>/.

smae synth also writes GroundTruth/<video>/<frame>.png: every frame's objects from the frame they
are given on (what the server keeps), so `smae evaluate --gt GroundTruth --results OUT/Annotations
--semantics vos-benchmark` scores synthetic runs locally.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from smae.errors import UserError

from .images import annotation_pngs, write_indexed_png, write_jpeg

NAME = "YouTube-VOS"
META = "meta.json"
RESULTS = "Annotations"  # the results folder inside OUT, as the server's zip holds it
GROUND_TRUTH = "GroundTruth"


def looks_like(root: Path) -> bool:
    return (root / META).is_file() or ((root / "JPEGImages").is_dir() and (root / "Annotations").is_dir()
                                       and not (root / "JPEGImages" / "480p").is_dir())


def videos(root: str | os.PathLike) -> list[str]:
    """The videos of meta.json (in its order), else the sub-folders of Annotations/, by name."""
    root = Path(root)
    meta = root / META
    if meta.is_file():
        try:
            return list(json.loads(meta.read_text())["videos"])
        except (ValueError, KeyError, TypeError) as error:
            raise UserError(f"{meta}: not a YouTube-VOS meta.json ({type(error).__name__}: {error}); "
                            f"expected {{\"videos\": {{\"<video>\": ...}}}}") from None
    folder = root / "Annotations"
    if not folder.is_dir():
        raise FileNotFoundError(f"no {folder} (YouTube-VOS: Annotations/<video>/<frame>.png)")
    return sorted(entry.name for entry in folder.iterdir() if entry.is_dir())


def frames_folder(root: str | os.PathLike, video: str) -> Path:
    return Path(root) / "JPEGImages" / video


def annotation_paths(root: str | os.PathLike, video: str) -> list[Path]:
    """The given masks of one video, in frame order (at least one)."""
    folder = Path(root) / "Annotations" / video
    return annotation_pngs(folder)


class YoutubeVosLayout:
    """Writes a YouTube-VOS folder under `root` (smae synth): frames, first masks, meta.json and
    the full ground truth."""

    def __init__(self, root: Path):
        self.root = root
        self.meta: dict[str, dict] = {}

    def write_video(self, video: str, frames: list[np.ndarray], truth: list[np.ndarray]) -> None:
        """frames: (H, W, 3) uint8 each; truth: (H, W) uint8 object ids per frame, each object
        present from the frame it is given on. The annotation of a frame holds the objects that
        first appear there."""
        images, given, full = (self.root / kind / video for kind in ("JPEGImages", "Annotations", GROUND_TRUTH))
        for folder in (images, given, full):
            folder.mkdir(parents=True, exist_ok=True)
        seen: dict[int, list[str]] = {}
        for index, (rgb, labels) in enumerate(zip(frames, truth)):
            stem = f"{index:05d}"
            write_jpeg(images / f"{stem}.jpg", rgb)
            write_indexed_png(full / f"{stem}.png", labels)
            present = [int(i) for i in np.unique(labels) if i != 0]
            new = [i for i in present if i not in seen]
            if new:
                write_indexed_png(given / f"{stem}.png", np.where(np.isin(labels, new), labels, 0).astype(np.uint8))
            for object_id in present:
                seen.setdefault(object_id, []).append(stem)
        self.meta[video] = {"objects": {str(i): {"category": "synthetic", "frames": stems} for i, stems in seen.items()}}

    def write_meta(self) -> None:
        (self.root / META).write_text(json.dumps({"videos": self.meta}, indent=1) + "\n")
