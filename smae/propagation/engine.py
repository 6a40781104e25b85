"""The per-video propagation loop, with memory bounded by the context, not by the video.

For frame 0 the labels come from its annotation; for every later frame t:
    labels_t = propagate_labels(features_t, context features, context labels)
where the context is the first frame (features and first-frame labels) plus the n previous
frames with their *predicted* soft labels (never ground truth: that would leak labels). The
context lives in a fixed ring buffer of 1 + n slots; frames are decoded and encoded one batch at
a time. Peak memory: one batch of frames and features, plus (1 + n) x grid x (C + K) floats,
whatever the video length.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch

from smae.eval.layouts_read import read_jhmdb_joints, read_label_png
from smae.kernels import propagate_labels

from .features import FeatureSource, normalize_features
from .labels import decode_joints, decode_segmentation, joint_heatmaps, segmentation_labels
from .protocols import Protocol, input_size
from .videos import Video, frame_size, iter_frame_batches


class ContextQueue:
    """Slot 0: the first frame; slots 1..n: a ring of the n most recent frames.

    Order inside the ring does not matter: propagation ranks all context keys jointly, and only
    slot 0 is special (searched globally under CRW's rule). `pad=True` fills the ring with copies
    of the first frame at the start, as CRW's context bank does. Keys stay fp32: on a GPU the
    kernel scores candidates with fp16 tensor-core products of a rounded copy and re-scores the
    kept ones from these, so the labels match the fp32 reference's.
    """

    def __init__(self, n_recent: int, cells: int, channels: int, classes: int, device: torch.device, pad: bool):
        self.capacity = 1 + n_recent
        self.keys = torch.zeros(self.capacity, cells, channels, device=device)  # (1 + n, N, C)
        self.labels = torch.zeros(self.capacity, cells, classes, device=device)  # (1 + n, N, K)
        self.pad = pad
        self.size = 0  # valid slots
        self._next = 1  # ring slot the next frame overwrites

    def set_first(self, keys: torch.Tensor, labels: torch.Tensor) -> None:
        """keys (N, C), labels (N, K) of the first frame."""
        fill = self.capacity if self.pad else 1
        self.keys[:fill] = keys
        self.labels[:fill] = labels
        self.size, self._next = fill, 1

    def push(self, keys: torch.Tensor, labels: torch.Tensor) -> None:
        """Adds a frame's keys (N, C) and predicted labels (N, K), dropping the oldest recent one."""
        if self.capacity == 1:
            return
        self.keys[self._next] = keys
        self.labels[self._next] = labels
        self.size = max(self.size, self._next + 1)
        self._next = self._next + 1 if self._next + 1 < self.capacity else 1

    def context(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(T, N, C) keys and (T, N, K) labels of the valid slots, first frame first (views)."""
        return self.keys[:self.size], self.labels[:self.size]


@dataclass
class FramePrediction:
    index: int  # frame index in the video
    original: np.ndarray  # (H0, W0, 3) uint8 RGB frame
    labels: np.ndarray | None  # segmentation: (H_out, W_out) uint8 label ids
    joints: np.ndarray | None  # pose: (J, 2) float64 (x, y) in original-frame pixels, -1 when lost
    joint_cells: np.ndarray | None = None  # pose: the same in feature cells (CRW's eval_pck input)


@torch.inference_mode()  # on a generator: only while it runs, not across yields
def propagate_video(
    video: Video,
    source: FeatureSource,
    protocol: Protocol,
    batch_size: int = 8,
) -> Iterator[FramePrediction]:
    """Propagates the first frame's labels through `video`; yields each frame's result in order."""
    device = source.device
    height, width = frame_size(video.frames[0])
    size = input_size(protocol, height, width, source.stride)
    grid = (size[0] // source.stride, size[1] // source.stride)
    first_labels, decode = _first_frame(video, size, grid, (height, width), protocol, device)
    queue = None
    for batch in iter_frame_batches(video.frames, protocol, source.stride, batch_size, device):
        features = normalize_features(source(batch.pixels))  # (B, h, w, C)
        if tuple(features.shape[1:3]) != grid:
            raise ValueError(f"feature source gave a {tuple(features.shape[1:3])} grid for {size} frames, expected {grid}")
        features = features.flatten(1, 2)  # (B, N, C)
        for offset, keys in enumerate(features):
            index = batch.start + offset
            if queue is None:
                queue = ContextQueue(protocol.n_context, keys.shape[0], keys.shape[1], first_labels.shape[1], device, protocol.pad_context)
                queue.set_first(keys, first_labels)
                labels = first_labels
            else:
                context_keys, context_labels = queue.context()
                labels = propagate_labels(
                    keys, context_keys, context_labels, grid=grid, topk=protocol.topk, temperature=protocol.temperature,
                    radius=protocol.radius, window=protocol.window, global_frames=protocol.global_frames,
                )
                queue.push(keys, labels)
            yield decode(index, batch.originals[offset], labels)


def _first_frame(video: Video, size, grid, original_size, protocol: Protocol, device: torch.device):
    """The first frame's labels on the grid (N, K), and the decoder of one frame's soft labels."""
    if video.kind == "segmentation":
        annotation = read_label_png(video.annotation)
        labels, ids = segmentation_labels(annotation, size, grid, protocol, device)
        out_size = annotation.shape

        def decode(index: int, original: np.ndarray, soft: torch.Tensor) -> FramePrediction:
            # Frame 0: its annotation as given (DINO), or decoded from its grid labels (CRW).
            if index == 0 and protocol.first_frame == "given":
                hard = annotation
            else:
                hard = decode_segmentation(soft, ids, grid, size, out_size, protocol)
            return FramePrediction(index, original, hard, None)

        return labels, decode
    joints = read_jhmdb_joints(video.annotation)[0]  # (J, 2) pixels of frame 0
    scale = np.array([grid[1] / original_size[1], grid[0] / original_size[0]])  # pixels -> cells, (x, y)
    labels = joint_heatmaps(joints * scale, grid, protocol.joint_sigma).to(device)

    def decode(index: int, original: np.ndarray, soft: torch.Tensor) -> FramePrediction:
        cells = decode_joints(soft, grid, protocol.joint_topk)
        return FramePrediction(index, original, None, np.where(cells < 0, -1.0, cells / scale), cells)

    return labels, decode
