"""Finding videos and reading chosen frames of them: encoded files through PyAV, or folders of
frame images.

Only the frames asked for are decoded: the reader seeks to the key frame before the first wanted
frame and decodes forward, seeking again only when the next wanted frame is far ahead. Frame
indices come from presentation timestamps, so they do not depend on where a seek landed.

Every failure to read (missing, empty, truncated, not a video, too short) raises VideoError
naming the file; the pair dataset turns it into a skipped video.
"""
from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path
from typing import NamedTuple

import numpy as np

VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
LIST_EXTENSIONS = (".txt", ".list", ".lst")
# Label folders of the DAVIS / VIP layouts hold PNG label maps, not frames: never train on them.
LABEL_FOLDER_NAMES = ("Annotations",)
# Decoding forward is cheaper than a seek (which restarts at a key frame) for short distances.
SEEK_DISTANCE = 64


class VideoError(Exception):
    """A video that cannot give the frames asked for; the message names the file and why."""


class VideoSource(NamedTuple):
    path: str
    is_frame_folder: bool  # a folder of frame images rather than an encoded file


def _frame_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


def _source_for(path: Path) -> VideoSource:
    return VideoSource(str(path), path.is_dir())


def _read_list_file(list_file: Path) -> list[VideoSource]:
    """One video file or frame folder per line, relative to the list file; '#' starts a comment.
    Missing entries are kept: they are skipped with a warning when read, like any bad video."""
    sources = []
    for line in list_file.read_text(encoding="utf-8").splitlines():
        entry = line.split("#", 1)[0].strip()
        if entry:
            path = Path(entry) if os.path.isabs(entry) else list_file.parent / entry
            sources.append(_source_for(path))
    return sources


def find_videos(path: str | os.PathLike) -> list[VideoSource]:
    """Videos under `path`: a video file, a list file (.txt/.list/.lst), or a folder searched
    recursively for video files and for folders of frame images. Sorted, so runs are repeatable."""
    root = Path(path)
    if not root.exists():
        raise FileNotFoundError(f"data path {root} does not exist")
    if root.is_file():
        if root.suffix.lower() in LIST_EXTENSIONS:
            sources = _read_list_file(root)
        elif root.suffix.lower() in VIDEO_EXTENSIONS:
            sources = [VideoSource(str(root), False)]
        else:
            raise ValueError(f"data path {root}: expected a folder, a video ({', '.join(VIDEO_EXTENSIONS)}) "
                             f"or a list file ({', '.join(LIST_EXTENSIONS)})")
    else:
        sources = []
        for folder, subfolders, files in os.walk(root):
            subfolders[:] = sorted(d for d in subfolders if d not in LABEL_FOLDER_NAMES)
            sources += [VideoSource(os.path.join(folder, f), False) for f in sorted(files)
                        if Path(f).suffix.lower() in VIDEO_EXTENSIONS]
            if any(Path(f).suffix.lower() in IMAGE_EXTENSIONS for f in files):
                sources.append(VideoSource(folder, True))
    if not sources:
        raise ValueError(f"no videos or frame folders found in {root}")
    return sorted(sources)


class FrameFolder:
    """A folder of frame images, in file-name order."""

    def __init__(self, path: str):
        self.path = path
        if not os.path.isdir(path):
            raise VideoError(f"{path}: frame folder does not exist")
        self._frames = _frame_images(Path(path))
        self.num_frames = len(self._frames)

    def read(self, indices: list[int]) -> dict[int, np.ndarray]:
        """{index: (H, W, 3) uint8} for each wanted index."""
        from PIL import Image, UnidentifiedImageError

        out = {}
        for index in sorted(set(indices)):
            try:
                with Image.open(self._frames[index]) as image:
                    out[index] = np.asarray(image.convert("RGB"))
            except (OSError, UnidentifiedImageError) as error:
                raise VideoError(f"{self._frames[index]}: unreadable frame image ({error})") from None
        return out

    def close(self) -> None:
        pass


class EncodedVideo:
    """An encoded video file (first video stream), read through PyAV."""

    def __init__(self, path: str):
        import av

        self.path = path
        if not os.path.isfile(path):
            raise VideoError(f"{path}: file does not exist")
        try:
            self._container = av.open(path)
        except (av.FFmpegError, OSError) as error:
            raise VideoError(f"{path}: not a readable video ({error})") from None
        if not self._container.streams.video:
            self.close()
            raise VideoError(f"{path}: has no video stream")
        self._stream = self._container.streams.video[0]
        rate = self._stream.average_rate or self._stream.guessed_rate
        if not rate:
            self.close()
            raise VideoError(f"{path}: unknown frame rate")
        self._rate = Fraction(rate)
        self._time_base = Fraction(self._stream.time_base)
        self._start = self._stream.start_time or 0
        self.num_frames = self._count_frames()

    def _count_frames(self) -> int:
        if self._stream.frames:
            return int(self._stream.frames)  # from the container's index (mp4, mov)
        # Matroska / WebM keep no frame count: estimate from the duration, one frame short so
        # that rounding never asks for a frame past the end.
        if self._stream.duration:
            seconds = self._stream.duration * self._time_base
        elif self._container.duration:
            seconds = Fraction(self._container.duration, 1_000_000)
        else:
            return 0
        return max(0, int(seconds * self._rate) - 1)

    def _index_of(self, pts: int) -> int:
        return round((pts - self._start) * self._time_base * self._rate)

    def _seek(self, index: int):
        """Positions the demuxer at the key frame at or before frame `index`; a fresh decode iterator."""
        self._container.seek(self._start + int(index / (self._rate * self._time_base)), stream=self._stream,
                             backward=True, any_frame=False)
        return self._container.decode(self._stream)

    def read(self, indices: list[int]) -> dict[int, np.ndarray]:
        """{index: (H, W, 3) uint8 RGB} for each wanted index; VideoError if one cannot be decoded."""
        import av

        wanted = sorted(set(indices))
        wanted_set = set(wanted)
        out: dict[int, np.ndarray] = {}
        frames, position = None, None  # decode iterator and index of the last decoded frame
        try:
            for target in wanted:
                if target in out:
                    continue
                if frames is None or position is None or target - position > SEEK_DISTANCE:
                    frames, position = self._seek(target), None
                for frame in frames:
                    if frame.pts is None:
                        continue
                    position = self._index_of(frame.pts)
                    if position in wanted_set and position not in out:
                        out[position] = frame.to_ndarray(format="rgb24")
                    if position >= target:
                        break
                if target not in out:
                    last = "no frame" if position is None else f"frame {position}"
                    raise VideoError(f"{self.path}: frame {target} of {self.num_frames} could not be decoded "
                                     f"(decoding stopped at {last}; truncated?)")
        except av.FFmpegError as error:
            raise VideoError(f"{self.path}: decoding failed ({error}); truncated or corrupt") from None
        return out

    def close(self) -> None:
        self._container.close()


def open_video(source: VideoSource) -> FrameFolder | EncodedVideo:
    """A reader with `num_frames`, `read(indices)` and `close()`; VideoError if it cannot be opened."""
    return FrameFolder(source.path) if source.is_frame_folder else EncodedVideo(source.path)
