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


def run(args: argparse.Namespace) -> int:
    from smae.eval.tasks import evaluate, format_scores, json_ready
    from smae.atomic import write_json_atomic

    scores = evaluate(args.task, args.data, args.results, split=args.split, workers=args.workers)
    print(format_scores(args.task, scores, args.split))
    if args.json:
        write_json_atomic(args.json, json_ready(scores))
    return 0
