"""`smae synth`: deterministic synthetic videos in every layout smae reads (smae.data.synth)."""
from __future__ import annotations

import argparse
from pathlib import Path

from smae.config import add_override_argument
from smae.data.synth import FORMATS, PRESETS, generate


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, type=Path, help="output directory (created if missing)")
    parser.add_argument("--preset", default="tiny", choices=sorted(PRESETS),
                        help="dataset sizes (default: tiny)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; same seed, same files (default: 0)")
    parser.add_argument("--formats", default=",".join(FORMATS),
                        help=f"comma-separated subset of {','.join(FORMATS)} (default: all)")
    add_override_argument(parser, "override preset fields, e.g. davis.videos=5 vip.frames=10,20")


def run(args: argparse.Namespace) -> int:
    from smae.config import apply_overrides

    # With --set the preset becomes a custom one; synth.json records its full spec.
    preset = apply_overrides(PRESETS[args.preset], args.overrides) if args.overrides else args.preset
    summary = generate(args.out, preset, args.seed, args.formats, log=print)
    total = sum(info["frames"] for info in summary["formats"].values())
    print(f"wrote {total} frames to {args.out} (preset {summary['preset']}, seed {args.seed})")
    return 0
