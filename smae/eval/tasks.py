"""One entry point for the four evaluations: scores of a results folder, and their printed table.

    from smae.eval.tasks import evaluate, format_scores
    scores = evaluate("davis", "DAVIS", "results/", split="val")
    print(format_scores("davis", scores, "val"))
"""
from __future__ import annotations

import math
import os

TASKS = ("davis", "jhmdb", "vip", "vos")


def evaluate(
    task: str, data_root: str | os.PathLike, results_dir: str | os.PathLike, split: str = "val", workers: int | None = None
) -> dict:
    """Scores of `results_dir` for `task` ('davis': J&F, 'jhmdb': PCK, 'vip': mIoU, 'vos': J&F
    with vos-benchmark's semantics against the data set's GroundTruth/, which YouTube-VOS keeps
    on its server and smae synth writes); see the task's module in smae.eval for the result
    formats and the returned keys."""
    if task == "vos":
        return _evaluate_vos(data_root, results_dir, workers)
    if task == "davis":
        from smae.eval.davis_evaluate import evaluate_davis as evaluate_task
    elif task == "jhmdb":
        from smae.eval.jhmdb_metrics import evaluate_jhmdb as evaluate_task
    elif task == "vip":
        from smae.eval.vip_metrics import evaluate_vip as evaluate_task
    else:
        raise ValueError(f"unknown task {task!r}; choose from {', '.join(TASKS)}")
    if not os.path.isdir(data_root):
        raise FileNotFoundError(f"data root not found: {data_root}")
    try:
        return evaluate_task(data_root, results_dir, split=split, workers=workers)
    except FileNotFoundError as error:
        from smae.layouts.detect import other_layout

        hint = other_layout(data_root, task)
        if hint is None:
            raise
        raise FileNotFoundError(f"{error}; {hint}") from None


def _evaluate_vos(data_root, results_dir, workers: int | None) -> dict:
    from pathlib import Path

    from smae.eval.folders_evaluate import evaluate_folders
    from smae.layouts.youtube_vos import GROUND_TRUTH, RESULTS

    truth = Path(data_root) / GROUND_TRUTH
    if not truth.is_dir():
        raise FileNotFoundError(f"{truth}: no full ground truth here (YouTube-VOS keeps it on its evaluation server); "
                                f"zip {Path(results_dir) / RESULTS} and upload it there")
    return evaluate_folders(truth, Path(results_dir) / RESULTS, "vos-benchmark", workers=workers)


def has_ground_truth(task: str, data_root: str | os.PathLike) -> bool:
    """False only for a YouTube-VOS folder without GroundTruth/ (its server scores it)."""
    from smae.layouts.youtube_vos import GROUND_TRUTH

    return task != "vos" or os.path.isdir(os.path.join(data_root, GROUND_TRUTH))


def format_scores(task: str, scores: dict, split: str) -> str:
    """The task's results table (for DAVIS the two tables the official tool prints)."""
    if task in ("davis", "vos"):
        from smae.eval.davis_evaluate import format_davis_table as format_table
    elif task == "jhmdb":
        from smae.eval.jhmdb_metrics import format_jhmdb_table as format_table
    elif task == "vip":
        from smae.eval.vip_metrics import format_vip_table as format_table
    else:
        raise ValueError(f"unknown task {task!r}; choose from {', '.join(TASKS)}")
    return format_table(scores, split)


def json_ready(value):
    """NaN (no defined score) -> None, recursively: strict JSON has no NaN."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {key: json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(item) for item in value]
    return value
