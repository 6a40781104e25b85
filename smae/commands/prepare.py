"""`smae prepare`: decode a video corpus once into a frame store (smae.data.prepare)."""
from __future__ import annotations

import argparse
import sys

from smae.data.prepare import DEFAULT_QUALITY, DEFAULT_SHORT_SIDE, prepare


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True,
                        help="folder (searched recursively, e.g. Kinetics-style class folders), video file, or list file")
    parser.add_argument("--out", required=True, help="store folder (created; an unfinished one is resumed)")
    parser.add_argument("--short-side", type=int, default=DEFAULT_SHORT_SIDE,
                        help=f"frames are resized to this short side in pixels (default {DEFAULT_SHORT_SIDE})")
    parser.add_argument("--quality", type=int, default=DEFAULT_QUALITY, help=f"JPEG quality 1-95 (default {DEFAULT_QUALITY})")
    parser.add_argument("--workers", type=int, default=None, help="worker processes (default: one per CPU core)")


def run(args: argparse.Namespace) -> int:
    try:
        summary = prepare(args.data, args.out, short_side=args.short_side, quality=args.quality, workers=args.workers)
    except KeyboardInterrupt:
        print(f"\nsmae prepare: interrupted; finished shards are kept. Resume with the same command:\n"
              f"  smae prepare --data {args.data} --out {args.out}", file=sys.stderr)
        return 130
    print(summary.describe(args.out))
    return 0
