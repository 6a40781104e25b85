"""The per-video propagation loop, with memory bounded by the context, not by the video.

At a frame with a given mask the labels come from it; for every other frame t:
    labels_t = propagate_labels(features_t, context features, context labels)
where the context is the reference frames (features and given labels) plus the n previous frames
with their *predicted* soft labels (never ground truth: that would leak labels). The context
lives in a buffer of R + n slots; frames are decoded and encoded one batch at a time. Peak
memory: one batch of frames and features, plus (R + n) x grid x (C + K) floats, whatever the
video length.

Objects that enter later (YouTube-VOS): every label id of every given mask has its channel from
the start (all zero until given). Frames before the first given mask are background and are not
encoded. At a later given mask, its new objects' labels replace the prediction where they are
(their pixels belong to them; the objects already tracked keep their prediction elsewhere), the
frame is output with the given mask for those objects, and it joins the context as one more
reference frame (R grows by one), so the new object's given mask is never pushed out of the
context, and the ring of recent frames restarts from it (see ContextQueue.add_reference). Ids of
the mask that are already tracked are not re-given (as XMem and Cutie do).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Mapping

import numpy as np
import torch

from smae.errors import UserError
from smae.kernels import propagate_labels
from smae.layouts.images import read_label_png
from smae.layouts.jhmdb import read_joints

from .features import FeatureSource, normalize_features
from .frames import FrameSequence, from_paths
from .labels import VOID_LABEL, decode_joints, decode_segmentation, joint_heatmaps, segmentation_labels
from .protocols import Protocol, input_size
from .videos import Video, iter_frame_batches


class ContextQueue:
    """Slots 0..R-1: the reference frames (the first given mask's, then one per later given
    mask); the next n slots: a ring of the n most recent frames.

    Order inside the ring does not matter: propagation ranks all context keys jointly, and only
    the references are special (searched globally under CRW's rule). `pad=True` fills the ring
    with copies of the first frame at the start, as CRW's context bank does. Keys stay fp32: on a
    GPU the kernel scores candidates with fp16 tensor-core products of a rounded copy and
    re-scores the kept ones from these, so the labels match the fp32 reference's.
    """

    def __init__(self, n_recent: int, cells: int, channels: int, classes: int, device: torch.device, pad: bool):
        self.n_recent = n_recent
        self.references = 1
        self.keys = torch.zeros(1 + n_recent, cells, channels, device=device)  # (R + n, N, C)
        self.labels = torch.zeros(1 + n_recent, cells, classes, device=device)  # (R + n, N, K)
        self.pad = pad
        self.size = 0  # valid slots
        self._next = 1  # slot the next frame overwrites

    @property
    def capacity(self) -> int:
        return self.references + self.n_recent

    def set_first(self, keys: torch.Tensor, labels: torch.Tensor) -> None:
        """keys (N, C), labels (N, K) of the first reference frame."""
        fill = self.capacity if self.pad else 1
        self.keys[:fill] = keys
        self.labels[:fill] = labels
        self.size, self._next = fill, 1

    def add_reference(self, keys: torch.Tensor, labels: torch.Tensor) -> None:
        """Keeps a frame with given labels for good, as one more reference slot, and restarts the
        ring from it as at the first frame (copies of it with `pad`, else empty): the recent
        frames saw the new object, partly in the picture, labelled background, and would
        outvote its given mask. A new buffer, once per given mask, not per frame."""
        r = self.references
        fill = self.n_recent + 1 if self.pad else 1
        self.keys = torch.cat([self.keys[:r], keys.expand(self.n_recent + 1, *keys.shape)])
        self.labels = torch.cat([self.labels[:r], labels.expand(self.n_recent + 1, *labels.shape)])
        self.references += 1
        self.size, self._next = r + fill, r + 1

    def push(self, keys: torch.Tensor, labels: torch.Tensor) -> None:
        """Adds a frame's keys (N, C) and predicted labels (N, K), dropping the oldest recent one."""
        if self.n_recent == 0:
            return
        self.keys[self._next] = keys
        self.labels[self._next] = labels
        self.size = max(self.size, self._next + 1)
        self._next = self._next + 1 if self._next + 1 < self.capacity else self.references

    def context(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(T, N, C) keys and (T, N, K) labels of the valid slots, references first (views)."""
        return self.keys[:self.size], self.labels[:self.size]


@dataclass
class FramePrediction:
    index: int  # frame index in the video
    stem: str  # the frame's output file name, without suffix
    original: np.ndarray  # (H0, W0, 3) uint8 RGB frame
    labels: np.ndarray | None  # segmentation: (H_out, W_out) uint8 label ids
    joints: np.ndarray | None  # pose: (J, 2) float64 (x, y) in original-frame pixels, -1 when lost
    joint_cells: np.ndarray | None = None  # pose: the same in feature cells (CRW's eval_pck input)


def propagate_video(video: Video, source: FeatureSource, protocol: Protocol, batch_size: int = 8) -> Iterator[FramePrediction]:
    """Propagates a data set's video (its given masks, or its first frame's joints); yields
    each frame's result in order."""
    frames = from_paths(video.frames, video.name)
    if video.kind == "segmentation":
        masks = {index: read_label_png(path) for index, path in video.given_masks()}
        return propagate_masks(frames, masks, source, protocol, batch_size)
    return propagate_joints(frames, read_joints(video.annotation)[0], source, protocol, batch_size)


def propagate_masks(
    frames: FrameSequence, masks: Mapping[int, np.ndarray], source: FeatureSource, protocol: Protocol, batch_size: int = 8
) -> Iterator[FramePrediction]:
    """frames: the clip; masks: {frame index: (H_out, W_out) uint8 label ids} (one at least;
    255 is void, i.e. background). Yields (H_out, W_out) label maps, one per frame."""
    starts = sorted(masks)
    first = starts[0]
    out_size = masks[first].shape
    ids = np.union1d([0], np.concatenate([np.unique(m) for m in masks.values()]))
    ids = ids[ids != VOID_LABEL]
    size = input_size(protocol, *frames.size, source.stride)
    grid = (size[0] // source.stride, size[1] // source.stride)
    device = source.device
    tracked: set[int] = set()
    queue = None
    last_index = -1
    for index, original, keys in _encoded_frames(frames, source, protocol, batch_size, size, grid, skip=first):
        stem, last_index = frames.stem(index), index
        if keys is None:  # before the first given mask: nothing to propagate yet
            yield FramePrediction(index, stem, original, np.zeros(out_size, np.uint8), None)
            continue
        given = masks.get(index)
        if queue is None:
            labels, channel_ids = segmentation_labels(given, size, grid, protocol, device, ids=ids)
            queue = ContextQueue(protocol.n_context, keys.shape[0], keys.shape[1], labels.shape[1], device, protocol.pad_context)
            queue.set_first(keys, labels)
            tracked.update(int(i) for i in np.unique(given))
            # Frame of the first mask: as given (DINO), or decoded from its grid labels (CRW).
            hard = given if protocol.first_frame == "given" else decode_segmentation(labels, channel_ids, grid, size, out_size, protocol)
            yield FramePrediction(index, stem, original, hard, None)
            continue
        context_keys, context_labels = queue.context()
        labels = propagate_labels(
            keys, context_keys, context_labels, grid=grid, topk=protocol.topk, temperature=protocol.temperature,
            radius=protocol.radius, window=protocol.window, global_frames=protocol.global_frames * queue.references,
        )
        hard = decode_segmentation(labels, channel_ids, grid, size, out_size, protocol)
        new = [int(i) for i in np.unique(given) if int(i) not in tracked and i != VOID_LABEL] if given is not None else []
        if new:
            entering = np.where(np.isin(given, new), given, 0).astype(np.uint8)
            given_labels, _ = segmentation_labels(entering, size, grid, protocol, device, ids=ids)
            given_labels[:, 0] = 0  # the new objects' share only; the rest stays as predicted
            labels = labels * (1 - given_labels.sum(dim=1, keepdim=True)) + given_labels
            hard = np.where(entering > 0, entering, hard)
            tracked.update(new)
            queue.add_reference(keys, labels)
        else:
            queue.push(keys, labels)
        yield FramePrediction(index, stem, original, hard, None)
    missing = [index for index in starts if queue is None or index > last_index]
    if missing:
        raise UserError(f"{frames.where}: ends before frame {missing[0]}, which a mask was given for")


def propagate_joints(
    frames: FrameSequence, joints: np.ndarray, source: FeatureSource, protocol: Protocol, batch_size: int = 8
) -> Iterator[FramePrediction]:
    """joints (J, 2) (x, y) pixels of frame 0 -> each frame's propagated joints (CRW's rule)."""
    size = input_size(protocol, *frames.size, source.stride)
    grid = (size[0] // source.stride, size[1] // source.stride)
    height, width = frames.size
    scale = np.array([grid[1] / width, grid[0] / height])  # pixels -> cells, (x, y)
    first_labels = joint_heatmaps(joints * scale, grid, protocol.joint_sigma).to(source.device)
    queue = None
    for index, original, keys in _encoded_frames(frames, source, protocol, batch_size, size, grid, skip=0):
        if queue is None:
            queue = ContextQueue(protocol.n_context, keys.shape[0], keys.shape[1], first_labels.shape[1], source.device, protocol.pad_context)
            queue.set_first(keys, first_labels)
            labels = first_labels
        else:
            context_keys, context_labels = queue.context()
            labels = propagate_labels(
                keys, context_keys, context_labels, grid=grid, topk=protocol.topk, temperature=protocol.temperature,
                radius=protocol.radius, window=protocol.window, global_frames=protocol.global_frames,
            )
            queue.push(keys, labels)
        cells = decode_joints(labels, grid, protocol.joint_topk)
        yield FramePrediction(index, frames.stem(index), original, None, np.where(cells < 0, -1.0, cells / scale), cells)


@torch.inference_mode()  # on a generator: only while it runs, not across yields
def _encoded_frames(frames: FrameSequence, source: FeatureSource, protocol: Protocol, batch_size: int,
                    size: tuple[int, int], grid: tuple[int, int], skip: int):
    """(index, original (H0, W0, 3) uint8, keys (N, C) unit features or None) per frame; frames
    before `skip` are decoded (their outputs need them) but not encoded."""
    for batch in iter_frame_batches(frames, protocol, source.stride, batch_size, source.device):
        wanted = max(0, skip - batch.start)  # offsets before it are not encoded
        features = None
        if wanted < len(batch.originals):
            features = normalize_features(source(batch.pixels[wanted:]))  # (B', h, w, C)
            if tuple(features.shape[1:3]) != grid:
                raise ValueError(f"feature source gave a {tuple(features.shape[1:3])} grid for {size} frames, expected {grid}")
            features = features.flatten(1, 2)  # (B', N, C)
        for offset, original in enumerate(batch.originals):
            yield batch.start + offset, original, None if offset < wanted else features[offset - wanted]
