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
import warnings

from smae.config import add_override_argument
from smae.eval.tasks import TASKS
from smae.models.presets import ENCODERS
from smae.models.weights import CHECKPOINT_KEYS
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


def run(args: argparse.Namespace) -> int:
    import torch

    from smae.config import apply_overrides

    from .distributed import current_ranks, init_from_environment
    from .features import build_feature_source
    from .pipeline import propagate_dataset
    from .protocols import protocol_preset

    protocol = apply_overrides(protocol_preset(args.protocol, args.task), args.overrides)
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    use_cuda = torch.cuda.is_available() if args.device is None else args.device.startswith("cuda")
    created_group = init_from_environment(use_cuda)
    try:
        ranks = current_ranks()
        if use_cuda and ranks.world_size > 1:
            device = torch.device(f"cuda:{ranks.local_rank}")  # one GPU per rank
        else:
            device = torch.device(args.device or ("cuda" if use_cuda else "cpu"))
        with warnings.catch_warnings():
            if ranks.rank != 0:  # the random-init warning once, not once per rank
                warnings.simplefilter("ignore")
            source = build_feature_source(args.features, args.preset, args.weights, device,
                                          pos_resize=protocol.pos_resize, checkpoint_key=args.checkpoint_key)
        run_info = {"features": args.features, "preset": args.preset, "weights": args.weights,
                    "checkpoint_key": args.checkpoint_key, "protocol_name": args.protocol}
        scores = propagate_dataset(
            args.task, args.data, args.out, source, protocol, split=args.split, batch_size=args.batch_size,
            resume=args.resume, overlays=args.overlays, run_info=run_info,
        )
    finally:
        if created_group:
            torch.distributed.destroy_process_group()
    if scores is not None:
        from smae.eval.tasks import format_scores

        print(format_scores(args.task, scores, args.split))
    return 0
