"""The `smae` command line: one entry point, one module per sub-command.

Each command module defines `add_arguments(parser)` and `run(args) -> int`. Command modules
import torch and other heavy dependencies inside `run`, so `smae --help` stays fast.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from smae.errors import UserError

# command name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "info": ("smae.info", "show versions, devices and which kernel backends can run"),
    "prepare": ("smae.data.prepare", "decode videos once into a frame store that pretrain --data reads fast"),
    "pretrain": ("smae.train.pretrain", "pre-train SiamMAE on videos (torchrun for several GPUs)"),
    "demo": ("smae.demo", "synthetic data, pre-training and label propagation on a CPU in minutes"),
    "propagate": ("smae.propagation.command", "propagate first-frame labels through DAVIS / JHMDB / VIP videos and score them"),
    "synth": ("smae.data.synth", "write deterministic synthetic videos: mp4, DAVIS, JHMDB and VIP layouts"),
    "evaluate": ("smae.eval.evaluate_cli", "score a results folder: DAVIS J&F (official numbers), JHMDB PCK, VIP mIoU"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="smae", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in COMMANDS.items():
        command_parser = sub.add_parser(name, help=help_text, description=help_text)
        command_parser.set_defaults(_module=module_name)
        importlib.import_module(module_name).add_arguments(command_parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    module = importlib.import_module(args._module)
    try:
        return int(module.run(args) or 0)
    except (UserError, ValueError, FileNotFoundError, FileExistsError) as error:
        # Bad input (a path, a --set key, a layout): a clear line, not a traceback.
        print(f"smae {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
