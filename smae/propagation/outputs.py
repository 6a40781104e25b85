"""Writing one video's results so that readers never see half of it.

Everything of a video is first written into a private staging folder under OUT/.partial/,
then moved into place with os.replace (same file system, so each move is atomic):
    segmentation  OUT/<video>/<frame>.png      indexed PNGs (DAVIS palette) at annotation size
    pose          OUT/<action>/<video>.npy      (T, 15, 2) float64 joints (x, y) in frame pixels, -1 = lost
    overlays      OUT/overlays/<video>/<frame>.jpg and OUT/overlays/<video>/overlay.mp4 (H.264)
The result is moved last, so its presence means the video is complete (what --resume checks).
A crash leaves only the staging folder, which the next run removes.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterable

import numpy as np
from PIL import Image

from smae.data.layouts import write_indexed_png, write_mp4

from .engine import FramePrediction
from .overlays import blend_labels, draw_joints, even_crop
from .videos import Video, frame_size

STAGING = ".partial"
OVERLAYS = "overlays"


def result_path(out_dir: Path, video: Video) -> Path:
    """Where a finished video's result lives (a folder of PNGs, or a .npy of joints)."""
    return out_dir / (video.name if video.kind == "segmentation" else f"{video.name}.npy")


def is_done(out_dir: Path, video: Video) -> bool:
    return result_path(out_dir, video).exists()


def clear_staging(out_dir: Path) -> None:
    """Removes what crashed runs left in OUT/.partial (call before any worker starts)."""
    shutil.rmtree(out_dir / STAGING, ignore_errors=True)


def _replace(source: Path, target: Path, trash: Path) -> None:
    """os.replace that also replaces an existing folder (moved aside first, then deleted)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_dir():
        retired = trash / "retired"
        os.replace(target, retired)
        os.replace(source, target)
        shutil.rmtree(retired)
    else:
        os.replace(source, target)


class VideoOutput:
    """Use as `with VideoOutput(out_dir, video, overlays) as output: output.write_all(predictions)`."""

    def __init__(self, out_dir: Path, video: Video, overlays: bool):
        self.out_dir, self.video, self.overlays = Path(out_dir), video, overlays
        (self.out_dir / STAGING).mkdir(parents=True, exist_ok=True)
        self.staging = Path(tempfile.mkdtemp(dir=self.out_dir / STAGING, prefix=video.name.replace("/", "__") + "."))
        self.result_dir = self.staging / "result"
        self.overlay_dir = self.staging / OVERLAYS
        self.result_dir.mkdir()
        if overlays:
            self.overlay_dir.mkdir()
        self.joints: list[np.ndarray] = []

    def __enter__(self) -> "VideoOutput":
        return self

    def __exit__(self, kind, error, trace) -> None:
        try:
            if kind is None:
                self._commit()
        finally:
            shutil.rmtree(self.staging, ignore_errors=True)

    def write_all(self, predictions: Iterable[FramePrediction]) -> None:
        """Saves each frame's result (and overlay) as it arrives."""
        pictures = map(self._save, predictions)
        if not self.overlays:
            for _ in pictures:
                pass
            return
        height, width = frame_size(self.video.frames[0])
        write_mp4(self.overlay_dir / "overlay.mp4", (even_crop(picture) for picture in pictures), height // 2 * 2, width // 2 * 2)

    def _save(self, prediction: FramePrediction) -> np.ndarray | None:
        stem = self.video.frames[prediction.index].stem
        if prediction.labels is not None:
            write_indexed_png(self.result_dir / f"{stem}.png", prediction.labels)
        else:
            self.joints.append(prediction.joints)
        if not self.overlays:
            return None
        if prediction.labels is not None:
            picture = blend_labels(prediction.original, prediction.labels)
        else:
            picture = draw_joints(prediction.original, prediction.joints)
        Image.fromarray(picture).save(self.overlay_dir / f"{stem}.jpg", quality=90)
        return picture

    def _commit(self) -> None:
        if self.overlays:
            _replace(self.overlay_dir, self.out_dir / OVERLAYS / self.video.name, self.staging)
        target = result_path(self.out_dir, self.video)
        if self.video.kind == "segmentation":
            _replace(self.result_dir, target, self.staging)
        else:
            staged = self.staging / "joints.npy"
            np.save(staged, np.stack(self.joints))
            _replace(staged, target, self.staging)
