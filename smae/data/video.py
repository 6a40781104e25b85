"""Finding videos and reading chosen frames of them: encoded files (exact frame indexing through
PyAV, in smae.data.encoded), or folders of frame images in natural order (frame_2 before
frame_10).

Every failure to read (missing, empty, truncated, not a video, an unreadable or oversized frame
image) raises VideoError naming the file; the pair dataset turns it into a skipped video.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .encoded import EncodedVideo, VideoError

VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".ts", ".m2ts", ".mts",
                    ".flv", ".ogv", ".wmv", ".asf", ".3gp", ".3g2", ".vob", ".mxf", ".dv", ".y4m")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
LIST_EXTENSIONS = (".txt", ".list", ".lst")
# Label folders of the DAVIS / VIP layouts hold PNG label maps, not frames: never train on them.
LABEL_FOLDER_NAMES = ("Annotations",)


class VideoSource(NamedTuple):
    path: str
    is_frame_folder: bool  # a folder of frame images rather than an encoded file


def natural_key(name: str) -> list:
    """Sort key that orders the digit runs of a name by value: frame_2 before frame_10."""
    return [(0, int(part), part) if part.isdigit() else (1, 0, part.lower()) for part in re.split(r"(\d+)", name)]


def frame_images(folder: Path) -> list[Path]:
    """The frame images of a folder, in natural order of their names."""
    images = (p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    return sorted(images, key=lambda p: natural_key(p.name))


def read_frame(path: Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB (smae.layouts.images.read_image); VideoError for anything Pillow cannot
    read, including images over its decompression-bomb limit, so the video is skipped."""
    from smae.errors import UserError
    from smae.layouts.images import read_image

    try:
        return read_image(path, "frame image", convert="RGB")
    except (UserError, FileNotFoundError) as error:
        raise VideoError(str(error)) from None


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
    """A folder of frame images, in natural order of their names."""

    def __init__(self, path: str):
        self.path = path
        if not os.path.isdir(path):
            raise VideoError(f"{path}: frame folder does not exist")
        self._frames = frame_images(Path(path))
        self.num_frames = len(self._frames)

    def read(self, indices: list[int]) -> dict[int, np.ndarray]:
        """{index: (H, W, 3) uint8} for each wanted index."""
        return {index: read_frame(self._frames[index]) for index in sorted(set(indices))}

    def close(self) -> None:
        pass


def open_video(source: VideoSource) -> FrameFolder | EncodedVideo:
    """A reader with `num_frames`, `read(indices)` and `close()`; VideoError if it cannot be opened."""
    return FrameFolder(source.path) if source.is_frame_folder else EncodedVideo(source.path)
