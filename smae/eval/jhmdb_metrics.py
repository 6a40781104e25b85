"""JHMDB pose propagation: PCK@0.1 and PCK@0.2, as ajabri/videowalk's eval_pck.py computes them.

    from smae.eval.jhmdb_metrics import evaluate_jhmdb
    scores = evaluate_jhmdb("jhmdb", "results/")   # {"PCK@0.1": .., "PCK@0.2": .., "per_joint": ..}

Results: DIR/<action>/<video>.npy, (T, 15, 2) float (x, y) of each joint in 0-based pixel
coordinates of the original frame (the ground truth's pos_img minus 1); a negative x marks a
joint the method lost (CRW's convention). Loaded with allow_pickle=False.

Per frame t >= 1 (frame 0 is given) and joint j with a prediction (x >= 0): distance to the
ground truth / (0.6 * diagonal of the box around the frame's ground-truth joints that have a
prediction). PCK@a of a joint = fraction of its distances <= a over all frames of all videos;
the score is the mean over the 15 joints. Scores are fractions in [0, 1] (CRW prints percents).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from smae.errors import UserError
from smae.layouts import jhmdb
from smae.eval.parallel import map_in_workers

PCK_THRESHOLDS = (0.1, 0.2)
BOX_SCALE = 0.6  # the reference length is 0.6 x the joint box diagonal


def normalized_distances(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Prediction error over the frame's reference length, NaN where not scored.

    pred, gt: (T, J, 2) float (x, y). Returns (T, J) float64; frame 0 and joints with a negative
    predicted x are NaN; an empty box (all joints on one point) gives inf, a miss. The box starts from CRW's initial values (min 1e6, max -1), which only
    matters when every box coordinate is below -1.
    """
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    predicted = pred[..., 0] >= 0  # (T, J)
    low = np.where(predicted[..., None], gt, np.inf).min(axis=1, initial=1e6)  # (T, 2)
    high = np.where(predicted[..., None], gt, -np.inf).max(axis=1, initial=-1.0)
    reference = BOX_SCALE * np.linalg.norm(high - low, axis=-1)  # (T,)
    with np.errstate(divide="ignore", invalid="ignore"):
        distances = np.linalg.norm(pred - gt, axis=-1) / reference[:, None]
    distances[np.isnan(distances)] = np.inf  # 0 / 0 (a one-point box): a miss, as in CRW
    distances[~predicted] = np.nan
    distances[0] = np.nan
    return distances


def pck(distances: np.ndarray, threshold: float) -> np.ndarray:
    """Per-joint PCK: fraction of the scored distances (non-NaN) <= threshold. (N, J) -> (J,)."""
    scored = ~np.isnan(distances)
    counts = scored.sum(axis=0)
    if np.any(counts == 0):
        raise ValueError(f"joints {np.flatnonzero(counts == 0).tolist()} have no scored frame (a video needs 2+ frames and predictions with x >= 0)")
    with np.errstate(invalid="ignore"):
        hits = (distances <= threshold).sum(axis=0)  # NaN compares False
    return hits / counts


def _video_distances(task: tuple[Path, Path]) -> np.ndarray:
    mat_path, result_path = task
    gt = jhmdb.read_joints(mat_path)
    if not result_path.is_file():
        raise FileNotFoundError(f"result missing: {result_path} (joints for {mat_path})")
    try:
        pred = np.load(result_path, allow_pickle=False)
    except Exception as error:  # not an .npy file, truncated, or an object array
        raise UserError(f"{result_path}: not a plain .npy array of joints ({type(error).__name__}: {error}); "
                        f"write it again with numpy.save") from None
    if pred.shape != gt.shape or not np.issubdtype(pred.dtype, np.floating):
        raise UserError(f"{result_path}: expected float joints of shape {gt.shape} (frames, joints, xy) like {mat_path}, got {pred.dtype} {pred.shape}")
    if not np.all(np.isfinite(pred)):
        raise UserError(f"{result_path}: joints must be finite (mark a lost joint with x = -1)")
    return normalized_distances(pred, gt)


def evaluate_jhmdb(
    data_root: str | os.PathLike, results_dir: str | os.PathLike, split: str = "val", workers: int | None = None
) -> dict:
    """PCK of a results folder on a JHMDB split list (ROOT/jhmdb_<split>list.txt).

    Returns {"PCK@0.1": .., "PCK@0.2": .., "per_joint": {"PCK@0.1": [15 floats], ...}}.
    """
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise FileNotFoundError(f"results folder not found: {results_dir}")
    tasks = [(mat, results_dir / f"{jhmdb.video_key(frames)}.npy") for frames, mat in jhmdb.videos(data_root, split)]
    distances = np.concatenate(map_in_workers(_video_distances, tasks, workers), axis=0)  # (sum T, J)
    scores, per_joint = {}, {}
    for threshold in PCK_THRESHOLDS:
        key = f"PCK@{threshold:g}"
        joint_pck = pck(distances, threshold)
        scores[key] = float(joint_pck.mean())
        per_joint[key] = [float(value) for value in joint_pck]
    return {**scores, "per_joint": per_joint}


def format_jhmdb_table(scores: dict, split: str) -> str:
    keys = [f"PCK@{threshold:g}" for threshold in PCK_THRESHOLDS]
    lines = [f"---------- JHMDB pose propagation, {split} ----------", "  ".join(f"{key:>8}" for key in keys)]
    lines.append("  ".join(f"{scores[key]:>8.6f}" for key in keys))
    lines += ["", "joint " + "  ".join(f"{key:>8}" for key in keys)]
    for joint in range(len(scores["per_joint"][keys[0]])):
        lines.append(f"{joint:>5} " + "  ".join(f"{scores['per_joint'][key][joint]:>8.6f}" for key in keys))
    return "\n".join(lines)
