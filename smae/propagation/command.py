"""`smae propagate`: label propagation on DAVIS-2017, JHMDB or VIP, then the task's scores.

    smae propagate --task davis --data DAVIS --out results/ --weights dino_vits16.pth --protocol dino
    torchrun --nproc_per_node=4 -m smae propagate --task davis --data DAVIS --out results/ --weights ckpt.pth
    torchrun --nproc_per_node=4 --no-python smae propagate ...        (the same, through the entry point)

Writes OUT/<video>/<frame>.png (DAVIS, VIP) or OUT/<action>/<video>.npy (JHMDB), the run's
settings (OUT/propagate.json) and scores (OUT/metrics.json). Protocol fields are changed with
`--set key=value` (see smae.propagation.protocols.Protocol).
"""
from __future__ import annotations

import argparse
import sys
import warnings

from smae.config import add_override_argument
from smae.errors import UserError
from smae.eval.tasks import TASKS
from smae.models.presets import CHECKPOINT_KEYS, ENCODERS
from smae.propagation.protocols import PROTOCOLS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", required=True, choices=TASKS, help="evaluation set and its folder layout")
    parser.add_argument("--data", required=True, help="data set root (DAVIS: holds JPEGImages/, Annotations/, ImageSets/)")
    parser.add_argument("--out", required=True, help="results folder")
    parser.add_argument("--split", default="val", help="split list to propagate (default: val)")
    parser.add_argument("--weights", help="encoder checkpoint: smae, or DINO / MAE / CropMAE (full training checkpoints too) / timm; omitted: random init")
    parser.add_argument("--checkpoint-key", choices=CHECKPOINT_KEYS,
                        help="entry of the checkpoint holding the encoder (default: teacher where present, e.g. DINO; else model)")
    parser.add_argument("--features", default="encoder", choices=("encoder", "pixels"),
                        help="feature source (pixels: raw-pixel baseline)")
    parser.add_argument("--preset", choices=list(ENCODERS),
                        help="encoder architecture of foreign weights (default vits16; smae checkpoints build their own; pixels: its patch grid)")
    parser.add_argument("--protocol", default="siammae", choices=list(PROTOCOLS), help="propagation protocol preset")
    add_override_argument(parser, "change protocol fields, e.g. topk=10 radius=12")
    parser.add_argument("--batch-size", type=int, default=8, help="frames encoded at once")
    parser.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda if available; per rank under torchrun)")
    parser.add_argument("--resume", action="store_true", help="keep videos already finished in --out")
    parser.add_argument("--overlays", action="store_true", help="also write OUT/overlays/<video>/ pictures and an mp4 (not for videos --resume skips)")


def check_arguments(args: argparse.Namespace) -> None:
    """Everything that can be checked before loading a model: fails in a second, not after one."""
    from pathlib import Path

    from smae.atomic import check_not_inside, check_output_folder

    if args.batch_size < 1:
        raise UserError(f"--batch-size {args.batch_size}: must be at least 1")
    if not Path(args.data).is_dir():
        raise UserError(f"--data {args.data}: no such folder; give the data set's root folder")
    check_not_inside(args.out, args.data)  # results in DAVIS/Annotations/480p would replace the ground truth
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

    from .protocols import protocol_preset

    protocol = apply_overrides(protocol_preset(args.protocol, args.task), args.overrides)
    check_arguments(args)
    device = resolve_device(args.device)
    try:
        scores = _propagate(args, protocol, device)
    except KeyboardInterrupt:
        print(f"smae propagate: interrupted; finished videos are kept in {args.out} (nothing half-written); "
              f"continue with: {resume_command()}", file=sys.stderr)
        return 130
    if scores is not None:
        from smae.eval.tasks import format_scores

        print(format_scores(args.task, scores, args.split))
    return 0


def _propagate(args: argparse.Namespace, protocol, requested):
    import torch

    from .distributed import current_ranks, init_from_environment
    from .features import build_feature_source
    from .pipeline import propagate_dataset

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
                    "checkpoint_key": args.checkpoint_key, "protocol_name": args.protocol}
        return propagate_dataset(
            args.task, args.data, args.out, source, protocol, split=args.split, batch_size=args.batch_size,
            resume=args.resume, overlays=args.overlays, run_info=run_info,
        )
    finally:
        if created_group:
            torch.distributed.destroy_process_group()
