"""The frames of one clip, read in order, whatever holds them: a video file in any container PyAV
decodes (frame i = the i-th frame a plain decode outputs, turned upright by the rotation flag,
as smae.data.encoded defines it), a folder of frame images (natural name order), a list of image
paths, a list of arrays, or a tensor.

    frames = open_frames("clip.mp4")      # or a folder, [paths], [(H, W, 3) uint8 arrays], a tensor
    frames.size                           # (H, W) of every frame
    for rgb in frames: ...                # (H, W, 3) uint8 RGB, decoded one at a time

Only one frame is decoded ahead of the caller: a 2000-frame clip never sits in memory whole.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from smae.errors import UserError
from smae.layouts.images import image_size, read_image

# Frames over Pillow's decompression-bomb limit (89.5 megapixels) are refused, whatever holds
# them: past it one batch of 8 frames takes gigabytes before resizing.
MAX_FRAME_PIXELS = 89_478_485


class FrameSequence:
    """Frames of one clip: `size` (H, W), `count` (None when the container does not say it
    reliably), `fps` (None for images), `stem(i)` (the output file name of frame i), iterable."""

    def __init__(self, where: str, size: tuple[int, int], count: int | None, fps: Fraction | None,
                 stem: Callable[[int], str], iterate: Callable[[], Iterator[np.ndarray]]):
        self.where, self.size, self.count, self.fps, self.stem = where, size, count, fps, stem
        self._iterate = iterate
        check_frame_size(size, where)

    def __iter__(self) -> Iterator[np.ndarray]:
        for index, rgb in enumerate(self._iterate()):
            if rgb.shape[:2] != self.size:
                raise UserError(f"{self.where}: frame {index} is {rgb.shape[1]}x{rgb.shape[0]}, the first "
                                f"{self.size[1]}x{self.size[0]}; every frame of a clip must have one size")
            yield rgb


def check_frame_size(size: tuple[int, int], where: str) -> None:
    height, width = size
    if height * width > MAX_FRAME_PIXELS:
        raise UserError(f"{where}: frames of {width}x{height} are over the {MAX_FRAME_PIXELS / 1e6:.0f}-megapixel "
                        f"limit; scale the clip down first (e.g. ffmpeg -vf scale=-2:1080)")
    if min(height, width) < 16:
        raise UserError(f"{where}: frames of {width}x{height} are too small to propagate; "
                        f"give frames of at least 16x16 pixels")


def from_paths(paths: Sequence[str | os.PathLike], where: str | None = None) -> FrameSequence:
    """Image files in the given order (a data set's frames)."""
    paths = [Path(p) for p in paths]
    if not paths:
        raise UserError(f"{where or 'frames'}: no frame images")
    size = image_size(paths[0], "frame")
    return FrameSequence(where or str(paths[0].parent), size, len(paths), None, lambda i: paths[i].stem,
                         lambda: (read_image(p, "frame", convert="RGB") for p in paths))


def from_folder(folder: Path) -> FrameSequence:
    from smae.data.video import frame_images

    paths = frame_images(folder)
    if not paths:
        raise UserError(f"{folder}: holds no frame images (.jpg, .jpeg, .png, .bmp, .webp)")
    return from_paths(paths, str(folder))


def from_video_file(path: Path) -> FrameSequence:
    """A video file decoded from the start; frames are named 00000, 00001, ... by decode order."""
    from smae.data.encoded import VideoError, decode_all, upright_rgb

    def iterate() -> Iterator[np.ndarray]:
        try:
            for frame in decode_all(str(path)):
                yield upright_rgb(frame)
        except VideoError as error:
            raise UserError(str(error)) from None

    first = next(iterate(), None)
    if first is None:
        raise UserError(f"{path}: no frame could be decoded; check the file plays (ffprobe {path})")
    count, fps = _stream_info(path)
    return FrameSequence(str(path), first.shape[:2], count, fps, lambda i: f"{i:05d}", iterate)


def _stream_info(path: Path) -> tuple[int | None, Fraction | None]:
    """The container's frame count and average frame rate (None where it does not say)."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate
        return (stream.frames or None), (Fraction(rate) if rate else None)


def from_arrays(frames: Sequence[np.ndarray] | torch.Tensor) -> FrameSequence:
    """(H, W, 3) uint8 arrays, or a tensor (T, 3, H, W) / (T, H, W, 3), uint8 or float in [0, 1]."""
    if isinstance(frames, torch.Tensor):
        if frames.ndim != 4 or 3 not in (frames.shape[1], frames.shape[3]):
            raise ValueError(f"frames: expected a (T, 3, H, W) or (T, H, W, 3) tensor, got shape {tuple(frames.shape)}")
        channels_first = frames.shape[1] == 3 and frames.shape[3] != 3
        frames = frames.permute(0, 2, 3, 1) if channels_first else frames
    if len(frames) == 0:
        raise ValueError("frames: empty; give at least one frame")
    first = _as_rgb(frames[0], 0)

    def iterate() -> Iterator[np.ndarray]:
        return (_as_rgb(frame, index) for index, frame in enumerate(frames))

    return FrameSequence("frames", first.shape[:2], len(frames), None, lambda i: f"{i:05d}", iterate)


def _as_rgb(frame, index: int) -> np.ndarray:
    if isinstance(frame, torch.Tensor):
        frame = frame.detach().cpu().numpy()
    frame = np.asarray(frame)
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"frames[{index}]: expected (H, W, 3) RGB, got shape {frame.shape}")
    if frame.dtype == np.uint8:
        return frame
    if np.issubdtype(frame.dtype, np.floating):
        return (np.clip(frame, 0.0, 1.0) * 255.0).round().astype(np.uint8)
    raise ValueError(f"frames[{index}]: expected uint8 or float pixels in [0, 1], got {frame.dtype}")


def open_frames(frames) -> FrameSequence:
    """A FrameSequence of a video file or frame folder path, a list of image paths, a list of
    (H, W, 3) arrays or a tensor (see from_arrays); a FrameSequence as it is."""
    from smae.data.video import VIDEO_EXTENSIONS

    if isinstance(frames, FrameSequence):
        return frames
    if isinstance(frames, (str, os.PathLike)):
        path = Path(frames)
        if path.is_dir():
            return from_folder(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such video file or frame folder")
        if path.suffix.lower() not in VIDEO_EXTENSIONS:
            raise UserError(f"{path}: not a video file this reads ({', '.join(VIDEO_EXTENSIONS)}) nor a frame folder")
        return from_video_file(path)
    if isinstance(frames, (list, tuple)) and frames and isinstance(frames[0], (str, os.PathLike)):
        return from_paths(frames)
    return from_arrays(frames)
