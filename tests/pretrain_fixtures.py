"""Shared by the pre-training tests: small videos written on the fly (PyAV), broken ones, and
a pre-training config small enough for a CPU test.

Frame t of a "coded" video has red level CODE_STEP * t everywhere (so a decoded or augmented
frame tells which frame it was), and green / blue channels holding a fixed random texture that
moves right by one pixel per frame (wrapping around) (so there is something to learn).
"""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

from smae.config import apply_overrides
from smae.train.config import TRAIN_PRESETS, TrainConfig

CODE_STEP = 4  # red level per frame index: frames 0..63 are told apart after H.264


def coded_frames(num_frames: int, size: int, seed: int) -> np.ndarray:
    """(T, size, size, 3) uint8."""
    rng = np.random.default_rng(seed)
    texture = rng.integers(0, 256, size=(size, size, 2), dtype=np.uint8)
    texture = np.repeat(np.repeat(texture[::4, ::4], 4, axis=0), 4, axis=1)  # 4x4 blocks survive the codec
    frames = np.empty((num_frames, size, size, 3), np.uint8)
    for t in range(num_frames):
        frames[t, :, :, 0] = CODE_STEP * t
        frames[t, :, :, 1:] = np.roll(texture, t, axis=1)
    return frames


def write_mp4(path: Path, frames: np.ndarray, gop: int = 8, index_first: bool = False) -> Path:
    """H.264 at 30 fps with a key frame every `gop` frames (so that seeking is exercised).
    index_first: the index (moov) before the frames, as streaming files have it."""
    options = {"movflags": "faststart"} if index_first else {}
    with av.open(str(path), "w", format="mp4", options=options) as container:
        stream = container.add_stream("libx264", rate=30)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        stream.thread_count = 1
        stream.codec_context.gop_size = gop
        stream.options = {"crf": "10", "preset": "ultrafast"}
        for t, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts, frame.time_base = t, Fraction(1, 30)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def write_frame_folder(folder: Path, frames: np.ndarray) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for t, rgb in enumerate(frames):
        Image.fromarray(rgb).save(folder / f"{t:05d}.png")
    return folder


def write_video_set(folder: Path, count: int, num_frames: int = 40, size: int = 32) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return [write_mp4(folder / f"video{i:02d}.mp4", coded_frames(num_frames, size, seed=i)) for i in range(count)]


def write_broken_videos(folder: Path, good: Path) -> dict[str, Path]:
    """Truncated mp4s (half of `good`; and a file with its index first, cut after a third of its
    frames, whose frame count still promises them all), a zero-byte file and a text file."""
    data = good.read_bytes()
    paths = {"truncated": folder / "truncated.mp4", "cut_frames": folder / "cut_frames.mp4",
             "empty": folder / "empty.mp4", "text": folder / "text.mp4"}
    paths["truncated"].write_bytes(data[: len(data) // 2])
    streamable = write_mp4(paths["cut_frames"], coded_frames(60, 32, seed=9), index_first=True).read_bytes()
    paths["cut_frames"].write_bytes(streamable[: len(streamable) // 3])
    paths["empty"].write_bytes(b"")
    paths["text"].write_text("this is not a video\n")
    return paths


def small_config(*overrides: str) -> TrainConfig:
    """A ~40k-parameter SiamMAE on 32x32 crops (16 tokens, 4 visible), 8 pairs per step."""
    return apply_overrides(TRAIN_PRESETS["tiny"], [
        "model.encoder.img_size=32", "model.encoder.embed_dim=32", "model.encoder.depth=1", "model.encoder.num_heads=2",
        "model.decoder.embed_dim=32", "model.decoder.depth=1", "model.decoder.num_heads=2", "model.mask_ratio=0.75",
        "batch_size=8", "repeats=2", "gap_range=2,10", "epochs=8", "warmup_epochs=2", "base_lr=0.1",
        "num_workers=0", "checkpoint_every=3", "log_every=1", "figure_pairs=2", *overrides])


def write_synthetic_videos(folder: Path, count: int = 8, num_frames: int = 24, size: int = 48) -> Path:
    """`count` videos of the project's synthetic generator (smae synth), in folder/videos."""
    import dataclasses

    from smae.data import synth

    spec = synth.VideoSetSpec(videos=count, frames=(num_frames, num_frames), height=size, width=size,
                              objects=(1, 2), entering=(0, 1))
    synth.generate(folder, dataclasses.replace(synth.PRESETS["tiny"], mp4=spec), formats=("mp4",))
    return folder / synth.FORMAT_DIRS["mp4"]
