"""First-frame labels on the feature grid, and predictions back to label maps and joints.

Every resize calls the library the protocol's origin calls, because their rules differ in
ways that change output pixels on real frame sizes:
- cv2 INTER_NEAREST: output column x reads source column floor(x * (1 / (out / in))) in
  double precision, so exact-integer positions may land one column lower than the exact
  quotient (880 -> 910: 9 columns differ from torch's float32 `nearest`).
- PIL NEAREST: the sampling position starts at (in / out) / 2 and adds in / out per column in
  double precision, column = trunc(position) (832 -> 854: column 640 reads 623, not 624).
- cv2 INTER_LINEAR on float32 (CRW's soft labels) rounds differently from torch's bilinear,
  which decides exact two-label ties in the argmax.

Segmentation (DAVIS objects, VIP parts): the channels are the label ids present in the first
annotation, in increasing order; channel k predicts id ids[k]. Void 255 counts as background 0
(CRW's and DINO's scripts would carry it as one more label: a first frame with void pixels is
where smae and they part). CRW orders its channels by the annotation's BGR palette colour, the
same order as the ids for DAVIS ids 0..7; past that an exact argmax tie may pick another id.
- in, CRW (`label_downsample="bilinear"`): id map nearest-resized to the input size, one-hot,
  then bilinear (cv2.resize float32) to the grid.
- in, DINO (`"nearest"`): id map nearest-resized (PIL) straight to the grid, one-hot.
- out: soft maps bilinear to the input size (cv2 float32 or torch), [DINO: per-channel min-max],
  argmax (first maximum), nearest resize to the annotation size.
Pose (JHMDB, as CRW): each joint a Gaussian (sigma in feature cells, peak 1) on the grid plus a
background channel (1 where no joint has mass); a propagated joint is the weighted mean of the
`joint_topk` largest cells of its map.
"""
from __future__ import annotations

import math

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .protocols import Protocol

VOID_LABEL = 255


def resize_nearest(ids: np.ndarray, size: tuple[int, int], rule: str) -> np.ndarray:
    """Nearest resize of a label map by cv2's or PIL's rule. (H, W) uint8 -> size (H', W') uint8."""
    ids = np.ascontiguousarray(ids, dtype=np.uint8)
    if ids.shape == tuple(size):
        return ids
    height, width = size
    if rule == "cv2":
        return cv2.resize(ids, (width, height), interpolation=cv2.INTER_NEAREST)
    if rule == "pil":
        return np.asarray(Image.fromarray(ids).resize((width, height), Image.Resampling.NEAREST))
    raise ValueError(f"unknown nearest rule {rule!r}; choose from cv2, pil")


