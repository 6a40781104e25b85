"""First-frame labels on the feature grid, and predictions back to label maps and joints.

Segmentation (DAVIS objects, VIP parts): the channels are the label ids present in the first
annotation (void 255 counts as background 0), as CRW's label set; channel k predicts id ids[k].
- in, CRW (`label_downsample="bilinear"`): id map nearest-resized to the input size, one-hot,
  then bilinear (half-pixel centres, no antialiasing: cv2.resize) to the grid.
- in, DINO (`"nearest"`): id map nearest-resized straight to the grid, one-hot.
- out: soft maps bilinear to the input size, [DINO: per-channel min-max], argmax, nearest
  resize to the annotation size.
Pose (JHMDB, as CRW): each joint a Gaussian (sigma in feature cells, peak 1) on the grid plus a
background channel (1 where no joint has mass); a propagated joint is the weighted mean of the
`joint_topk` largest cells of its map.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from .protocols import Protocol

VOID_LABEL = 255
NEAREST_MODES = {"floor": "nearest", "centre": "nearest-exact"}  # cv2 INTER_NEAREST, PIL NEAREST


def resize_ids(ids: torch.Tensor, size: tuple[int, int], rule: str) -> torch.Tensor:
    """Nearest resize of an integer map. ids (H, W) -> (size) int64."""
    if tuple(ids.shape) == tuple(size):
        return ids.long()
    resized = F.interpolate(ids[None, None].float(), size=size, mode=NEAREST_MODES[rule])
    return resized[0, 0].long()


def segmentation_labels(
    annotation: np.ndarray, size: tuple[int, int], grid: tuple[int, int], protocol: Protocol, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """annotation (H0, W0) uint8 ids; size: input (H, W); grid (h, w)
    -> labels (h*w, K) float32 on the grid, ids (K,) int64 (ids[0] = 0, background)."""
    mask = torch.from_numpy(np.where(annotation == VOID_LABEL, 0, annotation).astype(np.int64)).to(device)
    ids = torch.unique(torch.cat([mask.new_zeros(1), mask.flatten()]))  # sorted, includes 0
    index = torch.searchsorted(ids, mask)  # (H0, W0) channel of each pixel
    if protocol.label_downsample == "nearest":
        onehot = F.one_hot(resize_ids(index, grid, protocol.nearest), len(ids)).float()  # (h, w, K)
    else:
        full = F.one_hot(resize_ids(index, size, protocol.nearest), len(ids)).float()  # (H, W, K)
        onehot = F.interpolate(full.permute(2, 0, 1)[None], size=grid, mode="bilinear", align_corners=False)[0].permute(1, 2, 0)
    return onehot.reshape(grid[0] * grid[1], len(ids)).contiguous(), ids


def decode_segmentation(
    pred: torch.Tensor, ids: torch.Tensor, grid: tuple[int, int], size: tuple[int, int], out_size: tuple[int, int], protocol: Protocol
) -> np.ndarray:
    """pred (h*w, K) soft labels -> (H_out, W_out) uint8 label ids."""
    maps = pred.T.reshape(1, -1, *grid).float()
    maps = F.interpolate(maps, size=size, mode="bilinear", align_corners=False)[0]  # (K, H, W)
    if protocol.minmax_output:
        low = maps.amin(dim=(1, 2), keepdim=True)
        span = maps.amax(dim=(1, 2), keepdim=True) - low
        # DINO rescales channels whose maximum is positive; a flat one (0/0 there) is zeroed here.
        rescale = maps.amax(dim=(1, 2), keepdim=True) > 0
        maps = torch.where(rescale, (maps - low) / span.clamp_min(torch.finfo(maps.dtype).tiny), maps)
    channel = resize_ids(maps.argmax(dim=0), out_size, protocol.nearest)
    return ids[channel].to(torch.uint8).cpu().numpy()


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
