"""The videos of an evaluation set, and their frames streamed one batch at a time.

Folder layouts are read with smae.layouts (DAVIS-2017, JHMDB and VIP as ajabri/videowalk uses
them; YouTube-VOS). Frames are decoded on a background thread one batch ahead and resized there
with cv2.resize (INTER_LINEAR), as the protocols' origins do: on float32 pixels in [0, 1] (CRW,
CropMAE) or on the uint8 image (DINO), see Protocol.frame_dtype. They are normalised on the
target device, so a video never has more than two batches of frames in memory.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Iterator, Literal

import cv2
import numpy as np
import torch

from smae.errors import UserError
from smae.layouts import davis, jhmdb, vip, youtube_vos
from smae.layouts.detect import other_layout
from smae.layouts.images import image_size, read_label_png

from .frames import FrameSequence, from_paths
from .protocols import Protocol, input_size


@dataclass(frozen=True)
class Video:
    name: str  # output name under the results folder ("<seq>", or "<action>/<video>" for JHMDB)
    frames: tuple[Path, ...]  # frame images in temporal order
    kind: Literal["segmentation", "pose"]
    annotation: Path  # segmentation: the first given label PNG; pose: the video's joint_positions.mat
    # segmentation: (frame index, label PNG) of every given mask, the first one (`annotation`)
    # first; more than one where objects enter later (YouTube-VOS)
    masks: tuple[tuple[int, Path], ...] = ()

    def given_masks(self) -> tuple[tuple[int, Path], ...]:
        return self.masks or ((0, self.annotation),)


@dataclass
class FrameBatch:
    pixels: torch.Tensor  # (B, 3, H, W) float32, resized and normalised, on the requested device
    originals: np.ndarray  # (B, H0, W0, 3) uint8 RGB at the file's resolution
    start: int  # index of the batch's first frame in the video


def _frame_order(path: Path) -> tuple:
    """Numeric frame names sort by number (JHMDB's 1.png ... 10.png), others by name."""
    return (0, int(path.stem), "") if path.stem.isdigit() else (1, 0, path.stem)


def frame_paths(folder: Path, suffix: str) -> tuple[Path, ...]:
    paths = sorted(folder.glob(f"*{suffix}"), key=_frame_order)
    if not paths:
        raise FileNotFoundError(f"no {suffix} frames in {folder}")
    return tuple(paths)


def list_videos(task: str, root: str | os.PathLike, split: str = "val") -> list[Video]:
    """The videos of `task` ('davis', 'jhmdb', 'vip', 'vos') under `root`, in list-file order
    (vos: meta.json's order, else by name). A folder of another layout is named in the error."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"data root {root} does not exist")
    try:
        return _list_videos(task, root, split)
    except FileNotFoundError as error:
        hint = other_layout(root, task)
        if hint is None:
            raise
        raise FileNotFoundError(f"{error}; {hint}") from None


def _list_videos(task: str, root: Path, split: str) -> list[Video]:
    if task == "davis":
        return [_segmentation_video(seq, davis.frames_folder(root, seq), ".jpg", davis.annotation_paths(root, seq)[0])
                for seq in davis.sequences(root, split)]
    if task == "vip":
        return [_segmentation_video(video, vip.frames_folder(root, video), ".jpg", vip.annotation_paths(root, video)[0])
                for video in vip.videos(root, split)]
    if task == "jhmdb":
        return [Video(jhmdb.video_key(folder), frame_paths(folder, ".png"), "pose", mat)
                for folder, mat in jhmdb.videos(root, split)]
    if task == "vos":
        return [_vos_video(root, video) for video in youtube_vos.videos(root)]
    raise ValueError(f"unknown task {task!r}; choose from davis, jhmdb, vip, vos")


def _segmentation_video(name: str, folder: Path, suffix: str, first_annotation: Path) -> Video:
    frames = frame_paths(folder, suffix)
    if first_annotation.stem != frames[0].stem:
        raise ValueError(f"{name}: the first annotation {first_annotation} does not belong to the first frame {frames[0]}")
    return Video(name, frames, "segmentation", first_annotation)


def _vos_video(root: Path, name: str) -> Video:
    """Every annotation PNG of a YouTube-VOS video is a given mask at the frame of its name."""
    frames = frame_paths(youtube_vos.frames_folder(root, name), ".jpg")
    position = {frame.stem: index for index, frame in enumerate(frames)}
    masks = []
    for path in youtube_vos.annotation_paths(root, name):
        if path.stem not in position:
            raise UserError(f"{path}: no frame {path.stem}.jpg in {youtube_vos.frames_folder(root, name)} for this mask")
        masks.append((position[path.stem], path))
    return Video(name, frames, "segmentation", masks[0][1], tuple(masks))


def frame_size(path: Path) -> tuple[int, int]:
    """(H, W) of an image, read from its header only."""
    return image_size(path, "frame")


def check_video_files(video: Video) -> None:
    """Reads the header of every frame and the whole given annotations (or joint file), so a
    missing, foreign or broken file, or frames of mixed sizes, fail before any work, naming the
    file. (A JPEG truncated after its header is found when it is decoded.)"""
    height, width = frame_size(video.frames[0])
    for path in video.frames[1:]:
        if frame_size(path) != (height, width):
            raise UserError(f"{path}: frame size {frame_size(path)} differs from the video's first frame "
                            f"{(height, width)}; resize the video's frames to one size")
    if video.kind == "segmentation":
        for _, path in video.given_masks():
            read_label_png(path)
    else:
        jhmdb.read_joints(video.annotation)


def iter_frame_batches(
    frames: FrameSequence | tuple[Path, ...], protocol: Protocol, stride: int, batch_size: int, device: torch.device
) -> Iterator[FrameBatch]:
    """Decodes, resizes and normalises `frames` in batches of `batch_size`, one batch ahead."""
    if batch_size < 1:
        raise ValueError(f"batch size must be >= 1, got {batch_size}")
    if not isinstance(frames, FrameSequence):
        frames = from_paths(frames)
    size = input_size(protocol, *frames.size, stride)
    mean = torch.tensor(protocol.mean, device=device).view(1, 3, 1, 1)
    std = torch.tensor(protocol.std, device=device).view(1, 3, 1, 1)
    stream = iter(frames)

    def decode() -> tuple[np.ndarray, np.ndarray] | None:
        images = list(islice(stream, batch_size))
        if not images:
            return None
        return np.stack(images), np.stack([resize_frame(image, size, protocol.frame_dtype) for image in images])

    start = 0
    with ThreadPoolExecutor(max_workers=1) as pool:  # one thread: the stream is read in order
        pending = pool.submit(decode)
        while (decoded := pending.result()) is not None:
            pending = pool.submit(decode)
            originals, resized = decoded
            pixels = torch.from_numpy(resized).to(device).permute(0, 3, 1, 2)  # (B, 3, H, W)
            yield FrameBatch((pixels - mean) / std, originals, start)
            start += len(originals)


def resize_frame(image: np.ndarray, size: tuple[int, int], dtype: str) -> np.ndarray:
    """(H0, W0, 3) uint8 -> (H, W, 3) float32 in [0, 1], cv2 bilinear on float32 (CRW) or uint8 (DINO)."""
    dsize = (size[1], size[0])
    if dtype == "uint8":
        small = image if image.shape[:2] == tuple(size) else cv2.resize(image, dsize, interpolation=cv2.INTER_LINEAR)
        return small.astype(np.float32) / 255.0
    if dtype != "float32":
        raise ValueError(f"unknown frame dtype {dtype!r}; choose from float32, uint8")
    pixels = image.astype(np.float32) / 255.0
    return pixels if image.shape[:2] == tuple(size) else cv2.resize(pixels, dsize, interpolation=cv2.INTER_LINEAR)
