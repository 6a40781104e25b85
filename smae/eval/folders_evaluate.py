"""J&F of any two folders of per-video PNG folders: no DAVIS layout, no split files.

    from smae.eval.folders_evaluate import evaluate_folders
    scores = evaluate_folders("gt/", "results/")                           # official DAVIS semantics
    scores = evaluate_folders("gt/", "results/", semantics="vos-benchmark")

GT/<video>/<frame>.png and RESULTS/<video>/<frame>.png, indexed or grey PNGs of object ids
(any ids in 1..254, not necessarily continuous). The videos are GT's sub-folders holding PNGs;
each needs a results folder with a PNG of every scored frame (extra result folders and files,
e.g. overlays/, are ignored). Frames are the GT PNGs in name order; the first and the last are
not scored unless `skip_first_last=False` (DAVIS's semi-supervised rule).

Two semantics, which differ in which objects a video has:
- "davis" (default), as davisvideochallenge/davis2017-evaluation: the objects are the ids of the
  first GT frame (255, void, is background); each is scored on every scored frame, present or
  not, and an object absent from both masks of a frame scores J = F = 1 there. A result id that
  is not an object is an error. On DAVIS's own folders (objects 1..K, all in the first frame)
  this is `smae evaluate --task davis` exactly. Scores: mean, recall and decay as the official
  tool, fractions in [0, 1].
- "vos-benchmark", as hkchengrex/vos-benchmark: the objects are every id seen so far, in the GT
  or the result, from the first scored frame on; an object is scored from the frame it first
  appears in (in either), and only objects seen in the GT are reported. 255 is an object like
  any other. Only means (no recall or decay), fractions (vos-benchmark prints percents).
Where they differ: an object present only in the first frame is scored by "davis" (J = F = 1 on
frames where neither mask has it, 0 where the result keeps it) and dropped by "vos-benchmark";
an object entering later (or only in the result) is ignored (GT) or an error (result) under
"davis", scored from its first frame under "vos-benchmark".
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from smae.eval.davis_evaluate import summarize
from smae.eval.davis_metrics import boundary_tolerance, frame_scores
from smae.layouts.images import read_label_png, read_result_png
from smae.eval.parallel import map_in_workers

SEMANTICS = ("davis", "vos-benchmark")
VOID_LABEL = 255


def folder_videos(gt_dir: Path) -> list[str]:
    """Names of GT's sub-folders that hold PNGs, sorted."""
    return sorted(entry.name for entry in gt_dir.iterdir() if entry.is_dir() and any(entry.glob("*.png")))


def _lookup(ids: list[int]) -> np.ndarray:
    """(256,) table id -> object index 1..len(ids), 0 for any other id."""
    table = np.zeros(256, dtype=np.int64)
    table[np.asarray(ids, dtype=np.int64)] = np.arange(1, len(ids) + 1)
    return table


def score_video_davis(frames: list[Path], results: Path, skip_first_last: bool):
    """-> (object ids, J (K, T), F (K, T)) with the objects of the first GT frame."""
    first = read_label_png(frames[0])
    objects = [int(i) for i in np.unique(first) if i not in (0, VOID_LABEL)]
    table = _lookup(objects)
    scored = frames[1:-1] if skip_first_last else frames
    radius = boundary_tolerance(*first.shape)
    j_scores, f_scores = np.zeros((len(objects), len(scored))), np.zeros((len(objects), len(scored)))
    for index, frame in enumerate(scored):
        gt, pred = read_result_png(frame, results)
        stray = np.setdiff1d(np.unique(pred), [0, *objects])
        if stray.size:
            raise ValueError(
                f"{results / frame.name}: object id {int(stray[0])} is not in the first ground-truth frame "
                f"{frames[0]} (objects {objects}); DAVIS semantics score only those, use --semantics vos-benchmark"
            )
        j_scores[:, index], f_scores[:, index] = frame_scores(table[gt], table[pred], len(objects), radius)
    return objects, j_scores, f_scores


