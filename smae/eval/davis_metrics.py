"""DAVIS-2017 region (J) and boundary (F) measures, numerically identical to the official evaluator.

Semantics follow davisvideochallenge/davis2017-evaluation (semi-supervised mode):
- J: intersection over union of one object's ground-truth and predicted masks; 1 when both are
  empty. Void pixels (255) count as background: the official tool turns 255 into 0 when it reads
  the annotations, so the void mask it later derives from them is always empty.
- F: boundary F-measure. Boundaries come from the seg2bmap rule: a pixel is a boundary pixel when
  it differs from its east, south or south-east neighbour; on the last row only the east
  neighbour counts, on the last column only the south one, the bottom-right pixel never is.
  A boundary pixel is matched when the other mask has a boundary pixel within the disk
  x^2 + y^2 <= r^2, r = ceil(0.008 * sqrt(H^2 + W^2)) (skimage `disk`, cv2 `dilate`: pixels
  outside the image never match). Precision = matched predicted / predicted boundary pixels,
  recall = matched ground-truth / ground-truth boundary pixels; no predicted boundary: P=1, R=0;
  no ground-truth boundary: P=0, R=1; neither: P=R=1; F = 2PR / (P + R), 0 when P + R = 0.
- statistics(): mean, recall (fraction > 0.5) and decay (mean of the first of four overlapping
  bins minus mean of the last), as the official `db_statistics`.

Two implementations: `seg2bmap` and `dilate_disk` below are the plain boolean specification
(one shifted OR per disk pixel, as cv2 does it); `frame_scores` scores all objects of a frame at
once on maps packed 64 pixels to a word (smae.eval.bitmaps), cropped to the labelled region and
then to the box of the boundary pixels, which is what makes evaluation fast. Tests check one
against the other.
"""
from __future__ import annotations

import math

import numpy as np

from smae.eval import bitmaps

BOUNDARY_THRESHOLD = 0.008  # fraction of the image diagonal (official `bound_th`)


def boundary_tolerance(height: int, width: int, bound_th: float = BOUNDARY_THRESHOLD) -> int:
    """Disk radius in pixels: `bound_th` itself when >= 1, else ceil(bound_th * image diagonal)."""
    if bound_th >= 1:
        return int(bound_th)
    return int(math.ceil(bound_th * math.sqrt(height * height + width * width)))


def seg2bmap(masks: np.ndarray) -> np.ndarray:
    """Boundary maps of binary masks by the seg2bmap rule. (..., H, W) bool -> (..., H, W) bool."""
    seg = masks.astype(bool, copy=False)
    east = np.zeros_like(seg)
    east[..., :, :-1] = seg[..., :, 1:]
    south = np.zeros_like(seg)
    south[..., :-1, :] = seg[..., 1:, :]
    south_east = np.zeros_like(seg)
    south_east[..., :-1, :-1] = seg[..., 1:, 1:]
    bmap = (seg ^ east) | (seg ^ south) | (seg ^ south_east)
    # Border rule of the original (Martin 2003) code: the last row compares with the east
    # neighbour only, the last column with the south neighbour only.
    bmap[..., -1, :] = seg[..., -1, :] ^ east[..., -1, :]
    bmap[..., :, -1] = seg[..., :, -1] ^ south[..., :, -1]
    bmap[..., -1, -1] = False
    return bmap


def disk_offsets(radius: int) -> list[tuple[int, int]]:
    """(dy, dx) of the disk x^2 + y^2 <= r^2 (skimage `disk(r)`), row by row."""
    return [(dy, dx) for dy in range(-radius, radius + 1) for dx in range(-radius, radius + 1) if dy * dy + dx * dx <= radius * radius]


def dilate_disk(maps: np.ndarray, radius: int) -> np.ndarray:
    """Binary dilation by the disk, pixels outside the map never set anything (cv2.dilate's
    border). Reference: one shifted OR per disk offset. (..., H, W) bool -> (..., H, W) bool."""
    maps = maps.astype(bool, copy=False)
    height, width = maps.shape[-2:]
    out = np.zeros_like(maps)
    for dy, dx in disk_offsets(radius):
        if abs(dy) >= height or abs(dx) >= width:
            continue
        # out[y, x] |= maps[y + dy, x + dx] where both are inside the map
        out[..., max(-dy, 0) : height - max(dy, 0), max(-dx, 0) : width - max(dx, 0)] |= maps[
            ..., max(dy, 0) : height - max(-dy, 0), max(dx, 0) : width - max(-dx, 0)
        ]
    return out


def jaccard_from_counts(intersection: np.ndarray, union: np.ndarray) -> np.ndarray:
    """IoU per entry, 1 where the union is empty. Integer arrays (...) -> float64 (...)."""
    union = np.asarray(union)
    safe = np.where(union == 0, 1, union)
    return np.where(union == 0, 1.0, np.asarray(intersection) / safe)


