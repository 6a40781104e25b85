"""One entry point for the three evaluations: scores of a results folder, and their printed table.

    from smae.eval.tasks import evaluate, format_scores
    scores = evaluate("davis", "DAVIS", "results/", split="val")
    print(format_scores("davis", scores, "val"))
"""
from __future__ import annotations

import math
import os

TASKS = ("davis", "jhmdb", "vip")


def evaluate(
    task: str, data_root: str | os.PathLike, results_dir: str | os.PathLike, split: str = "val", workers: int | None = None
) -> dict:
    """Scores of `results_dir` for `task` ('davis': J&F, 'jhmdb': PCK, 'vip': mIoU); see the
    task's module in smae.eval for the result formats and the returned keys."""
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
    return evaluate_task(data_root, results_dir, split=split, workers=workers)


def format_scores(task: str, scores: dict, split: str) -> str:
    """The task's results table (for DAVIS the two tables the official tool prints)."""
    if task == "davis":
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
