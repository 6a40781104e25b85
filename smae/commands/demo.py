"""`smae demo`: synthetic data, pre-training and label propagation on a CPU in minutes
(the work: smae.demo)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from smae.demo import DEFAULT_OUT, prepare_out_dir, run_demo


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"demo folder (default: ./{DEFAULT_OUT})")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic set and the run (default: 0)")


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    prepare_out_dir(out)
    summary = run_demo(out, seed=args.seed)
    margin = summary["trained"]["J&F-Mean"] - summary["random_init"]["J&F-Mean"]
    if margin <= 0:
        print(f"pre-training did not beat the random initialisation (J&F {100 * margin:+.1f}); see "
              f"{out / 'pretrain' / 'metrics.jsonl'} and the figures", file=sys.stderr)
        return 1
    print(f"pre-training beats the random initialisation by {100 * margin:.1f} J&F points")
    return 0