def f_measure_from_counts(
    pred_matched: np.ndarray, n_pred: np.ndarray, gt_matched: np.ndarray, n_gt: np.ndarray
) -> np.ndarray:
    """Boundary F-measure from matched/total boundary pixel counts (arrays of equal shape),
    with the official special cases for empty boundaries. -> float64, same shape."""
    n_pred = np.asarray(n_pred, dtype=np.float64)
    n_gt = np.asarray(n_gt, dtype=np.float64)
    precision = np.asarray(pred_matched, dtype=np.float64) / np.maximum(n_pred, 1)
    recall = np.asarray(gt_matched, dtype=np.float64) / np.maximum(n_gt, 1)
    precision = np.where(n_pred == 0, 1.0, np.where(n_gt == 0, 0.0, precision))
    recall = np.where(n_gt == 0, 1.0, np.where(n_pred == 0, 0.0, recall))
    denominator = precision + recall
    return np.where(denominator == 0, 0.0, 2 * precision * recall / np.where(denominator == 0, 1, denominator))


def _labelled_crop(gt_labels: np.ndarray, pred_labels: np.ndarray) -> tuple[slice, slice] | None:
    """(rows, cols) around every nonzero label of either (H, W) map, None if there is none.

    One more row/column on each side where the image has one. Then the boundary rule on the crop
    equals the full image's: outside the crop nothing differs from its neighbours, the pixel
    before the first labelled row/column is inside, and a crop edge that is not the image edge is
    an all-zero line, where the last-row/last-column rule and the full rule both give 0."""
    rows = np.flatnonzero(gt_labels.any(axis=1) | pred_labels.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(gt_labels.any(axis=0) | pred_labels.any(axis=0))
    height, width = gt_labels.shape
    return (
        slice(max(int(rows[0]) - 1, 0), min(int(rows[-1]) + 2, height)),
        slice(max(int(cols[0]) - 1, 0), min(int(cols[-1]) + 2, width)),
    )


def frame_scores(
    gt_labels: np.ndarray, pred_labels: np.ndarray, n_objects: int, radius: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """J and F of objects 1..n_objects in one frame.

    gt_labels, pred_labels: (H, W) integer label maps (0 background; ground-truth values that are
    not an object id, e.g. 255, are background). radius: boundary tolerance, by default
    `boundary_tolerance(H, W)`. Returns (J, F), each (n_objects,) float64.
    """
    if gt_labels.shape != pred_labels.shape:
        raise ValueError(f"label maps differ in size: {gt_labels.shape} vs {pred_labels.shape}")
    if radius is None:
        radius = boundary_tolerance(*gt_labels.shape)
    crop = _labelled_crop(gt_labels, pred_labels)
    if crop is None:  # nothing but background: every object is empty in both maps
        return np.ones(n_objects), np.ones(n_objects)
    labels = np.stack([gt_labels[crop], pred_labels[crop]])  # (2, h, w)
    masks = bitmaps.pack_label_masks(labels, np.arange(1, n_objects + 1))  # (2, K, h, n_words)
    gt, pred = masks
    intersection = bitmaps.popcount(gt & pred)
    union = bitmaps.popcount(gt | pred)
    boundary = bitmaps.boundaries(masks, labels.shape[-1])
    n_gt, n_pred = bitmaps.popcount(boundary)
    gt_matched = pred_matched = np.zeros(n_objects, dtype=np.int64)
    box = bitmaps.occupied_box(boundary)
    if box is not None:
        # Every boundary pixel lies in the box and a dilation only spreads boundary pixels, so
        # matching on the box is exact.
        boundary = boundary[..., box[0], box[1]]
        dilated = bitmaps.dilate_disk(boundary, radius)
        gt_matched = bitmaps.popcount(boundary[0] & dilated[1])
        pred_matched = bitmaps.popcount(boundary[1] & dilated[0])
    return jaccard_from_counts(intersection, union), f_measure_from_counts(pred_matched, n_pred, gt_matched, n_gt)


def statistics(values: np.ndarray) -> tuple[float, float, float]:
    """(mean, recall, decay) of one object's per-frame scores (T,), as the official db_statistics.

    mean ignores NaN; recall is the mean of (value > 0.5) with NaN counting as a miss; decay is
    nanmean(bin 0) - nanmean(bin 3) with bin edges round(linspace(1, T, 5) + 1e-10) - 1 and bin i
    = values[e_i : e_(i+1) + 1]. The official code stores the edges as uint8, so for T > 256
    they wrap modulo 256 (NumPy's float-to-uint8 cast on x86); reproduced, for the same numbers.
    """
    values = np.asarray(values, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = _nanmean(values)
        recall = float(np.mean(values > 0.5)) if values.size else math.nan
        edges = (np.round(np.linspace(1, len(values), 5) + 1e-10) - 1).astype(np.int64) % 256
        first = values[edges[0] : edges[1] + 1]
        last = values[edges[3] : edges[4] + 1]
        decay = _nanmean(first) - _nanmean(last)
    return mean, recall, decay


def _nanmean(values: np.ndarray) -> float:
    """np.nanmean without its warning: NaN for an empty or all-NaN input."""
    finite = values[~np.isnan(values)]
    return float(finite.mean()) if finite.size else math.nan
