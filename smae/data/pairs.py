"""The pre-training data: pairs (f1 = past, f2 = future) of frames of one video, read from videos
(FramePairDataset) or from a prepared frame store (StorePairDataset, two small JPEG reads a pair).

Per decoded video, `repeats` pairs (SiamMAE's repeated sampling): each has its own gap, drawn
uniformly from `gap_range` (clipped to what the video allows), and its own crop and flip,
shared by its two frames. A dataset item is keyed by (pass, video index) and draws all its
randomness from a generator seeded by (seed, pass, index): a pair does not depend on the worker
that made it, the rank, or whether the run was resumed.

A video that cannot give its pairs (unreadable, truncated, empty, shorter than the smallest gap)
is skipped: the item records (path, reason) and takes another video drawn by the same generator,
so batches keep their size and an epoch never stops on bad files. Each process remembers the
videos that failed, so a bad file is read once per worker, not every time it is drawn.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import Dataset

from smae.errors import UserError

from .store import FrameStore, StoreVideo
from .transforms import PairAugment, crop_jpegs
from .video import VideoError, VideoSource, open_video

# Replacement videos tried per item before the data is declared unusable; with a third of the
# files broken, 64 failures in a row happen with probability 3^-64.
MAX_ATTEMPTS = 64


class PairKey(NamedTuple):
    pass_index: int  # passes over the video list so far (the sampler's epoch)
    video_index: int


def sample_pair_indices(rng: np.random.Generator, num_frames: int, gap_range: tuple[int, int]) -> tuple[int, int]:
    """(i1, i2) with i2 - i1 uniform in [low, min(high, num_frames - 1)] and both in the video."""
    low, high = gap_range
    if num_frames < low + 1:
        raise ValueError(f"{num_frames} frames cannot hold a gap of {low}")
    gap = int(rng.integers(low, min(high, num_frames - 1) + 1))
    first = int(rng.integers(0, num_frames - gap))
    return first, first + gap


class FramePairDataset(Dataset):
    """Items: {"f1", "f2": (R, 3, S, S) float32 normalised (uint8 pixels from a store), "frames":
    (R, 2) int64 frame indices, "skipped": [(path, reason), ...] of videos passed over}; R =
    repeats, S = augment.size. smae.data.pair_source.pair_batch_to_device turns a collated batch into model inputs."""

    def __init__(self, sources: list[VideoSource], augment: PairAugment, gap_range: tuple[int, int] = (4, 48),
                 repeats: int = 2, seed: int = 0):
        low, high = gap_range
        if not 1 <= low <= high:
            raise ValueError(f"gap_range must satisfy 1 <= low <= high, got {gap_range}")
        if repeats < 1:
            raise ValueError(f"repeats must be at least 1, got {repeats}")
        if not sources:
            raise ValueError("the pair dataset needs at least one video")
        self.sources = list(sources)
        self.augment = augment
        self.gap_range = (low, high)
        self.repeats = repeats
        self.seed = seed
        self._unreadable: dict[int, str] = {}  # video index -> reason, in this process

    def __len__(self) -> int:
        return len(self.sources)

    def sample_pairs(self, path: str, num_frames: int, rng: np.random.Generator) -> list[tuple[int, int]]:
        """`repeats` frame index pairs of a video; VideoError if it is too short for a pair."""
        if num_frames == 0:
            raise VideoError(f"{path}: empty (no frames)")
        if num_frames < self.gap_range[0] + 1:
            raise VideoError(f"{path}: too short ({num_frames} frames; a pair needs "
                             f"{self.gap_range[0] + 1} for the smallest gap {self.gap_range[0]})")
        return [sample_pair_indices(rng, num_frames, self.gap_range) for _ in range(self.repeats)]

    def read_pairs(self, source: VideoSource, rng: np.random.Generator) -> dict:
        """`repeats` pairs of one video -> {"f1", "f2": (R, 3, S, S), "frames": (R, 2) indices}."""
        reader = open_video(source)
        try:
            pairs = self.sample_pairs(source.path, reader.num_frames, rng)
            frames = reader.read([index for pair in pairs for index in pair])
        finally:
            reader.close()
        shapes = {frame.shape for frame in frames.values()}
        if len(shapes) != 1:
            raise VideoError(f"{source.path}: frames change size ({sorted(shapes)})")
        augmented = [self.augment([frames[i1], frames[i2]], rng) for i1, i2 in pairs]  # R x (2, 3, S, S)
        both = torch.stack(augmented)  # (R, 2, 3, S, S)
        return {"f1": both[:, 0], "f2": both[:, 1], "frames": torch.tensor(pairs, dtype=torch.int64)}

    def __getitem__(self, key: PairKey | tuple[int, int] | int) -> dict:
        pass_index, index = (0, key) if isinstance(key, int) else key
        rng = np.random.default_rng((self.seed, pass_index, index))
        skipped = []
        for _ in range(MAX_ATTEMPTS):
            if index not in self._unreadable:
                try:
                    return {**self.read_pairs(self.sources[index], rng), "skipped": skipped}
                except VideoError as error:
                    self._unreadable[index] = str(error)
            skipped.append((self.sources[index].path, self._unreadable[index]))
            if len(self._unreadable) == len(self.sources):
                break
            index = int(rng.integers(len(self.sources)))
        raise UserError(unreadable_message(len(self.sources), skipped))


class StorePairDataset(FramePairDataset):
    """FramePairDataset on a prepared store: per pair, two JPEG reads and decodes at the scale the
    crop needs. The same key draws the same frames, crop and flip as from the videos themselves."""

    def __init__(self, store: FrameStore, augment: PairAugment, gap_range: tuple[int, int] = (4, 48),
                 repeats: int = 2, seed: int = 0):
        if not store.videos:
            raise UserError(f"--data {store.root}: the store holds no readable video "
                            f"({len(store.unreadable)} unreadable, see {store.root / 'unreadable.txt'})")
        super().__init__(store.videos, augment, gap_range, repeats, seed)
        self.store = store

    def read_pairs(self, source: StoreVideo, rng: np.random.Generator) -> dict:
        pairs = self.sample_pairs(source.path, self.store.num_frames(source.row), rng)
        try:
            crops = np.stack([crop_jpegs([self.store.jpeg(source.row, i1), self.store.jpeg(source.row, i2)], self.augment, rng)
                              for i1, i2 in pairs])  # (R, 2, S, S, 3) uint8
        except OSError as error:  # a shard cut short or damaged on disk: skip the video, keep training
            raise VideoError(f"{source.path} in the store {self.store.root}: {error}") from None
        # uint8 to the training process (a quarter of the bytes through shared memory and to the
        # GPU); pair_batch_to_device normalises there.
        both = torch.from_numpy(crops).permute(0, 1, 4, 2, 3)  # (R, 2, 3, S, S) uint8
        return {"f1": both[:, 0].contiguous(), "f2": both[:, 1].contiguous(), "frames": torch.tensor(pairs, dtype=torch.int64)}


def unreadable_message(num_videos: int, skipped: list[tuple[str, str]]) -> str:
    """What to tell when an item found no readable video: true for one video or many."""
    failed = dict(skipped)
    if len(failed) == num_videos:
        head = "the only video could not" if num_videos == 1 else f"none of the {num_videos} videos could"
        return f"--data: {head} be read; fix or replace the data. {skipped[-1][1]}"
    return (f"--data: {len(skipped)} videos drawn in a row could not be read ({len(failed)} different files "
            f"of {num_videos}); check the data. Last: {skipped[-1][1]}")


def collate_pairs(items: list[dict]) -> dict:
    """Items of R pairs -> one batch: tensors concatenated (f1, f2 (B*R, 3, S, S), frames (B*R, 2),
    ...), lists joined (skipped, ...), other values from the first item."""
    batch = {}
    for key, first in items[0].items():
        if isinstance(first, torch.Tensor):
            batch[key] = torch.cat([item[key] for item in items])
        elif isinstance(first, list):
            batch[key] = [entry for item in items for entry in item[key]]
        else:
            batch[key] = first
    return batch
