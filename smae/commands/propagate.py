"""`smae propagate`: label propagation on a benchmark (DAVIS-2017, JHMDB, VIP, YouTube-VOS) and
its scores, or on any clip with a mask of one of its frames.

    smae propagate --task davis --data DAVIS --out results/ --weights dino_vits16.pth --protocol dino
    smae propagate --task vos --data youtube-vos/valid --out results/ --weights ckpt.pth
    smae propagate --video clip.mp4 --mask first.png --out masks/ --weights ckpt.pth --overlays
    torchrun --nproc_per_node=4 -m smae propagate --task davis --data DAVIS --out results/ --weights ckpt.pth

--task writes OUT/<video>/<frame>.png (DAVIS, VIP), OUT/Annotations/<video>/<frame>.png
(YouTube-VOS, the server's layout) or OUT/<action>/<video>.npy (JHMDB), the run's settings
(OUT/propagate.json) and scores (OUT/metrics.json). --video writes OUT/<clip>/<frame>.png, one
indexed PNG per frame with the mask's palette. Protocol fields are changed with --set key=value.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import warnings

from smae.config import add_override_argument
from smae.errors import UserError
from smae.eval.tasks import TASKS
from smae.models.presets import CHECKPOINT_KEYS, ENCODERS
from smae.propagation.protocols import PROTOCOLS, Protocol


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = protocol_keys_help()
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--task", choices=TASKS, help="evaluation set and its folder layout (vos: YouTube-VOS, MOSE, LVOS)")
    what.add_argument("--video", help="instead of --task: a video file (any container FFmpeg reads) or a folder of frames")
    parser.add_argument("--data", help="with --task: the data set's root (DAVIS: holds JPEGImages/, Annotations/, ImageSets/)")
    parser.add_argument("--mask", help="with --video: an indexed or grey PNG of the objects in frame --mask-frame (ids 1..254)")
    parser.add_argument("--mask-frame", type=int, default=0, help="with --video: the frame --mask belongs to; earlier frames come out empty (default: 0)")
    parser.add_argument("--out", required=True, help="results folder (refused if it holds results, unless --resume)")
    parser.add_argument("--split", default="val", help="with --task: split list to propagate (default: val)")
    parser.add_argument("--weights", help="encoder checkpoint: smae, or DINO / MAE / CropMAE (full training checkpoints too) / timm; omitted: random init")
    parser.add_argument("--checkpoint-key", choices=CHECKPOINT_KEYS,
                        help="entry of the checkpoint holding the encoder (default: teacher where present, e.g. DINO; else model)")
    parser.add_argument("--features", default="encoder", choices=("encoder", "pixels"),
                        help="feature source (pixels: raw-pixel baseline; default: encoder)")
    parser.add_argument("--preset", choices=list(ENCODERS),
                        help="encoder architecture of foreign weights (default vits16; smae checkpoints build their own; pixels: its patch grid)")
    parser.add_argument("--protocol", default="siammae", choices=list(PROTOCOLS), help="propagation protocol preset (default: siammae)")
    add_override_argument(parser, "change protocol fields, e.g. topk=10 radius=12 resize=native (keys below)")
    parser.add_argument("--batch-size", type=int, default=8, help="frames encoded at once (default: 8)")
    parser.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda if available; per rank under torchrun)")
    parser.add_argument("--resume", action="store_true", help="keep videos already finished in --out")
    parser.add_argument("--overlays", action="store_true", help="also write OUT/overlays/<video>/ pictures and an mp4 (not for videos --resume skips)")


def protocol_keys_help() -> str:
    """The --set keys with the siammae preset's values, for --help."""
    defaults = Protocol()
    lines = ["--set keys (siammae defaults; --protocol and --task change some):"]
    lines += [f"  {field.name}={_shown(getattr(defaults, field.name))}" for field in dataclasses.fields(Protocol)]
    lines += ["", "On a CPU, --set resize=native is the fast setting for frames smaller than 480x880: they keep",
              "their own size (floored to the patch size) instead of being scaled up, e.g. 7x13 = 91 cells",
              "for a 120x216 frame at patch 16 instead of 30x55 = 1650 (DAVIS's 480x854 gains little)."]
    return "\n".join(lines)


def _shown(value) -> str:
    return ",".join(str(v) for v in value) if isinstance(value, tuple) else str(value)


def check_arguments(args: argparse.Namespace) -> None:
    """Everything that can be checked before loading a model: fails in a second, not after one."""
    from pathlib import Path

    from smae.atomic import check_not_inside, check_output_folder

    if args.batch_size < 1:
        raise UserError(f"--batch-size {args.batch_size}: must be at least 1")
    if args.task is not None:
        if args.data is None:
            raise UserError("--task needs --data, the data set's root folder")
        if args.mask is not None:
            raise UserError("--mask goes with --video; a --task data set holds its own masks")
        if not Path(args.data).is_dir():
            raise UserError(f"--data {args.data}: no such folder; give the data set's root folder")
        check_not_inside(args.out, args.data)  # results in DAVIS/Annotations/480p would replace the ground truth
    else:
        if args.mask is None:
            raise UserError("--video needs --mask, a PNG of the objects in its first frame (or of frame --mask-frame)")
        if args.data is not None:
            raise UserError("--data goes with --task; with --video give the clip and --mask only")
        if not Path(args.video).exists():
            raise UserError(f"--video {args.video}: no such file or folder")
        if not Path(args.mask).is_file():
            raise UserError(f"--mask {args.mask}: no such file; give a PNG of the objects in frame {args.mask_frame}")
        if Path(args.video).is_dir():
            check_not_inside(args.out, args.video, "--out", "--video")
    check_output_folder(args.out)


