"""The prepared frame store (`smae prepare`): every frame of every video as a JPEG, resized to a
short side, in a few large tar shards plus an index, so that frame i of video v is one `pread`.

    <store>/smae-store.json             what was prepared: options, the video list, the shards
    <store>/shard-000000.tar            frames as members <video row>/<frame>.jpg (plain ustar:
                                        `tar tf` lists them, WebDataset-style readers stream them)
    <store>/shard-000000.offsets.npy    (F, 2) int64: byte offset and size of each frame's JPEG
                                        in the tar, frames of the shard's videos one after another
    <store>/shard-000000.json           the shard's videos: source, frames, size; or why unreadable

Why tar and not a custom blob: same cost (a 512-byte header per frame, ~2% of a 256-px JPEG),
but standard tools and streaming loaders read the shards. The offsets are memory-mapped numpy
arrays: a 72M-frame Kinetics store costs workers page cache, not private memory.

A shard is written under temporary names and renamed into place, its .json last: a shard
exists exactly when its .json does, so a killed `smae prepare` resumes with the shards that
have none. Videos go to shards by position in the sorted video list (smae.data.prepare says
how many per shard).
"""
from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path
from typing import NamedTuple

import numpy as np

from smae.errors import UserError

STORE_FILE = "smae-store.json"
STORE_VERSION = 1
TAR_BLOCK = 512


def shard_stem(shard: int) -> str:
    return f"shard-{shard:06d}"


def is_store(path: str | os.PathLike) -> bool:
    return (Path(path) / STORE_FILE).is_file()


class ShardWriter:
    """Appends frames to one tar shard under a temporary name; `commit` renames it into place.
    A video that fails half way is cut off again (`drop_video`), so a shard holds whole videos."""

    def __init__(self, root: Path, shard: int):
        self.root, self.stem = root, shard_stem(shard)
        self._tar_path = root / f".{self.stem}.tar.tmp-{os.getpid()}"
        self._file = open(self._tar_path, "wb")
        self._offsets: list[tuple[int, int]] = []
        self.videos: list[dict] = []
        self._video_start = (0, 0)  # (file position, frame count) where the current video began

    def start_video(self) -> None:
        self._video_start = (self._file.tell(), len(self._offsets))

    def add_frame(self, row: int, frame: int, jpeg: bytes) -> None:
        info = tarfile.TarInfo(f"{row:07d}/{frame:06d}.jpg")
        info.size, info.mode, info.mtime = len(jpeg), 0o644, 0
        header = info.tobuf(format=tarfile.USTAR_FORMAT)
        offset = self._file.tell() + len(header)
        self._file.write(header)
        self._file.write(jpeg)
        self._file.write(b"\0" * (-len(jpeg) % TAR_BLOCK))
        self._offsets.append((offset, len(jpeg)))

    def drop_video(self) -> None:
        position, count = self._video_start
        self._file.seek(position)
        self._file.truncate()
        del self._offsets[count:]

    def commit(self) -> None:
        """Finishes the tar and renames tar, offsets and the shard's .json into place, in that order."""
        self._file.write(b"\0" * (2 * TAR_BLOCK))  # the tar end marker
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.replace(self._tar_path, self.root / f"{self.stem}.tar")
        offsets = np.array(self._offsets, np.int64).reshape(-1, 2)
        temporary = self.root / f".{self.stem}.offsets.tmp-{os.getpid()}.npy"
        np.save(temporary, offsets)
        os.replace(temporary, self.root / f"{self.stem}.offsets.npy")
        from smae.atomic import write_json_atomic

        write_json_atomic(self.root / f"{self.stem}.json", {"videos": self.videos})

    def abandon(self) -> None:
        self._file.close()
        self._tar_path.unlink(missing_ok=True)


def encode_jpeg(rgb: np.ndarray, quality: int) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


class StoreVideo(NamedTuple):
    """A video of a store, as the pair dataset sees it."""

    path: str  # the source it was prepared from (for messages)
    row: int  # position in the store's video list


class FrameStore:
    """Read side: `num_frames(row)` and `jpeg(row, frame) -> bytes` (one pread). Opens its shard
    files lazily, so a store can be handed to DataLoader workers (each opens its own)."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        manifest = read_json(self.root / STORE_FILE)
        if manifest.get("version") != STORE_VERSION:
            raise UserError(f"{self.root / STORE_FILE}: store version {manifest.get('version')} is not "
                            f"{STORE_VERSION}; prepare it again with this smae")
        self.short_side = manifest["short_side"]
        sources, shards = manifest["sources"], manifest["num_shards"]
        missing = [s for s in range(shards) if not (self.root / f"{shard_stem(s)}.json").is_file()]
        if missing:
            raise UserError(f"{self.root}: {len(missing)} of {shards} shards are not prepared yet (e.g. "
                            f"{shard_stem(missing[0])}); finish with smae prepare on the same --data and --out")
        self.videos: list[StoreVideo] = []
        self.unreadable: list[tuple[str, str]] = []  # (source, reason) of videos with no frames here
        self._shard, self._first, self._count, self._size = [], [], [], []
        for shard in range(shards):
            first = 0
            for entry in read_json(self.root / f"{shard_stem(shard)}.json")["videos"]:
                if "reason" in entry:
                    self.unreadable.append((entry["source"], entry["reason"]))
                    continue
                self.videos.append(StoreVideo(entry["source"], len(self.videos)))
                self._shard.append(shard)
                self._first.append(first)
                self._count.append(entry["frames"])
                self._size.append((entry["height"], entry["width"]))
                first += entry["frames"]
        if len(self.videos) + len(self.unreadable) != len(sources):
            raise UserError(f"{self.root}: shards list {len(self.videos) + len(self.unreadable)} videos, the store "
                            f"{len(sources)}; prepare it again into an empty --out")
        self._offsets: dict[int, np.ndarray] = {}
        self._files: dict[int, int] = {}

    def num_frames(self, row: int) -> int:
        return self._count[row]

    def frame_size(self, row: int) -> tuple[int, int]:
        """(height, width) of every frame of video `row`."""
        return self._size[row]

    def jpeg(self, row: int, frame: int) -> bytes:
        """The JPEG bytes of frame `frame` of video `row`."""
        if not 0 <= frame < self._count[row]:
            raise IndexError(f"frame {frame} of a {self._count[row]}-frame video")
        shard = self._shard[row]
        if shard not in self._files:
            stem = self.root / shard_stem(shard)
            self._offsets[shard] = np.load(f"{stem}.offsets.npy", mmap_mode="r")
            self._files[shard] = os.open(f"{stem}.tar", os.O_RDONLY)
        offset, size = self._offsets[shard][self._first[row] + frame]
        data = os.pread(self._files[shard], int(size), int(offset))
        if len(data) != size:
            raise OSError(f"{self.root / shard_stem(shard)}.tar: cut short (frame at {offset} needs {size} bytes)")
        return data

    def __getstate__(self):  # workers open their own files
        return {**self.__dict__, "_offsets": {}, "_files": {}}

    def close(self) -> None:
        for descriptor in self._files.values():
            os.close(descriptor)
        self._files.clear()
        self._offsets.clear()


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise UserError(f"{path}: unreadable store file ({error}); prepare the store again") from None
