"""The one exception type for mistakes a user can fix.

`smae.cli.main` prints a `UserError` as one line on stderr (`smae <command>: error: ...`) and
exits with status 2; any other exception is a bug and keeps its traceback. The message names
the file or argument at fault and says what to do, e.g.
`UserError("--weights w.pth: not a PyTorch checkpoint (truncated?); re-download it")`.
"""
from __future__ import annotations


class UserError(Exception):
    """A bad input, argument, file or environment that the user can correct."""