def resolve_device(requested: str | None):
    """The torch.device for --device (None: CUDA if available); UserError if it cannot run here."""
    import re

    if requested is not None and not re.fullmatch(r"cpu|cuda(:\d+)?", requested):
        raise UserError(f"--device {requested}: not a device smae propagate runs on; use cpu, cuda or cuda:N")
    import torch  # after the syntax check: a typo is reported in a fraction of a second

    if requested is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(requested)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"--device {requested}: CUDA is not available here (torch {torch.__version__}, "
                            f"{'no GPU found' if torch.version.cuda else 'a CPU-only build'}); use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UserError(f"--device {requested}: this machine has {torch.cuda.device_count()} GPU(s), "
                            f"cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    return device


def resume_command() -> str:
    """The command line that continues this run: the same arguments plus --resume."""
    import shlex

    arguments = [argument for argument in sys.argv[1:] if argument != "--resume"]
    return "smae " + " ".join(shlex.quote(argument) for argument in [*arguments, "--resume"])


def run(args: argparse.Namespace) -> int:
    from smae.config import apply_overrides

    from smae.propagation.protocols import protocol_preset

    protocol = apply_overrides(protocol_preset(args.protocol, args.task or "clip"), args.overrides)
    check_arguments(args)
    device = resolve_device(args.device)
    try:
        return _propagate(args, protocol, device)
    except KeyboardInterrupt:
        print(f"smae propagate: interrupted; finished videos are kept in {args.out} (nothing half-written); "
              f"continue with: {resume_command()}", file=sys.stderr)
        return 130


def _propagate(args: argparse.Namespace, protocol, requested) -> int:
    import torch

    from smae.propagation.distributed import current_ranks, init_from_environment
    from smae.propagation.features import build_feature_source

    use_cuda = requested.type == "cuda"
    created_group = init_from_environment(use_cuda)
    try:
        ranks = current_ranks()
        device = torch.device(f"cuda:{ranks.local_rank}") if use_cuda and ranks.world_size > 1 else requested  # one GPU per rank
        with warnings.catch_warnings():
            if ranks.rank != 0:  # the random-init warning once, not once per rank
                warnings.simplefilter("ignore")
            source = build_feature_source(args.features, args.preset, args.weights, device,
                                          pos_resize=protocol.pos_resize, checkpoint_key=args.checkpoint_key)
        run_info = {"features": args.features, "preset": args.preset, "weights": args.weights,
                    "checkpoint_key": args.checkpoint_key, "protocol_name": args.protocol, "batch_size": args.batch_size}
        if args.video is not None:
            if ranks.world_size > 1:  # every rank would write the same clip
                raise UserError("--video: one clip runs in one process; start it with smae, not torchrun")
            return _propagate_clip(args, protocol, source, run_info)
        return _propagate_task(args, protocol, source, run_info, ranks.rank)
    finally:
        if created_group:
            torch.distributed.destroy_process_group()


def _propagate_task(args, protocol, source, run_info: dict, rank: int) -> int:
    from pathlib import Path

    from smae.eval.tasks import format_scores, has_ground_truth

    from smae.propagation.pipeline import METRICS_FILE, RUN_FILE, propagate_dataset

    scores = propagate_dataset(args.task, args.data, args.out, source, protocol, split=args.split,
                               batch_size=args.batch_size, resume=args.resume, overlays=args.overlays, run_info=run_info)
    if rank != 0:
        return 0
    out = Path(args.out)
    if scores is not None:
        print(format_scores(args.task, scores, args.split))
        print(f"results in {out}, settings in {out / RUN_FILE}, scores in {out / METRICS_FILE}")
    elif not has_ground_truth(args.task, args.data):
        print(f"results in {out / 'Annotations'}, settings in {out / RUN_FILE}; no ground truth in {args.data} "
              f"to score them: zip {out / 'Annotations'} for the evaluation server")
    return 0


def _propagate_clip(args, protocol, source, run_info: dict) -> int:
    from pathlib import Path

    from smae.propagation.api import predictions
    from smae.propagation.clip import write_clip
    from smae.propagation.frames import open_frames
    from smae.propagation.pipeline import RUN_FILE, input_sizes
    from smae.propagation.protocols import resolved_settings

    frames = open_frames(args.video)
    found = predictions(frames, args.mask, encoder=source, protocol=protocol, mask_frame=args.mask_frame,
                        batch_size=args.batch_size, mask_name=f"--mask {args.mask}")
    settings = {"task": "clip", "video": str(args.video), "mask": str(args.mask), "mask_frame": args.mask_frame,
                "protocol": resolved_settings(protocol), "input_sizes": input_sizes([frames.size], protocol, source.stride),
                "source": {"type": type(source).__name__, "stride": source.stride}, **run_info}
    out = Path(args.out)
    written = write_clip(out, frames, Path(args.mask), found, settings, args.overlays, args.resume)
    if written is None:
        print(f"nothing to do: {out} already holds this clip's masks (--resume)")
    else:
        overlay = f", overlay video in {out / 'overlays' / written.name / 'overlay.mp4'}" if args.overlays else ""
        print(f"masks in {written}{overlay}, settings in {out / RUN_FILE}")
    return 0
