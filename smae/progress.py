"""Progress bars that suit both a terminal and a log file.

On a terminal: tqdm's bar, redrawn in place. Elsewhere (a file, a pipe, a batch job's log), a
redrawn bar is a carriage return per update, tens of kilobytes on one endless line; there
`progress_bar` writes the same status as one plain line every LOG_INTERVAL seconds (the first
after LOG_INTERVAL seconds: a short job writes none), and once at the end.
"""
from __future__ import annotations

import sys
from typing import TextIO

LOG_INTERVAL = 30.0  # seconds between status lines when the output is not a terminal


class _LinePerUpdate:
    """A text stream for tqdm that turns each redraw ('\\r' + status + padding) into a line."""

    def __init__(self, stream: TextIO):
        self.stream = stream

    def write(self, text: str) -> None:
        status = text.replace("\r", "").rstrip()
        if status:
            self.stream.write(status + "\n")

    def flush(self) -> None:
        self.stream.flush()


def _is_terminal(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def progress_bar(stream: TextIO | None = None, **options):
    """tqdm(**options) writing to `stream` (default stderr): a live bar on a terminal, a line every
    LOG_INTERVAL seconds otherwise."""
    from tqdm import tqdm

    stream = stream or sys.stderr
    if _is_terminal(stream):
        return tqdm(file=stream, **options)
    options.pop("dynamic_ncols", None)  # no terminal width to follow
    return tqdm(file=_LinePerUpdate(stream), delay=LOG_INTERVAL, mininterval=LOG_INTERVAL, maxinterval=LOG_INTERVAL,
                ncols=100, ascii=True, **options)
