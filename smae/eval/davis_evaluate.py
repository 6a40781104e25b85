"""DAVIS-2017 semi-supervised evaluation of a results folder: the official numbers, faster.

    from smae.eval.davis_evaluate import evaluate_davis
    scores = evaluate_davis("DAVIS", "results/", split="val")   # {"J&F-Mean": ..., "per_object": ...}

Same protocol as davisvideochallenge/davis2017-evaluation (semi-supervised): the objects of a
sequence are the ids 1..K with K the largest id of its first annotation; the first and last frames
are not scored; per object, statistics() of its per-frame J and F; the global numbers are plain
means over all objects of all sequences; J&F-Mean = (J-Mean + F-Mean) / 2.

An object absent from every scored result frame is scored as an empty mask, as the official
tool does: when the highest ids are missing from all results it pads them with all-zero masks
and scores those (it stops, "an index higher than the number of objects", only for a result id
above K, an error here too).

Differences from the official tool, all deliberate: nothing is cached (the official tool re-reads
stale CSV files left in the results folder); errors name the offending file. Sequences are scored
in parallel worker processes. For other folder layouts and vos-benchmark's semantics see
smae.eval.folders_evaluate.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from smae.errors import UserError
from smae.eval.davis_metrics import boundary_tolerance, frame_scores, statistics
from smae.layouts import davis
from smae.layouts.images import read_label_png, read_result_png
from smae.eval.parallel import map_in_workers

GLOBAL_KEYS = ("J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay")
VOID_LABEL = 255


def evaluate_davis_sequence(annotation_paths: list[Path], results_folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame J and F of every object of one sequence, first and last frames excluded.

    annotation_paths: the sequence's annotation PNGs in frame order; results_folder: holds a PNG
    of the same name for each scored frame. Returns (J, F), each (K, T - 2) float64.
    """
    first = read_label_png(annotation_paths[0])
    first = np.where(first == VOID_LABEL, 0, first)
    n_objects = int(first.max())
    radius = boundary_tolerance(*first.shape)
    scored = annotation_paths[1:-1]
    j_scores = np.zeros((n_objects, len(scored)))
    f_scores = np.zeros((n_objects, len(scored)))
    for index, annotation_path in enumerate(scored):
        gt, pred = read_result_png(annotation_path, results_folder)
        if gt.shape != first.shape:
            raise UserError(f"{annotation_path}: size {gt.shape} differs from the sequence's first frame {first.shape}")
        highest = int(pred.max())
        if highest > n_objects:
            raise UserError(
                f"{results_folder / annotation_path.name}: object id {highest} is above the number of objects in the sequence's "
                f"first annotation ({n_objects}, {annotation_paths[0]})"
            )
        j_scores[:, index], f_scores[:, index] = frame_scores(gt, pred, n_objects, radius)
    return j_scores, f_scores


def _score_sequence(task: tuple[str, list[Path], Path]) -> tuple[str, np.ndarray, np.ndarray]:
    sequence, annotation_paths, results_folder = task
    return (sequence, *evaluate_davis_sequence(annotation_paths, results_folder))


def evaluate_davis(
    data_root: str | os.PathLike,
    results_dir: str | os.PathLike,
    split: str = "val",
    workers: int | None = None,
) -> dict:
    """Scores a results folder against a DAVIS-2017 split.

    results_dir/<seq>/<frame>.png: indexed PNGs named like the annotations. workers: processes
    (default: one per available core; 1 runs in this process). Returns the dict of GLOBAL_KEYS
    plus "per_object": {"<seq>_<id>": {"J-Mean": .., "F-Mean": ..}}, values as Python floats.
    """
    data_root, results_dir = Path(data_root), Path(results_dir)
    if not results_dir.is_dir():
        raise FileNotFoundError(f"results folder not found: {results_dir}")
    tasks = []
    for sequence in davis.sequences(data_root, split):
        results_folder = results_dir / sequence
        if not results_folder.is_dir():
            raise FileNotFoundError(f"no results for sequence {sequence!r}: {results_folder} is missing")
        tasks.append((sequence, davis.annotation_paths(data_root, sequence), results_folder))
    per_sequence = map_in_workers(_score_sequence, tasks, workers)
    return summarize(per_sequence)


def summarize(per_sequence: list[tuple[str, np.ndarray, np.ndarray]], object_ids: list[list[int]] | None = None) -> dict:
    """Global and per-object statistics from (sequence, J (K, T), F (K, T)) in sequence order.
    object_ids: each sequence's K object ids, naming "<seq>_<id>" (default 1..K)."""
    pooled = {measure: {"Mean": [], "Recall": [], "Decay": []} for measure in ("J", "F")}
    per_object = {}
    for position, (sequence, j_scores, f_scores) in enumerate(per_sequence):
        ids = object_ids[position] if object_ids is not None else range(1, j_scores.shape[0] + 1)
        for object_index, object_id in enumerate(ids):
            means = {}
            for measure, scores in (("J", j_scores), ("F", f_scores)):
                mean, recall, decay = statistics(scores[object_index])
                pooled[measure]["Mean"].append(mean)
                pooled[measure]["Recall"].append(recall)
                pooled[measure]["Decay"].append(decay)
                means[f"{measure}-Mean"] = mean
            per_object[f"{sequence}_{object_id}"] = means
    if not per_object:
        raise ValueError("no object to score: every sequence's first annotation is empty")
    # Plain means (not nanmean) of 1-D lists, as the official tool: same summation order, and
    # an object with a NaN statistic makes the global one NaN.
    values = {f"{measure}-{name}": float(np.mean(items)) for measure, stats in pooled.items() for name, items in stats.items()}
    values["J&F-Mean"] = (values["J-Mean"] + values["F-Mean"]) / 2.0
    return {**{key: values[key] for key in GLOBAL_KEYS}, "per_object": per_object}


def format_davis_table(scores: dict, split: str) -> str:
    """The two tables the official tool prints: global results, then J-Mean/F-Mean per object."""
    lines = [f"--------------------------- Global results for {split} ---------------------------"]
    keys = [key for key in GLOBAL_KEYS if key in scores]  # vos-benchmark's semantics: means only
    lines += _format_columns(keys, [[scores[key] for key in keys]])
    lines += ["", f"---------- Per sequence results for {split} ----------"]
    rows = [[name, item["J-Mean"], item["F-Mean"]] for name, item in scores["per_object"].items()]
    lines += _format_columns(["Sequence", "J-Mean", "F-Mean"], rows)
    return "\n".join(lines)


def _format_columns(header: list[str], rows: list[list]) -> list[str]:
    """Right-aligned columns, floats with 6 decimals (the look of pandas' to_string)."""
    cells = [[value if isinstance(value, str) else f"{value:.6f}" for value in row] for row in rows]
    widths = [max([len(name)] + [len(row[i]) for row in cells]) for i, name in enumerate(header)]
    return [" ".join(cell.rjust(width) for cell, width in zip(row, widths)) for row in [header] + cells]
