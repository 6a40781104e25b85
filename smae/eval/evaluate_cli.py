"""`smae evaluate`: official scores of a results folder, nothing cached between runs.

    smae evaluate --task davis --data DAVIS --results results/ --json scores.json
    smae evaluate --task jhmdb --data jhmdb --results results/
    smae evaluate --task vip --data vip --results results/ --split val

DAVIS-2017 (semi-supervised J&F, numerically the official davis2017-evaluation): results/<seq>/
<frame>.png indexed PNGs. JHMDB (PCK@0.1/0.2 as videowalk): results/<action>/<video>.npy joints
(T, 15, 2). VIP (mIoU): results/<video>/<frame>.png class ids. Prints the task's table; --json
also writes the scores (NaN as null), atomically.
"""
from __future__ import annotations

import argparse

from smae.eval.tasks import TASKS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", required=True, choices=TASKS, help="which benchmark the results are for")
    parser.add_argument("--data", required=True, help="data set root (DAVIS: holds Annotations/ and ImageSets/)")
    parser.add_argument("--results", required=True, help="results folder (one sub-folder or file per video)")
    parser.add_argument("--split", default="val", help="split list to score (default: val)")
    parser.add_argument("--json", help="also write the scores to this JSON file")
    parser.add_argument("--workers", type=int, help="processes scoring videos in parallel (default: one per core)")


def check_json_path(json_path: str, data: str) -> None:
    """--json must be a file name in an existing, writable folder outside the data set: checked
    before scoring, which can take minutes."""
    from pathlib import Path

    from smae.atomic import check_not_inside, check_output_folder
    from smae.errors import UserError

    path = Path(json_path)
    if path.is_dir():
        raise UserError(f"--json {json_path}: is a folder; give a file name, e.g. {path / 'scores.json'}")
    if not path.parent.is_dir():
        if path.parent.exists():
            raise UserError(f"--json {json_path}: {path.parent} is a file, not a folder; choose another --json")
        raise UserError(f"--json {json_path}: the folder {path.parent} does not exist; create it or choose another --json")
    check_output_folder(path.parent, "--json")
    check_not_inside(path, data, "--json", "--data")


def run(args: argparse.Namespace) -> int:
    from smae.atomic import write_json_atomic
    from smae.errors import UserError
    from smae.eval.tasks import evaluate, format_scores, json_ready

    if args.workers is not None and args.workers < 1:
        raise UserError(f"--workers {args.workers}: must be at least 1")
    if args.json:
        check_json_path(args.json, args.data)
    scores = evaluate(args.task, args.data, args.results, split=args.split, workers=args.workers)
    print(format_scores(args.task, scores, args.split))
    if args.json:
        write_json_atomic(args.json, json_ready(scores))
    return 0
