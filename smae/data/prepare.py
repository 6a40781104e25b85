"""`smae prepare`: decode a video corpus once into a frame store (smae.data.store) for fast pair
sampling; `smae pretrain --data <store>` then reads two small JPEGs per pair instead of seeking
and decoding video.

    smae prepare --data kinetics400/train --out k400-store            # class folders of videos
    smae prepare --data videos.txt --out store --short-side 320 --workers 16
    # killed? run the same command again: finished shards are kept, the rest are written

Every frame of a plain decode (smae.data.encoded's frame order, turned upright) is resized so
its short side is --short-side (never enlarged) and written as a JPEG. Shards are written by
worker processes, one shard at a time each. A video that does not decode is counted, listed in
<out>/unreadable.txt and left out; the rest of its shard is kept.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Iterator, NamedTuple

from smae.errors import UserError

# numpy, PyAV and Pillow load inside the functions, so that `smae --help` stays fast.

DEFAULT_SHORT_SIDE = 256  # 224-pixel training crops with room to move
DEFAULT_QUALITY = 90
# Kinetics-400 train (~240k videos of ~300 frames): ~940 shards of 256 videos. A small corpus
# gets smaller shards, at least 64 of them, so that every worker has work.
MAX_VIDEOS_PER_SHARD = 256
MIN_SHARDS = 64


def videos_per_shard(num_videos: int) -> int:
    return min(MAX_VIDEOS_PER_SHARD, max(1, -(-num_videos // MIN_SHARDS)))


class PrepareSummary(NamedTuple):
    videos: int  # videos in the store
    unreadable: int  # videos left out
    frames: int
    bytes: int  # shard sizes on disk
    seconds: float  # wall time of this run (a resumed run counts only its own part)

    def describe(self, out: str | os.PathLike) -> str:
        text = (f"store {out}: {self.videos} videos, {self.frames} frames, {self.bytes / 1e9:.2f} GB "
                f"({self.seconds:.0f} s this run)")
        if self.unreadable:
            text += f"; {self.unreadable} unreadable videos left out, listed in {Path(out) / 'unreadable.txt'}"
        return text


def fitted_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """(width, height) scaled so the short side is `short_side`; never enlarged."""
    scale = min(1.0, short_side / min(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def upright_frames(source, short_side: int) -> Iterator:
    """Every frame of a VideoSource in order, (h, w, 3) uint8 RGB upright, all resized to the size
    that fits the first frame (a stream that changes resolution keeps one size)."""
    import numpy as np
    from PIL import Image

    from .encoded import decode_all, upright_rgb
    from .video import frame_images, read_frame

    if source.is_frame_folder:
        size = None
        for path in frame_images(Path(source.path)):
            image = read_frame(path)
            size = size or fitted_size(image.shape[1], image.shape[0], short_side)
            yield np.asarray(Image.fromarray(image).resize(size, Image.BILINEAR))
        return
    size = None
    for frame in decode_all(source.path):
        if size is None:
            turned = round(frame.rotation / 90) % 2 == 1  # rotation swaps width and height
            width, height = (frame.height, frame.width) if turned else (frame.width, frame.height)
            fitted = fitted_size(width, height, short_side)
            size = fitted[::-1] if turned else fitted  # swscale works before the turn
        yield upright_rgb(frame, size)


_progress = None  # the worker's queue of finished-video events


def _init_worker(queue) -> None:
    global _progress
    _progress = queue


def write_shard(root: str, shard: int, sources: list, first_row: int, short_side: int, quality: int) -> tuple[int, int]:
    """Writes one shard of VideoSources (a worker's task); returns (frames, bytes)."""
    from .store import ShardWriter, encode_jpeg, shard_stem
    from .video import VideoError

    writer = ShardWriter(Path(root), shard)
    frames = 0
    try:
        for row, source in enumerate(sources, start=first_row):
            writer.start_video()
            count, shape = 0, None
            try:
                for count, rgb in enumerate(upright_frames(source, short_side), start=1):
                    writer.add_frame(row, count - 1, encode_jpeg(rgb, quality))
                    shape = rgb.shape
                if count == 0:
                    raise VideoError(f"{source.path}: no frames")
                writer.videos.append({"source": source.path, "frames": count, "height": shape[0], "width": shape[1]})
                frames += count
            except VideoError as error:
                writer.drop_video()
                writer.videos.append({"source": source.path, "reason": str(error)})
            if _progress is not None:
                _progress.put(1)
        writer.commit()
    except BaseException:
        writer.abandon()
        raise
    return frames, os.path.getsize(Path(root) / f"{shard_stem(shard)}.tar")


def _plan(data: str, out: Path, short_side: int, quality: int, workers: int | None) -> dict:
    """The store's manifest: new, or the one a killed run left (which must match this run)."""
    from smae.atomic import write_json_atomic

    from .store import STORE_FILE, STORE_VERSION, read_json
    from .video import find_videos

    if not 16 <= short_side <= 4096:
        raise UserError(f"--short-side {short_side}: expected 16..4096 pixels")
    if not 1 <= quality <= 95:
        raise UserError(f"--quality {quality}: expected 1..95 (Pillow's useful JPEG range)")
    if workers is not None and workers < 1:
        raise UserError(f"--workers {workers}: expected at least 1")
    try:
        sources = find_videos(data)
    except (ValueError, FileNotFoundError) as error:
        raise UserError(f"--data {data}: {error}") from None
    per_shard = videos_per_shard(len(sources))
    manifest = {"version": STORE_VERSION, "short_side": short_side, "quality": quality,
                "videos_per_shard": per_shard, "num_shards": -(-len(sources) // per_shard),
                "sources": [[s.path, s.is_frame_folder] for s in sources]}
    path = out / STORE_FILE
    if path.is_file():
        earlier = read_json(path)
        if earlier != manifest:
            changed = [key for key in manifest if earlier.get(key) != manifest[key]]
            raise UserError(f"--out {out}: holds a store prepared with other {', '.join(changed)}; resume with the "
                            f"same --data and options, or choose a new --out")
        return manifest
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"--out {out}: exists and is not an empty folder or a store; choose a new --out")
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, manifest)
    return manifest


