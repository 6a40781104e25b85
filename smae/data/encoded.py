"""Exact frames of an encoded video (PyAV), by index.

Frame i is the i-th frame a plain decode from the start outputs (presentation order), turned
upright by the stream's rotation flag. Container metadata (`stream.frames`, the frame rate) is
not trusted: an edit list hides listed frames, AVI stores only decode order, VFR files space
frames unevenly, dropped frames leave empty chunks. So the first read of a video decodes it once
and keeps, per output frame, its presentation timestamp (pts), whether it is a key frame, and a
CRC of its decoded pixels (a `FrameIndex`, held in memory per process, never written anywhere).

A read then seeks to the last key frame at or before the target, decodes forward and takes the
frame whose pts is the target's. The CRC proves the frame came out as in the plain decode (after
a seek, open-GOP frames or a demuxer that lands elsewhere can give other pixels); on a mismatch
or a miss the read retries from the key frame before, and finally decodes from the start, which
is the definition. Files whose timestamps are missing or not increasing are always read from
the start.
"""
from __future__ import annotations

import os
import zlib
from collections import OrderedDict
from typing import Iterator, NamedTuple

import numpy as np

# Decoding forward is cheaper than a seek (which restarts at a key frame) for short distances.
SEEK_DISTANCE = 64
# Key frames tried before falling back to a decode from the start.
SEEK_ATTEMPTS = 3
INDEX_CACHE_SIZE = 4096  # videos whose FrameIndex a process keeps (about 13 bytes per frame)


class VideoError(Exception):
    """A video that cannot give the frames asked for; the message names the file and why."""


class FrameIndex(NamedTuple):
    """What one plain decode of a video gives, frame by frame in output order."""

    pts: list[int | None]
    key: np.ndarray  # (T,) bool: a key frame (decoding can start here)
    crc: np.ndarray  # (T,) uint32: CRC-32 of the decoded pixels in the decoder's own format
    rotation: int  # counter-clockwise degrees that turn the frames upright (0, 90, 180, 270)

    @property
    def seekable(self) -> bool:
        """Timestamps present and increasing: a frame can be found by its pts after a seek."""
        return None not in self.pts and all(a < b for a, b in zip(self.pts, self.pts[1:]))


def pixel_crc(frame) -> int:
    """CRC-32 of a decoded frame's pixels, without colour conversion where PyAV allows it (the
    native array is a copy without row padding, whose bytes are undefined)."""
    try:
        native = frame.to_ndarray()
    except ValueError:  # a pixel format PyAV has no plain array for
        native = frame.to_ndarray(format="rgb24")
    if isinstance(native, tuple):  # pal8: (indices, palette)
        return zlib.crc32(native[1], zlib.crc32(native[0]))
    return zlib.crc32(np.ascontiguousarray(native))


def upright_rgb(frame, size: tuple[int, int] | None = None) -> np.ndarray:
    """(H, W, 3) uint8 RGB turned by the frame's rotation flag; `size` = (width, height) before
    turning resizes in swscale on the way (area filter: it averages when shrinking)."""
    if size is None:
        rgb = frame.to_ndarray(format="rgb24")
    else:
        rgb = frame.to_ndarray(format="rgb24", width=size[0], height=size[1], interpolation="AREA")
    turns = round(frame.rotation / 90) % 4
    return np.ascontiguousarray(np.rot90(rgb, k=turns)) if turns else rgb


def _open(path: str):
    import av

    if not os.path.isfile(path):
        raise VideoError(f"{path}: file does not exist")
    try:
        container = av.open(path)
    except (av.FFmpegError, OSError) as error:
        raise VideoError(f"{path}: not a readable video ({error})") from None
    if not container.streams.video:
        container.close()
        raise VideoError(f"{path}: has no video stream")
    return container


def decode_all(path: str) -> Iterator:
    """Every frame of a plain decode from the start (PyAV VideoFrames); VideoError if the stream
    is corrupt or cut. The definition of frame order."""
    import av

    container = _open(path)
    count = 0
    try:
        for frame in container.decode(container.streams.video[0]):
            count += 1
            yield frame
    except av.FFmpegError as error:
        raise VideoError(f"{path}: decoding failed after {count} frames ({error}); truncated or corrupt") from None
    finally:
        container.close()


