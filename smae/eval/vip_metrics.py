"""VIP body-part propagation: mean IoU over VIP's 20 classes (background included).

    from smae.eval.vip_metrics import evaluate_vip
    scores = evaluate_vip("vip", "results/")   # {"mIoU": .., "per_class_IoU": {"hat": .., ...}}

As mmaction2's VIP evaluation (used by VFS, CRW-style protocols): one confusion matrix over every
annotated frame of every video (the first frame included), ground-truth pixels labelled 255
ignored, IoU per class = diagonal / (row sum + column sum - diagonal), mIoU = mean over the
classes whose union is not empty. Results: DIR/<video>/<frame>.png, indexed or grey PNGs of class
ids named like the annotations. Scores are fractions in [0, 1].
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from smae.errors import UserError
from smae.layouts import vip
from smae.layouts.images import read_result_png
from smae.eval.parallel import map_in_workers

VIP_CLASSES = (
    "background", "hat", "hair", "sun-glasses", "upper-clothes", "dress", "coat", "socks", "pants", "gloves",
    "scarf", "skirt", "torso-skin", "face", "right-arm", "left-arm", "right-leg", "left-leg", "right-shoe", "left-shoe",
)
IGNORE_LABEL = 255


def confusion_matrix(gt: np.ndarray, pred: np.ndarray, n_classes: int = len(VIP_CLASSES)) -> np.ndarray:
    """Pixel counts [ground-truth class, predicted class], gt == 255 skipped. (H, W) x2 -> (C, C) int64.
    Values outside 0..C-1 (other than an ignored ground truth) must be rejected by the caller."""
    keep = gt != IGNORE_LABEL
    pairs = gt[keep].astype(np.int64) * n_classes + pred[keep]
    return np.bincount(pairs, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def class_iou(confusion: np.ndarray) -> np.ndarray:
    """IoU per class from a confusion matrix, NaN for a class absent from both. (C, C) -> (C,)."""
    intersection = np.diag(confusion).astype(np.float64)
    union = confusion.sum(axis=0) + confusion.sum(axis=1) - intersection
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, intersection / union, np.nan)


def _video_confusion(task: tuple[list[Path], Path]) -> np.ndarray:
    annotation_paths, results_folder = task
    n_classes = len(VIP_CLASSES)
    total = np.zeros((n_classes, n_classes), dtype=np.int64)
    for annotation_path in annotation_paths:
        gt, pred = read_result_png(annotation_path, results_folder)
        if pred.max() >= n_classes:
            raise UserError(f"{results_folder / annotation_path.name}: class id {int(pred.max())} is not a VIP class (0..{n_classes - 1})")
        invalid = (gt >= n_classes) & (gt != IGNORE_LABEL)
        if invalid.any():
            raise UserError(f"{annotation_path}: class id {int(gt[invalid][0])} is not a VIP class (0..{n_classes - 1}) nor {IGNORE_LABEL}")
        total += confusion_matrix(gt, pred, n_classes)
    return total


def evaluate_vip(
    data_root: str | os.PathLike, results_dir: str | os.PathLike, split: str = "val", workers: int | None = None
) -> dict:
    """mIoU of a results folder on a VIP split (ROOT/lists/<split>_videos.txt).

    Returns {"mIoU": .., "per_class_IoU": {class name: IoU or NaN}}."""
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise FileNotFoundError(f"results folder not found: {results_dir}")
    tasks = []
    for video in vip.videos(data_root, split):
        if not (results_dir / video).is_dir():
            raise FileNotFoundError(f"no results for video {video!r}: {results_dir / video} is missing")
        tasks.append((vip.annotation_paths(data_root, video), results_dir / video))
    confusion = sum(map_in_workers(_video_confusion, tasks, workers))
    iou = class_iou(confusion)
    return {"mIoU": float(np.nanmean(iou)), "per_class_IoU": {name: float(value) for name, value in zip(VIP_CLASSES, iou)}}


def format_vip_table(scores: dict, split: str) -> str:
    lines = [f"---------- VIP part propagation, {split} ----------", f"mIoU {scores['mIoU']:.6f}", ""]
    lines += [f"{name:>14} {value:.6f}" for name, value in scores["per_class_IoU"].items()]
    return "\n".join(lines)
