"""Runs independent per-video jobs on all cores.

Worker processes rather than threads: a job makes many short NumPy calls on small arrays and
holds the GIL between them. On Linux the workers are forked, so nothing is imported
again (the parent's `import smae` pulls in torch, which a spawned worker would re-import); the
jobs use only NumPy and Pillow, never a thread pool inherited from the parent. Elsewhere (macOS,
Windows) they are spawned.
"""
from __future__ import annotations

import multiprocessing
import os
import signal
import sys
from concurrent.futures import ProcessPoolExecutor
from typing import Callable, Sequence, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


def available_cores() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def map_in_workers(function: Callable[[Item], Result], items: Sequence[Item], workers: int | None = None) -> list[Result]:
    """[function(item) for item in items], spread over `workers` processes (default: all cores).

    function must be a module-level function; results come back in item order and the first
    exception raised by a job is re-raised here."""
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    workers = min(workers or available_cores(), len(items))
    if workers <= 1:
        return [function(item) for item in items]
    context = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_ignore_interrupts) as pool:
        try:
            return list(pool.map(function, items))
        except KeyboardInterrupt:  # Ctrl-C: drop the queued jobs, let the running ones end quietly
            pool.shutdown(wait=False, cancel_futures=True)
            raise


def _ignore_interrupts() -> None:
    """Workers leave Ctrl-C to the parent, which stops them (one message, no traceback per worker)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