def score_video_vos_benchmark(frames: list[Path], results: Path, skip_first_last: bool):
    """-> (object ids, J (K, T), F (K, T)), NaN before an object's first appearance; only the
    objects seen in the GT."""
    scored = frames[1:-1] if skip_first_last else frames
    seen: list[int] = []  # in order of first appearance
    in_gt: set[int] = set()
    rows_j: list[list[float]] = []
    rows_f: list[list[float]] = []
    for index, frame in enumerate(scored):
        gt, pred = read_result_png(frame, results)
        gt_ids = [int(i) for i in np.unique(gt) if i != 0]
        in_gt.update(gt_ids)
        for new in sorted(set(gt_ids + [int(i) for i in np.unique(pred) if i != 0]) - set(seen)):
            seen.append(new)
            rows_j.append([np.nan] * index)
            rows_f.append([np.nan] * index)
        table = _lookup(seen)
        j, f = frame_scores(table[gt], table[pred], len(seen), boundary_tolerance(*gt.shape))
        for row_j, row_f, value_j, value_f in zip(rows_j, rows_f, j, f):
            row_j.append(value_j)
            row_f.append(value_f)
    keep = [k for k, object_id in enumerate(seen) if object_id in in_gt]
    order = sorted(keep, key=lambda k: seen[k])
    width = len(scored)
    j_scores = np.array([rows_j[k] for k in order]).reshape(len(order), width)
    f_scores = np.array([rows_f[k] for k in order]).reshape(len(order), width)
    return [seen[k] for k in order], j_scores, f_scores


def _score(task: tuple[str, list[Path], Path, str, bool]):
    video, frames, results, semantics, skip_first_last = task
    scorer = score_video_davis if semantics == "davis" else score_video_vos_benchmark
    return (video, *scorer(frames, results, skip_first_last))


def evaluate_folders(
    gt_dir: str | os.PathLike,
    results_dir: str | os.PathLike,
    semantics: str = "davis",
    skip_first_last: bool = True,
    workers: int | None = None,
) -> dict:
    """J&F of RESULTS against GT (module docstring). Returns the keys of
    smae.eval.davis_evaluate.GLOBAL_KEYS ("davis"; "vos-benchmark": the -Mean ones) and
    "per_object": {"<video>_<id>": {"J-Mean": .., "F-Mean": ..}}."""
    if semantics not in SEMANTICS:
        raise ValueError(f"unknown semantics {semantics!r}; choose from {', '.join(SEMANTICS)}")
    gt_dir, results_dir = Path(gt_dir), Path(results_dir)
    for flag, folder in (("--gt", gt_dir), ("--results", results_dir)):
        if not folder.is_dir():
            raise FileNotFoundError(f"{flag} {folder}: not a folder; give a folder of per-video PNG folders")
    videos = folder_videos(gt_dir)
    if not videos:
        raise FileNotFoundError(f"--gt {gt_dir}: no sub-folder holds PNGs; expected GT/<video>/<frame>.png")
    tasks = []
    for video in videos:
        frames = sorted((gt_dir / video).glob("*.png"))
        if skip_first_last and len(frames) < 3:
            raise ValueError(f"{gt_dir / video}: {len(frames)} frames, nothing left once the first and last are skipped; "
                             "use --all-frames to score every frame")
        if not (results_dir / video).is_dir():
            raise FileNotFoundError(f"no results for video {video!r}: {results_dir / video} is missing")
        tasks.append((video, frames, results_dir / video, semantics, skip_first_last))
    per_video = map_in_workers(_score, tasks, workers)
    if semantics == "davis":
        return summarize([(video, j, f) for video, _, j, f in per_video], [ids for _, ids, _, _ in per_video])
    return _summarize_means(per_video)


def _summarize_means(per_video) -> dict:
    """vos-benchmark's numbers: per object the mean over its scored frames, then plain means."""
    per_object, j_means, f_means = {}, [], []
    for video, ids, j_scores, f_scores in per_video:
        for object_id, j_row, f_row in zip(ids, j_scores, f_scores):
            j_mean, f_mean = float(np.nanmean(j_row)), float(np.nanmean(f_row))
            per_object[f"{video}_{object_id}"] = {"J-Mean": j_mean, "F-Mean": f_mean}
            j_means.append(j_mean)
            f_means.append(f_mean)
    if not per_object:
        raise ValueError("no object to score: no ground-truth frame that is scored holds an object")
    j_mean, f_mean = float(np.mean(j_means)), float(np.mean(f_means))
    return {"J&F-Mean": (j_mean + f_mean) / 2.0, "J-Mean": j_mean, "F-Mean": f_mean, "per_object": per_object}
