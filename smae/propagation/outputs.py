"""Writing one video's results so that readers never see half of it.

Everything of a video is first written into a private staging folder under OUT/.partial/,
then moved into place with os.replace (same file system, so each move is atomic):
    segmentation  OUT/<video>/<frame>.png      label ids at annotation size, in the annotations'
                  own format: indexed PNGs (DAVIS palette) for indexed annotations (DAVIS), grey
                  PNGs of ids for grey ones (VIP's Category_ids), which CRW's eval_vip.py reads
                  with cv2.imread as the ids themselves (a palette PNG reads as colours there)
    pose          OUT/<action>/<video>.npy      (T, 15, 2) float64 joints (x, y) in frame pixels, -1 = lost
                  OUT/eval_pck/<i>.dat          the same joints as CRW's test.py dumps them for its
                  eval_pck.py: (2, 15, T) (x, y) in feature cells, i = the video's line in the
                  split list (an .npy file: np.load reads it, with or without allow_pickle)
    YouTube-VOS   OUT/Annotations/<video>/<frame>.png, indexed PNGs with the given masks' palette
                  (the layout the evaluation server takes, zipped)
    one clip      OUT/<clip>/<frame>.png, indexed PNGs with the given mask's palette (DAVIS's for
                  a grey mask)
    overlays      OUT/overlays/<video>/<frame>.jpg and OUT/overlays/<video>/overlay.mp4 (H.264,
                  at the clip's frame rate where it has one, else 30 fps)
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

from smae.layouts.images import DAVIS_PALETTE, read_palette, write_indexed_png
from smae.layouts.mp4 import MP4_FPS, write_mp4
from smae.layouts.youtube_vos import RESULTS as VOS_RESULTS

from .engine import FramePrediction
from .overlays import blend_labels, draw_joints, even_crop
from .videos import Video

STAGING = ".partial"
OVERLAYS = "overlays"
CRW_PCK = "eval_pck"


def result_path(out_dir: Path, video: Video, task: str) -> Path:
    """Where a finished video's result lives (a folder of PNGs, or a .npy of joints)."""
    if video.kind == "pose":
        return out_dir / f"{video.name}.npy"
    return out_dir / VOS_RESULTS / video.name if task == "vos" else out_dir / video.name


def is_done(out_dir: Path, video: Video, task: str) -> bool:
    return result_path(out_dir, video, task).exists()


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
    """Use as `with VideoOutput(out_dir, video, task, overlays, list_index) as output: output.write_all(predictions)`.

    task: 'davis', 'jhmdb', 'vip', 'vos' or 'clip' (where the result goes); list_index: the
    video's position in its split list (names CRW's OUT/eval_pck/<i>.dat); fps: of the overlay
    video."""

    def __init__(self, out_dir: Path, video: Video, task: str, overlays: bool, list_index: int = 0, fps=MP4_FPS):
        self.out_dir, self.video, self.overlays, self.list_index = Path(out_dir), video, overlays, list_index
        self.target, self.fps = result_path(self.out_dir, video, task), fps
        self.joints: list[np.ndarray] = []
        self.joint_cells: list[np.ndarray] = []
        self.grey_ids = video.kind == "segmentation" and _is_grey(video.annotation)
        self.palette = read_palette(video.annotation) if video.kind == "segmentation" and not self.grey_ids else None

    def __enter__(self) -> "VideoOutput":
        # The staging folder is made here, after every read, so that an interrupt (Ctrl-C) can
        # only come while __exit__ is sure to remove it.
        (self.out_dir / STAGING).mkdir(parents=True, exist_ok=True)
        self.staging = Path(tempfile.mkdtemp(dir=self.out_dir / STAGING, prefix=self.video.name.replace("/", "__") + "."))
        self.result_dir = self.staging / "result"
        self.overlay_dir = self.staging / OVERLAYS
        try:
            self.result_dir.mkdir()
            if self.overlays:
                self.overlay_dir.mkdir()
        except BaseException:
            shutil.rmtree(self.staging, ignore_errors=True)
            raise
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
        first = next(pictures, None)
        if first is not None:
            height, width = even_crop(first).shape[:2]
            write_mp4(self.overlay_dir / "overlay.mp4", _chain(first, pictures), height, width, self.fps)

    def _save(self, prediction: FramePrediction) -> np.ndarray | None:
        stem = prediction.stem
        if prediction.labels is None:
            self.joints.append(prediction.joints)
            self.joint_cells.append(prediction.joint_cells)
        elif self.grey_ids:
            Image.fromarray(np.ascontiguousarray(prediction.labels, np.uint8), mode="L").save(self.result_dir / f"{stem}.png")
        else:
            write_indexed_png(self.result_dir / f"{stem}.png", prediction.labels, self.palette)
        if not self.overlays:
            return None
        if prediction.labels is not None:
            picture = blend_labels(prediction.original, prediction.labels, DAVIS_PALETTE if self.palette is None else self.palette)
        else:
            picture = draw_joints(prediction.original, prediction.joints)
        Image.fromarray(picture).save(self.overlay_dir / f"{stem}.jpg", quality=90)
        return picture

    def _commit(self) -> None:
        if self.overlays:
            _replace(self.overlay_dir, self.out_dir / OVERLAYS / self.video.name, self.staging)
        target = self.target
        if self.video.kind == "segmentation":
            _replace(self.result_dir, target, self.staging)
        else:
            crw_dump = self.staging / "crw.npy"
            # float32, as CRW computes them: eval_pck.py rescales in the array's own precision.
            np.save(crw_dump, np.stack(self.joint_cells, axis=-1).transpose(1, 0, 2).astype(np.float32))  # (J, 2, T) -> (2, J, T)
            _replace(crw_dump, self.out_dir / CRW_PCK / f"{self.list_index}.dat", self.staging)
            staged = self.staging / "joints.npy"
            np.save(staged, np.stack(self.joints))
            _replace(staged, target, self.staging)


def _chain(first: np.ndarray, rest) -> Iterable[np.ndarray]:
    """Overlay pictures cropped to even sizes (H.264 yuv420p), the first one included."""
    yield even_crop(first)
    for picture in rest:
        yield even_crop(picture)


def _is_grey(annotation: Path) -> bool:
    with Image.open(annotation) as image:
        return image.mode == "L"
