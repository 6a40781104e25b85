"""Atomic file writes: a crash leaves the old file or the new one, never half of one.

Each writer fills a temporary file in the target's folder (same file system), then renames it
over the target with os.replace. A write that fails for a reason the user can fix (a full disk,
a read-only folder) raises a UserError naming the target, not the temporary file.

`check_output_folder` checks, before any work starts, that a command's output folder can be
written: a full run must not end on an --out that was never usable.
"""
from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from smae.errors import UserError, describe_os_error, os_error_in


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yields a temporary path beside `path`; renamed over `path` when the block ends without
    error, removed otherwise."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        yield temporary
        os.replace(temporary, path)
    except Exception as error:
        # torch.save reports a full disk as a RuntimeError caused by the OSError: read the cause.
        os_error = os_error_in(error)
        message = describe_os_error(os_error, path) if os_error is not None else None
        if message is None:
            raise
        raise UserError(message) from error
    finally:
        temporary.unlink(missing_ok=True)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as temporary:
        temporary.write_text(text, encoding="utf-8")


def write_json_atomic(path: str | os.PathLike, data: object) -> None:
    write_text_atomic(path, json.dumps(data, indent=2) + "\n")


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_output_folder(folder: str | os.PathLike, argument: str = "--out") -> None:
    """Raises UserError (naming `argument` and the folder) unless `folder` is, or can become, a
    writable folder: not a file, not under a file, on a writable disk with space left.
    Creates nothing that stays: a missing folder is judged by its nearest existing parent."""
    folder = Path(folder)
    existing = _nearest_existing(folder.absolute())
    if not existing.is_dir():
        where = "is a file" if existing == folder.absolute() else f"is under the file {existing}"
        raise UserError(f"{argument} {folder}: {where}, not a folder; choose another {argument}")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as error:
        raise UserError(f"{argument} {folder}: cannot write in {existing} ({error.strerror}); "
                        f"choose another {argument}") from None
    space = os.statvfs(existing)
    if space.f_bavail == 0:
        raise UserError(f"{argument} {folder}: disk full ({existing} has no space left); "
                        f"free space or choose another {argument}")


def check_not_inside(out: str | os.PathLike, data: str | os.PathLike, out_argument: str = "--out",
                     data_argument: str = "--data") -> None:
    """Outputs never go into the inputs they are computed from (and the inputs never lie inside an
    output folder that a run may rebuild): e.g. propagation results written into DAVIS's
    Annotations/ would replace the ground truth and score 1.0."""
    out_path, data_path = Path(out).resolve(), Path(data).resolve()
    if out_path.is_relative_to(data_path):
        raise UserError(f"{out_argument} {out}: inside {data_argument} {data}; "
                        f"write outputs outside the data folder")
    if data_path.is_relative_to(out_path):
        raise UserError(f"{out_argument} {out}: holds {data_argument} {data}; "
                        f"write outputs to a folder of their own")
