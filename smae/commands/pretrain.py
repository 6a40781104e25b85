"""`smae pretrain`: SiamMAE pre-training on a folder or list of videos.

    smae pretrain --preset vits16 --data kinetics/train --out runs/vits16 --set batch_size=512
    smae pretrain --preset vits16 --data k400-store --out runs/vits16   # a store from smae prepare
    torchrun --nproc-per-node=8 -m smae pretrain --preset vits16 --data videos.txt --out runs/a
    smae pretrain --out runs/a --data videos.txt --resume        # continue from runs/a/checkpoint.pt
    smae pretrain --out runs/a --data videos.txt --resume --set num_workers=4   # operational changes only
"""
from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from smae.config import add_override_argument
    from smae.train.config import TRAIN_PRESETS

    parser.add_argument("--preset", choices=list(TRAIN_PRESETS),
                        help="recipe and architecture (required unless --resume, which reuses the run's)")
    parser.add_argument("--data", required=True,
                        help="a frame store (smae prepare; fastest), or a folder (searched recursively for videos and "
                             "frame folders), video file, or list file")
    parser.add_argument("--out", required=True, help="run folder: config.json, checkpoint.pt, metrics.jsonl, figures/")
    add_override_argument(parser, "config overrides, e.g. batch_size=512 model.mask_ratio=0.9 clip_grad=1.0")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its latest checkpoint")


def resolve_config(preset: str | None, overrides: list[str], out_dir: str, resume: bool):
    """(preset name, TrainConfig) from --preset and --set; on --resume without --preset, the
    run's saved config with --set applied (the loop then allows only operational changes)."""
    from pathlib import Path

    from smae.config import apply_overrides
    from smae.errors import UserError
    from smae.train.config import train_config_from_dict, train_preset

    if preset is not None:
        return preset, apply_overrides(train_preset(preset), overrides)
    if not resume:
        raise ValueError("--preset is required for a new run")
    from smae.train.checkpoint import CHECKPOINT_NAME, load_checkpoint

    path = Path(out_dir) / CHECKPOINT_NAME
    if not path.is_file():
        raise UserError(f"--resume: no {CHECKPOINT_NAME} in {out_dir}; check --out, or start a new run with --preset")
    checkpoint = load_checkpoint(path)
    saved = train_config_from_dict(checkpoint["config"], str(path))
    return checkpoint.get("preset", "custom"), apply_overrides(saved, overrides)


def check_paths(data: str, out: str) -> None:
    """Before any work: --data exists, --out can be written and is not inside --data (the run's
    figures would be found as a frame folder), nor the other way round."""
    from pathlib import Path

    from smae.atomic import check_not_inside, check_output_folder
    from smae.errors import UserError

    if not Path(data).exists():
        raise UserError(f"--data {data}: no such file or folder; give a video folder, a video or a list file")
    if Path(data).is_dir():
        check_not_inside(out, data)
    check_output_folder(out)


def run(args: argparse.Namespace) -> int:
    check_paths(args.data, args.out)
    preset, config = resolve_config(args.preset, args.overrides, args.out, args.resume)
    from smae.train.loop import TrainingDiverged, train  # torch: after the checks, which need none

    try:
        result = train(config, args.data, args.out, preset=preset, resume=args.resume)
    except TrainingDiverged as error:
        print(f"smae pretrain: stopped: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"\nsmae pretrain: interrupted; continue from the last checkpoint with\n"
              f"  smae pretrain --data {args.data} --out {args.out} --resume", file=sys.stderr)
        return 130
    print(f"done: {result.steps} steps, last loss {result.final_loss:.4f}; checkpoint {result.checkpoint}"
          + (f", figure {result.figure}" if result.figure else ""))
    return 0