def resize_bilinear(maps: torch.Tensor, size: tuple[int, int], library: str) -> torch.Tensor:
    """Bilinear resize (half-pixel centres, no antialiasing) of soft maps.
    (K, H, W) float32 -> (K, size) float32; cv2 runs on the CPU, torch on the maps' device."""
    if library == "torch":
        return F.interpolate(maps[None].float(), size=size, mode="bilinear", align_corners=False)[0]
    if library != "cv2":
        raise ValueError(f"unknown bilinear library {library!r}; choose from cv2, torch")
    planes = np.ascontiguousarray(maps.float().permute(1, 2, 0).cpu().numpy())  # (H, W, K): cv2's channel-last layout
    resized = cv2.resize(planes, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
    return torch.from_numpy(resized.reshape(*size, -1)).permute(2, 0, 1)  # cv2 drops a single channel's axis


def segmentation_labels(
    annotation: np.ndarray, size: tuple[int, int], grid: tuple[int, int], protocol: Protocol, device: torch.device,
    ids: np.ndarray | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """annotation (H0, W0) uint8 ids; size: input (H, W); grid (h, w); ids: the channels' label
    ids, sorted, 0 first (default: the annotation's; more when objects enter later)
    -> labels (h*w, K) float32 on the grid, ids (K,) int64 (ids[0] = 0, background)."""
    mask = np.where(annotation == VOID_LABEL, 0, annotation).astype(np.uint8)
    ids = np.union1d([0], mask) if ids is None else np.asarray(ids)  # sorted, includes 0
    if protocol.label_downsample == "nearest":
        onehot = resize_nearest(mask, grid, protocol.label_nearest)[None] == ids[:, None, None]  # (K, h, w)
        labels = torch.from_numpy(onehot.astype(np.float32))
    else:
        full = resize_nearest(mask, size, protocol.label_nearest)[None] == ids[:, None, None]  # (K, H, W)
        labels = resize_bilinear(torch.from_numpy(full.astype(np.float32)), grid, protocol.bilinear)
    labels = labels.reshape(len(ids), grid[0] * grid[1]).T.contiguous()
    return labels.to(device), torch.from_numpy(ids.astype(np.int64))


def decode_segmentation(
    pred: torch.Tensor, ids: torch.Tensor, grid: tuple[int, int], size: tuple[int, int], out_size: tuple[int, int], protocol: Protocol
) -> np.ndarray:
    """pred (h*w, K) soft labels -> (H_out, W_out) uint8 label ids."""
    maps = resize_bilinear(pred.T.reshape(-1, *grid), size, protocol.bilinear)  # (K, H, W)
    if protocol.minmax_output:
        # DINO's norm_mask: channels whose maximum is positive become (m - min) / (max - min);
        # a constant positive channel gives NaN there, which wins torch's argmax, as in DINO.
        low = maps.amin(dim=(1, 2), keepdim=True)
        high = maps.amax(dim=(1, 2), keepdim=True)
        maps = torch.where(high > 0, (maps - low) / (high - low), maps)
    channel = maps.argmax(dim=0).cpu().numpy()  # the first maximum, as np.argmax and torch.max
    labels = ids.cpu().numpy().astype(np.uint8)[channel]
    return resize_nearest(labels, out_size, protocol.output_nearest)


def joint_heatmaps(joints: np.ndarray, grid: tuple[int, int], sigma: float) -> torch.Tensor:
    """joints (J, 2) (x, y) in feature-cell units -> (h*w, 1 + J) float32, channel 0 background.

    CRW's drawing rule (from the stacked-hourglass code): a (6 sigma + 1)-wide window whose
    top-left cell is trunc(p - 3 sigma) and whose centre is its cell (6 sigma + 1) // 2, clipped to
    the grid; a joint whose window misses the grid draws nothing.
    """
    h, w = grid
    heat = np.zeros((len(joints), h, w), dtype=np.float64)
    width = 6 * sigma + 1
    centre = width // 2
    count = math.ceil(width)  # len(np.arange(0, width))
    for channel, (x, y) in enumerate(np.asarray(joints, dtype=np.float64)):
        left, top = int(x - 3 * sigma), int(y - 3 * sigma)
        right, bottom = int(x + 3 * sigma + 1), int(y + 3 * sigma + 1)
        if left >= w or top >= h or right < 0 or bottom < 0:
            continue
        cols = np.arange(max(0, left), min(right, w, left + count))
        rows = np.arange(max(0, top), min(bottom, h, top + count))
        dx, dy = cols - left - centre, rows - top - centre
        heat[channel, rows[:, None], cols[None, :]] = np.exp(-(dx[None, :] ** 2 + dy[:, None] ** 2) / (2 * sigma * sigma))
    heat = torch.from_numpy(heat).float().permute(1, 2, 0)  # (h, w, J)
    background = (heat.sum(dim=-1, keepdim=True) == 0).float()
    return torch.cat([background, heat], dim=-1).reshape(h * w, 1 + len(joints))


def decode_joints(pred: torch.Tensor, grid: tuple[int, int], topk: int) -> np.ndarray:
    """pred (h*w, 1 + J) -> (J, 2) float64 (x, y) in feature cells; -1 for a joint with no mass."""
    maps = pred[:, 1:].float()  # background dropped
    values, cells = maps.topk(min(topk, maps.shape[0]), dim=0)  # (k, J)
    weights = values / values.sum(dim=0, keepdim=True)
    coords = torch.stack([((cells % grid[1]) * weights).sum(0), ((cells // grid[1]) * weights).sum(0)], dim=1)
    coords[maps.sum(dim=0) == 0] = -1.0
    return coords.double().cpu().numpy()
