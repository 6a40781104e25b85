"""On-disk layouts of the evaluation datasets (as the public loaders read them) and writers.

The synthetic generator writes each format in the layout of the real dataset, so the
evaluation code runs unchanged on real and synthetic data:

DAVIS-2017 (davis2017-evaluation, CRW, DINO):
    JPEGImages/480p/<seq>/00000.jpg
    Annotations/480p/<seq>/00000.png   indexed ("P") PNG, DAVIS palette, 0 = background,
                                       1..n = objects (all present in frame 0)
    ImageSets/2017/val.txt             one sequence name per line (train.txt: empty)
    The folder is named 480p whatever the frame size, as loaders expect.
JHMDB (CRW / UVC label propagation):
    Rename_Images/<class>/<video>/00001.png          frames, 1-based names
    joint_positions/<class>/<video>/joint_positions.mat
        pos_img: (2, 15, T) float64, (x, y) in MATLAB's 1-based pixel convention (the
        centre of the top-left pixel is (1, 1)); CRW's loader subtracts 1.
    splits/<class>_test_split1.txt     "<video>.avi 2" per line (2 = test, as in JHMDB)
    jhmdb_vallist.txt                  CRW-style "<frames dir> <mat file>" per line, paths
                                       relative to the JHMDB root
VIP (VIP_Fine, as CRW / UVC / mmaction read it):
    Images/<video>/000000000001.jpg    12-digit 1-based frame numbers
    Annotations/Category_ids/<video>/000000000001.png   "L" PNG, class ids 0..19
    lists/val_videos.txt               one video name per line
Pre-training videos: <name>.mp4, H.264 (libx264), yuv420p, 30 fps, a key frame every
second (cheap seeking for frame-pair sampling).
"""
from __future__ import annotations

import io
import os
import shutil
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image

JPEG_QUALITY = 90
MP4_FPS = 30
MP4_CRF = 18  # visually near-lossless; pre-training sees the decoded frames
VIP_NUM_CLASSES = 20


def davis_palette() -> np.ndarray:
    """The 256-colour palette of DAVIS annotations (the PASCAL VOC colour map) -> (256, 3) uint8.

    Colour of index i: the bits of i, three at a time, spread over the high bits of R, G, B
    (1 -> (128, 0, 0), 2 -> (0, 128, 0), 8 -> (64, 0, 0), 255 -> (224, 224, 192)).
    """
    palette = np.zeros((256, 3), np.uint8)
    for index in range(256):
        bits, colour = index, [0, 0, 0]
        for shift in range(7, -1, -1):
            for channel in range(3):
                colour[channel] |= ((bits >> channel) & 1) << shift
            bits >>= 3
        palette[index] = colour
    return palette


DAVIS_PALETTE = davis_palette()


def write_jpeg(path: Path, rgb: np.ndarray) -> None:
    Image.fromarray(rgb).save(path, quality=JPEG_QUALITY)


def write_indexed_png(path: Path, labels: np.ndarray, palette: np.ndarray = DAVIS_PALETTE) -> None:
    """labels (H, W) uint8 -> a "P" PNG carrying `palette` (256, 3)."""
    height, width = labels.shape
    image = Image.frombytes("P", (width, height), np.ascontiguousarray(labels, np.uint8).tobytes())
    image.putpalette(palette.astype(np.uint8).ravel().tolist())
    image.save(path)


def write_lines(path: Path, lines: Iterable[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in lines))


class DavisLayout:
    def __init__(self, root: Path):
        self.root = root

    def write_frame(self, sequence: str, index: int, rgb: np.ndarray, labels: np.ndarray) -> None:
        for kind in ("JPEGImages", "Annotations"):
            (self.root / kind / "480p" / sequence).mkdir(parents=True, exist_ok=True)
        write_jpeg(self.root / "JPEGImages" / "480p" / sequence / f"{index:05d}.jpg", rgb)
        write_indexed_png(self.root / "Annotations" / "480p" / sequence / f"{index:05d}.png", labels)

    def write_lists(self, sequences: list[str]) -> None:
        # Every synthetic sequence is for evaluation; train.txt exists (loaders open it) but
        # is empty: pre-training uses the mp4 videos, never these sequences.
        write_lines(self.root / "ImageSets" / "2017" / "val.txt", sequences)
        write_lines(self.root / "ImageSets" / "2017" / "train.txt", [])


