"""The `smae` command line: one entry point, one module per sub-command.

Each command module defines `add_arguments(parser)` and `run(args) -> int`. Command modules
import torch and other heavy dependencies inside `run`, so `smae --help` stays fast.

The one error path: a mistake the user can fix (a `UserError`, an OSError such as a full disk or
a read-only folder, a bad argument) is printed as one line on stderr, `smae <command>: error:
<file or argument>: <what is wrong>; <what to do>`, with exit status 2; Ctrl-C prints one line
and exits with 130; anything else is a bug and keeps its traceback. SMAE_DEBUG=1 shows the
traceback of every error.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
import warnings

from smae.errors import UserError, describe_os_error, os_error_in

# command name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "info": ("smae.commands.info", "show versions, devices and which kernel backends can run"),
    "prepare": ("smae.commands.prepare", "decode videos once into a frame store that pretrain --data reads fast"),
    "pretrain": ("smae.commands.pretrain", "pre-train SiamMAE on videos (torchrun for several GPUs)"),
    "demo": ("smae.commands.demo", "synthetic data, pre-training and label propagation on a CPU in minutes"),
    "propagate": ("smae.commands.propagate", "propagate masks through DAVIS / JHMDB / VIP / YouTube-VOS videos and score them, or through any clip"),
    "synth": ("smae.commands.synth", "write deterministic synthetic videos: mp4, DAVIS, JHMDB, VIP and YouTube-VOS layouts"),
    "evaluate": ("smae.commands.evaluate", "score a results folder: DAVIS J&F (official numbers), JHMDB PCK, VIP mIoU"),
}

DEBUG_VARIABLE = "SMAE_DEBUG"
# A missing or clashing path is the user's to fix whoever notices it (smae's checks raise these
# with a message and no errno, also from worker processes).
_PATH_ERRORS = (FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError)


class OneLineParser(argparse.ArgumentParser):
    """argparse with its error as one line (usage stays in --help), exit status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="smae", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in COMMANDS.items():
        command_parser = sub.add_parser(name, help=help_text, description=help_text)
        command_parser.set_defaults(_module=module_name)
        importlib.import_module(module_name).add_arguments(command_parser)
    return parser


def _raised_by_smae(error: BaseException) -> bool:
    """True when the innermost frame of the traceback is smae's own code: not a library, and not
    smae.kernels, whose shape checks guard smae's calls, except its backend switches, which
    read the user's SMAE_KERNELS / SMAE_ATTENTION."""
    trace = error.__traceback__
    if trace is None:
        return False
    while trace.tb_next is not None:
        trace = trace.tb_next
    module = trace.tb_frame.f_globals.get("__name__", "")
    return module.startswith("smae.") and (not module.startswith("smae.kernels.") or module == "smae.kernels.backend")


def _backend_unavailable(error: BaseException) -> bool:
    """A forced kernel backend that cannot run here (smae.kernels is only looked up if loaded)."""
    backend = sys.modules.get("smae.kernels.backend")
    return backend is not None and isinstance(error, backend.BackendUnavailable)


def user_message(error: BaseException) -> str | None:
    """The one line for an error the user can fix; None for a bug."""
    if isinstance(error, UserError) or _backend_unavailable(error):
        return str(error)
    os_error = os_error_in(error)
    if os_error is not None and os_error.errno is not None:
        return describe_os_error(os_error)
    if isinstance(error, _PATH_ERRORS):
        return str(error)
    # Older code raises ValueError for bad input; new code raises UserError. A ValueError counts
    # as the user's only when smae raised it, not torch or NumPy.
    if isinstance(error, ValueError) and _raised_by_smae(error):
        return str(error)
    return None


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    return f"warning: {' '.join(str(message).split())}\n"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if os.environ.get(DEBUG_VARIABLE) != "1":
        warnings.formatwarning = _one_line_warning  # a warning is one line too, not the source line
    try:
        module = importlib.import_module(args._module)
        status = int(module.run(args) or 0)
        sys.stdout.flush()  # a reader that left shows here, while it can still be handled
        return status
    except BrokenPipeError:
        # The reader of stdout (`smae evaluate ... | head`) took what it wanted and closed the
        # pipe: the work is done, nothing to report. Later writes (the interpreter's final flush)
        # go to /dev/null instead of raising again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        if os.environ.get(DEBUG_VARIABLE) == "1":
            raise
        print(f"smae {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:
        message = user_message(error)
        if message is None or os.environ.get(DEBUG_VARIABLE) == "1":
            raise
        print(f"smae {args.command}: error: {' '.join(message.split())}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
