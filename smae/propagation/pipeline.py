"""Propagating a whole evaluation set, then scoring it: the Python API behind `smae propagate --task`.

    from smae.propagation import PixelFeatures, build_feature_source, propagate_dataset, protocol_preset
    source = build_feature_source("encoder", "vits16", "dino_vits16.pth", device="cuda")
    scores = propagate_dataset("davis", "DAVIS", "results/", source, protocol_preset("siammae"))

Under torchrun (a torch.distributed group initialised) the videos are shared out between ranks;
every rank writes its own, and rank 0 scores the folder once all are done.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Callable

from smae.atomic import write_json_atomic
from smae.errors import UserError, describe_os_error
from smae.progress import progress_bar
from smae.eval.tasks import evaluate, has_ground_truth, json_ready

from .distributed import barrier, current_ranks, shard
from .engine import propagate_video
from .features import FeatureSource
from .outputs import VideoOutput, clear_staging, is_done
from .protocols import Protocol, input_size, resolved_settings
from .videos import check_video_files, frame_size, list_videos

RUN_FILE = "propagate.json"  # the resolved settings of the run that wrote a results folder
METRICS_FILE = "metrics.json"


def propagate_dataset(
    task: str,
    data_root: str | os.PathLike,
    out_dir: str | os.PathLike,
    source: FeatureSource,
    protocol: Protocol,
    *,
    split: str = "val",
    batch_size: int = 8,
    resume: bool = False,
    overlays: bool = False,
    evaluate: bool = True,
    progress: bool = True,
    run_info: dict | None = None,
    log: Callable[[str], None] | None = None,
) -> dict | None:
    """Propagates every video of `task` ('davis', 'jhmdb', 'vip', 'vos') under `data_root` into `out_dir`.

    source: features of normalised frames (EncoderFeatures, PixelFeatures or any FeatureSource);
    batch_size: frames encoded at once; resume: keep videos already finished in out_dir (the
    settings must match the saved ones); overlays: also write pictures and an mp4 per video;
    run_info: extra JSON-able settings recorded in out_dir/propagate.json (weights, preset...);
    log: where the time estimate after the first video goes (default: stderr, also with
    progress=False: a long run is never silent).
    A folder that already holds a run's results is refused unless `resume`.
    Returns the scores on rank 0 when `evaluate` and the data set holds its ground truth (also
    saved as out_dir/metrics.json), else None.
    """
    out_dir = Path(out_dir)
    videos = list_videos(task, data_root, split)
    ranks = current_ranks()
    for video in videos:  # every rank, before anything is written
        check_video_files(video)
    settings = {"task": task, "split": split, "data": str(Path(data_root).resolve()), "protocol": resolved_settings(protocol),
                "input_sizes": input_sizes([frame_size(v.frames[0]) for v in videos], protocol, source.stride),
                "source": {"type": type(source).__name__, "stride": source.stride}, **(run_info or {})}
    settings = json.loads(json.dumps(settings))  # tuples -> lists, as they read back
    check_resumable(out_dir, settings, resume, any(is_done(out_dir, v, task) for v in videos))  # every rank alike
    barrier()  # every rank has looked before rank 0 writes the record
    if ranks.rank == 0:
        out_dir.mkdir(parents=True, exist_ok=True)
        clear_staging(out_dir)
        write_json_atomic(out_dir / RUN_FILE, settings)
    barrier()

    mine = shard([len(v.frames) for v in videos], ranks.rank, ranks.world_size)  # indices into the split list
    todo = [i for i in mine if not (resume and is_done(out_dir, videos[i], task))]
    total_frames = sum(len(videos[i].frames) for i in todo)
    prefix = f"[rank {ranks.rank}] " if ranks.world_size > 1 else ""
    bar = progress_bar(total=total_frames, unit="frame", disable=not progress, desc=f"{prefix}propagate {task}",
                       position=ranks.rank)
    with bar:
        for number, list_index in enumerate(todo):
            video = videos[list_index]
            bar.set_postfix_str(video.name, refresh=False)
            start = time.perf_counter()
            try:
                with VideoOutput(out_dir, video, task, overlays, list_index) as output:
                    output.write_all(_counted(propagate_video(video, source, protocol, batch_size=batch_size), bar))
            except OSError as error:  # reads raise UserError: this is a write (a full disk, a lost mount)
                message = describe_os_error(error, error.filename or out_dir)
                if message is None:
                    raise
                raise UserError(message) from error
            if number == 0 and len(todo) > 1:
                seconds = time.perf_counter() - start
                (log or _to_stderr)(prefix + estimate_line(video.name, len(video.frames), seconds, total_frames - len(video.frames)))
    barrier()
    if not evaluate or ranks.rank != 0 or not has_ground_truth(task, data_root):
        return None
    scores = evaluate_results(task, data_root, out_dir, split)
    write_json_atomic(out_dir / METRICS_FILE, json_ready(scores))  # strict JSON: NaN (undefined) -> null
    return scores


def estimate_line(name: str, frames: int, seconds: float, remaining_frames: int) -> str:
    """'first video bear: 82 frames in 41.0 s (0.50 s/frame); about 12 min for the other 1917 frames'."""
    per_frame = seconds / max(frames, 1)
    left = per_frame * remaining_frames
    left_text = f"{left / 3600:.1f} h" if left >= 5400 else f"{left / 60:.0f} min" if left >= 90 else f"{left:.0f} s"
    return (f"first video {name}: {frames} frames in {seconds:.1f} s ({per_frame:.2f} s/frame); "
            f"about {left_text} for the other {remaining_frames} frames")


def _to_stderr(line: str) -> None:
    from tqdm import tqdm

    tqdm.write(line, file=sys.stderr)


def _counted(predictions, bar):
    for prediction in predictions:
        bar.update(1)
        yield prediction


def evaluate_results(task: str, data_root: str | os.PathLike, out_dir: str | os.PathLike, split: str) -> dict:
    """The task's official scores of a results folder (smae.eval.tasks.evaluate)."""
    return evaluate(task, data_root, out_dir, split=split)


def input_sizes(frame_sizes: list[tuple[int, int]], protocol: Protocol, stride: int) -> list[dict]:
    """The distinct frame sizes of a run and the input size each is resized to (what `size`
    alone does not say under resize=native, short_side or long_side)."""
    distinct = sorted(set(frame_sizes))
    return [{"frames": list(size), "input": list(input_size(protocol, *size, stride))} for size in distinct]


def check_resumable(out_dir: Path, settings: dict, resume: bool, has_results: bool) -> None:
    """A folder holding results is continued only with --resume, and only with its own settings."""
    saved_path = out_dir / RUN_FILE
    if not resume:
        if saved_path.is_file() or has_results:
            raise UserError(f"--out {out_dir}: already holds results of a propagate run ({RUN_FILE}); "
                            f"add --resume to finish that run, or give a new --out folder")
        return
    if not saved_path.is_file():
        return
    saved, now = _flat(json.loads(saved_path.read_text())), _flat(settings)
    changed = sorted(key for key in set(saved) | set(now) if saved.get(key) != now.get(key))
    if changed:
        details = "; ".join(f"{key}: {saved.get(key)!r} then, {now.get(key)!r} now" for key in changed)
        raise UserError(f"--resume: {out_dir} holds results made with other settings ({details}); "
                        f"use the same settings, or a new --out folder")


def _flat(settings: dict, prefix: str = "") -> dict:
    """{'protocol': {'topk': 7}} -> {'protocol.topk': 7}: a changed field is named alone."""
    flat = {}
    for key, value in settings.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