def prepare(data: str | os.PathLike, out: str | os.PathLike, *, short_side: int = DEFAULT_SHORT_SIDE,
            quality: int = DEFAULT_QUALITY, workers: int | None = None, progress: bool = True) -> PrepareSummary:
    """Prepares (or finishes preparing) the store `out` from the videos under `data`."""
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    from tqdm import tqdm

    from .store import shard_stem
    from .video import VideoSource

    out = Path(out)
    started = time.perf_counter()
    manifest = _plan(str(data), out, short_side, quality, workers)
    for leftover in out.glob(".shard-*.tmp-*"):  # from a killed run
        leftover.unlink()
    sources = [VideoSource(path, folder) for path, folder in manifest["sources"]]
    per_shard = manifest["videos_per_shard"]
    pending = [s for s in range(manifest["num_shards"]) if not (out / f"{shard_stem(s)}.json").is_file()]
    done_videos = len(sources) - sum(len(sources[s * per_shard:(s + 1) * per_shard]) for s in pending)
    workers = max(1, min(workers or len(os.sched_getaffinity(0)), len(pending)))
    context = multiprocessing.get_context("spawn")  # no inherited threads or file handles
    queue = context.Queue()
    bar = tqdm(total=len(sources), initial=done_videos, unit="video", disable=not progress, file=sys.stderr,
               dynamic_ncols=True, mininterval=1.0)
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker, initargs=(queue,)) as pool:
        futures = {pool.submit(write_shard, str(out), s, sources[s * per_shard:(s + 1) * per_shard], s * per_shard,
                               short_side, quality) for s in pending}
        try:
            while futures:
                finished, futures = wait(futures, timeout=0.5, return_when=FIRST_COMPLETED)
                for future in finished:
                    future.result()  # a bug in a worker: its traceback, here
                while not queue.empty():
                    bar.update(queue.get())
        except BaseException:
            for future in futures:
                future.cancel()
            raise
    bar.close()
    return _summarise(out, manifest, time.perf_counter() - started)


def _summarise(out: Path, manifest: dict, seconds: float) -> PrepareSummary:
    """Totals over all shards, and <out>/unreadable.txt listing the videos left out."""
    from smae.atomic import write_text_atomic

    from .store import read_json, shard_stem

    videos = frames = size = 0
    unreadable = []
    for shard in range(manifest["num_shards"]):
        for entry in read_json(out / f"{shard_stem(shard)}.json")["videos"]:
            if "reason" in entry:
                unreadable.append(entry["reason"])
            else:
                videos, frames = videos + 1, frames + entry["frames"]
        size += os.path.getsize(out / f"{shard_stem(shard)}.tar")
    write_text_atomic(out / "unreadable.txt", "".join(f"{reason}\n" for reason in unreadable))
    return PrepareSummary(videos, len(unreadable), frames, size, seconds)