def scan(path: str) -> FrameIndex:
    pts, key, crc, rotation = [], [], [], 0
    for frame in decode_all(path):
        pts.append(frame.pts)
        key.append(frame.key_frame)
        crc.append(pixel_crc(frame))
        rotation = round(frame.rotation / 90) % 4 * 90
    return FrameIndex(pts, np.array(key, bool), np.array(crc, np.uint32), rotation)


_INDEXES: OrderedDict[tuple, FrameIndex] = OrderedDict()


def frame_index(path: str) -> FrameIndex:
    """The FrameIndex of `path`, scanned on first use and kept while the file is unchanged."""
    try:
        stat = os.stat(path)
    except OSError:
        raise VideoError(f"{path}: file does not exist") from None
    key = (path, stat.st_size, stat.st_mtime_ns)
    if key in _INDEXES:
        _INDEXES.move_to_end(key)
        return _INDEXES[key]
    index = scan(path)
    _INDEXES[key] = index
    if len(_INDEXES) > INDEX_CACHE_SIZE:
        _INDEXES.popitem(last=False)
    return index


class EncodedVideo:
    """An encoded video file (first video stream): `num_frames`, `read(indices)`, `close()`."""

    def __init__(self, path: str):
        self.path = path
        self.index = frame_index(path)
        self.num_frames = len(self.index.pts)
        self._position_of = {pts: i for i, pts in enumerate(self.index.pts)}
        self._container = None
        self._frames = None  # the decode iterator in use
        self._by_count = False  # it decodes from the start: frames are numbered by count, not pts
        self._last = -1  # index of the last frame it gave
        self.decoded_frames = 0  # frames decoded by reads so far: the cost of seeking

    def read(self, indices: list[int]) -> dict[int, np.ndarray]:
        """{index: (H, W, 3) uint8 RGB, upright} for each wanted index."""
        import av

        wanted = sorted(set(indices))
        if wanted and not 0 <= wanted[0] <= wanted[-1] < self.num_frames:
            raise IndexError(f"{self.path}: frames {wanted[0]}..{wanted[-1]} asked of {self.num_frames}")
        out: dict[int, np.ndarray] = {}
        try:
            for target in wanted:
                if target not in out:
                    self._read_around(target, wanted, out)
        except av.FFmpegError as error:
            raise VideoError(f"{self.path}: decoding failed ({error}); corrupt") from None
        return out

    def _start_points(self, target: int) -> list[int | None]:
        """Where to start decoding for `target`: the current position if close, key frames at
        or before it (nearest first), then None = a fresh decode from the start."""
        points: list[int | None] = []
        if self._frames is not None and self._last < target and (self._by_count or target <= self._last + SEEK_DISTANCE):
            points.append(-1)  # keep decoding forward
        if self.index.seekable:
            keys = np.flatnonzero(self.index.key[: target + 1])[::-1][:SEEK_ATTEMPTS]
            points += [int(k) for k in keys]
        return points + [None]

    def _restart(self, key: int | None) -> None:
        if key is None or self._container is None:
            if self._container is not None:
                self._container.close()
            self._container = _open(self.path)
        stream = self._container.streams.video[0]
        if key is not None:
            self._container.seek(self.index.pts[key], stream=stream, backward=True, any_frame=False)
        self._frames = self._container.decode(stream)
        self._by_count, self._last = key is None, -1

    def _read_around(self, target: int, wanted: list[int], out: dict[int, np.ndarray]) -> None:
        """Decodes until frame `target` is in `out`, keeping the other wanted frames met on the way."""
        wanted_set = set(wanted)
        for start in self._start_points(target):
            if start != -1:
                self._restart(start)
            for position, frame in self._positions():
                self._last = position
                if position in wanted_set and position not in out and pixel_crc(frame) == self.index.crc[position]:
                    out[position] = upright_rgb(frame)
                if position >= target:
                    break
            if target in out:
                return
            self._frames = None
        raise VideoError(f"{self.path}: frame {target} of {self.num_frames} decoded differently from the "
                         f"first pass; the file changed while being read?")

    def _positions(self) -> Iterator[tuple[int, object]]:
        """(index, frame) of the frames the current decode gives; from the start, by count (the
        definition), else by pts (frames that are not in the index, e.g. an open GOP's
        undecodable leading frames, are passed over)."""
        for frame in self._frames:
            self.decoded_frames += 1
            position = self._last + 1 if self._by_count else self._position_of.get(frame.pts)
            if position is not None:
                yield position, frame

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None
