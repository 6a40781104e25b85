"""Progress bars that suit both a terminal and a log file.

On a terminal: tqdm's bar, redrawn in place. Elsewhere (a file, a pipe, a batch job's log), a
redrawn bar is a carriage return per update, tens of kilobytes on one endless line; there
`progress_bar` writes the same status as one plain line every LOG_INTERVAL seconds (the first
after LOG_INTERVAL seconds: a short job writes none), and no closing one.
"""
from __future__ import annotations

import sys
import time
from typing import TextIO

LOG_INTERVAL = 30.0  # seconds between status lines when the output is not a terminal


class _LinePerInterval:
    """A text stream for tqdm: each redraw ('\r' + status + padding) becomes a line, at most one
    per `interval` seconds and the first after `interval` (tqdm itself redraws more often, e.g.
    on every set_postfix)."""

    def __init__(self, stream: TextIO, interval: float):
        self.stream, self.interval = stream, interval
        self.last = time.monotonic()

    def write(self, text: str) -> None:
        status = text.replace("\r", "").rstrip()
        now = time.monotonic()
        if status and now - self.last >= self.interval:
            self.stream.write(status + "\n")
            self.last = now

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
    options["leave"] = False  # no closing status: an error or the results are the last lines of a log
    return tqdm(file=_LinePerInterval(stream, LOG_INTERVAL), mininterval=LOG_INTERVAL, ncols=100, ascii=True, **options)
