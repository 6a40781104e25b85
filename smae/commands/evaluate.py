"""`smae evaluate`: official scores of a results folder, nothing cached between runs.

    smae evaluate --task davis --data DAVIS --results results/ --json scores.json
    smae evaluate --task jhmdb --data jhmdb --results results/
    smae evaluate --task vip --data vip --results results/ --split val
    smae evaluate --task vos --data vos --results results/     (a synthetic set: it has GroundTruth/)

DAVIS-2017 (semi-supervised J&F, numerically the official davis2017-evaluation): results/<seq>/
<frame>.png indexed PNGs. JHMDB (PCK@0.1/0.2 as videowalk): results/<action>/<video>.npy joints
(T, 15, 2). VIP (mIoU): results/<video>/<frame>.png class ids. YouTube-VOS (J&F, vos-benchmark's
semantics): results/Annotations/<video>/<frame>.png against the data set's GroundTruth/. A
results folder holding another task's propagate.json is refused. Prints the task's table; --json
also writes the scores (NaN as null), atomically.

    smae evaluate --gt GT/ --results results/ [--semantics vos-benchmark] [--all-frames]

J&F of any folder of per-video PNG folders against another (no split files, any object ids):
DAVIS's official semantics by default, hkchengrex/vos-benchmark's on request; see
smae.eval.folders_evaluate for where they differ.
"""
from __future__ import annotations

import argparse

from smae.eval.tasks import TASKS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", choices=TASKS, help="which benchmark the results are for (not with --gt)")
    parser.add_argument("--data", help="data set root (DAVIS: holds Annotations/ and ImageSets/)")
    parser.add_argument("--gt", help="instead of --task/--data: a folder of per-video folders of ground-truth PNGs")
    parser.add_argument("--semantics", default="davis", choices=("davis", "vos-benchmark"),
                        help="with --gt: which objects are scored (default: the official DAVIS evaluator's)")
    parser.add_argument("--all-frames", action="store_true", help="with --gt: also score the first and last frames")
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
    check_not_inside(path, data, "--json", "--gt" if data is None else "--data")


def run(args: argparse.Namespace) -> int:
    from smae.atomic import write_json_atomic
    from smae.errors import UserError
    from smae.eval.tasks import evaluate, format_scores, json_ready

    if args.workers is not None and args.workers < 1:
        raise UserError(f"--workers {args.workers}: must be at least 1")
    if args.gt is None:
        if args.task is None or args.data is None:
            raise UserError("--task and --data are required (or give --gt to score any folder of per-video PNG folders)")
        if args.semantics != "davis" or args.all_frames:
            raise UserError("--semantics and --all-frames go with --gt; drop them or give --gt")
    if args.json:
        check_json_path(args.json, args.data if args.gt is None else args.gt)
    check_run_record(args)
    if args.gt is not None:
        scores, table = _evaluate_folders(args)
    else:
        scores = evaluate(args.task, args.data, args.results, split=args.split, workers=args.workers)
        table = format_scores(args.task, scores, args.split)
    if args.json:  # before printing: a reader that stops early (| head) loses nothing
        write_json_atomic(args.json, json_ready(scores))
    print(table)
    return 0


def check_run_record(args: argparse.Namespace) -> None:
    """The results folder's propagate.json (where a propagate run wrote one) must be of the task
    being scored: a folder another task's run wrote into is named, not scored."""
    import json
    from pathlib import Path

    from smae.errors import UserError

    record = Path(args.results) / "propagate.json"
    if not record.is_file():
        return
    try:
        saved = json.loads(record.read_text())
        task = saved["task"]
    except (ValueError, KeyError, TypeError):
        raise UserError(f"{record}: not a propagate record (no task); remove it or score another --results") from None
    if args.gt is not None:
        if task == "vos":
            raise UserError(f"--results {args.results}: a --task vos run, whose masks are in "
                            f"{Path(args.results) / 'Annotations'}; give that folder as --results")
        return
    if task != args.task:
        wanted = "--video run (score it with --gt)" if task == "clip" else f"--task {task} run"
        raise UserError(f"--results {args.results}: holds the results of a propagate {wanted} ({record}), "
                        f"not of --task {args.task}; score it as that, or give another --results")


def _evaluate_folders(args: argparse.Namespace) -> tuple[dict, str]:
    from smae.errors import UserError
    from smae.eval.davis_evaluate import format_davis_table
    from smae.eval.folders_evaluate import evaluate_folders

    if args.task is not None or args.data is not None:
        raise UserError("--gt replaces --task and --data; give one or the other")
    scores = evaluate_folders(args.gt, args.results, args.semantics, skip_first_last=not args.all_frames, workers=args.workers)
    return scores, format_davis_table(scores, f"{args.gt} ({args.semantics} semantics)")