class JhmdbLayout:
    def __init__(self, root: Path):
        self.root = root

    def frames_dir(self, action: str, video: str) -> Path:
        return self.root / "Rename_Images" / action / video

    def mat_path(self, action: str, video: str) -> Path:
        return self.root / "joint_positions" / action / video / "joint_positions.mat"

    def write_frame(self, action: str, video: str, index: int, rgb: np.ndarray) -> None:
        folder = self.frames_dir(action, video)
        folder.mkdir(parents=True, exist_ok=True)
        # zlib level 1: 5x faster than the default for ~10% more bytes on textured frames.
        Image.fromarray(rgb).save(folder / f"{index + 1:05d}.png", compress_level=1)

    def write_joints(self, action: str, video: str, joints: np.ndarray) -> None:
        """joints (T, 15, 2) as 0-based (x, y) pixel positions -> pos_img (2, 15, T), 1-based."""
        from scipy.io import savemat  # imported here because only the jhmdb format needs it

        pos_img = np.ascontiguousarray(joints.transpose(2, 1, 0) + 1.0, dtype=np.float64)
        buffer = io.BytesIO()
        savemat(buffer, {"pos_img": pos_img})
        data = bytearray(buffer.getvalue())
        # The 116-byte text header carries a creation time; a fixed text makes the file a
        # function of its content only (same seed -> same bytes).
        data[:116] = b"MATLAB 5.0 MAT-file, written by smae synth".ljust(116)
        path = self.mat_path(action, video)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(bytes(data))

    def write_lists(self, videos: list[tuple[str, str]]) -> None:
        """videos: (action, video) pairs, all in the test split."""
        for action in sorted({a for a, _ in videos}):
            lines = [f"{video}.avi 2" for a, video in videos if a == action]
            write_lines(self.root / "splits" / f"{action}_test_split1.txt", lines)
        lines = [f"{self.frames_dir(a, v).relative_to(self.root)} {self.mat_path(a, v).relative_to(self.root)}"
                 for a, v in videos]
        write_lines(self.root / "jhmdb_vallist.txt", lines)


class VipLayout:
    def __init__(self, root: Path):
        self.root = root

    def write_frame(self, video: str, index: int, rgb: np.ndarray, classes: np.ndarray) -> None:
        if classes.max(initial=0) >= VIP_NUM_CLASSES:
            raise ValueError(f"VIP class ids must be < {VIP_NUM_CLASSES}, got {classes.max()}")
        images = self.root / "Images" / video
        annotations = self.root / "Annotations" / "Category_ids" / video
        images.mkdir(parents=True, exist_ok=True)
        annotations.mkdir(parents=True, exist_ok=True)
        write_jpeg(images / f"{index + 1:012d}.jpg", rgb)
        Image.fromarray(classes).save(annotations / f"{index + 1:012d}.png")

    def write_lists(self, videos: list[str]) -> None:
        write_lines(self.root / "lists" / "val_videos.txt", videos)


def write_mp4(path: Path, frames: Iterator[np.ndarray], height: int, width: int) -> int:
    """Encodes RGB frames (H, W, 3) uint8 as H.264 yuv420p at 30 fps; returns the frame count.

    x264 settings for byte-identical files: one thread (its output depends on the thread
    count) and no macroblock-tree rate control (with it, this x264 build gave a different
    stream in about 1 of 3 runs of the same 64x64 input, even on one thread).
    """
    import av

    if height % 2 or width % 2:
        raise ValueError(f"yuv420p needs an even frame size, got {height}x{width}")
    count = 0
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=MP4_FPS)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.gop_size = MP4_FPS
        stream.options = {"crf": str(MP4_CRF), "preset": "medium", "x264-params": "threads=1:no-mbtree=1"}
        for rgb in frames:
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts, frame.time_base = count, Fraction(1, MP4_FPS)
            container.mux(stream.encode(frame))
            count += 1
        container.mux(stream.encode())
    return count


@contextmanager
def replaced_dir(final: Path) -> Iterator[Path]:
    """Yields a fresh temporary sibling of `final`; on success it replaces `final` whole.

    Readers never see a half-written folder, and files of an earlier, larger run cannot
    linger among the new ones. On error the temporary folder is removed and `final` is
    left as it was.
    """
    temporary = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    retired = final.with_name(f".{final.name}.old-{os.getpid()}")
    for leftover in (temporary, retired):
        if leftover.exists():
            shutil.rmtree(leftover)
    temporary.mkdir(parents=True)
    try:
        yield temporary
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    if final.exists():
        os.replace(final, retired)
    os.replace(temporary, final)
    shutil.rmtree(retired, ignore_errors=True)
