"""The one exception type for mistakes a user can fix, and the one reading of OS errors.

`smae.cli.main` prints a `UserError` as one line on stderr (`smae <command>: error: ...`) and
exits with status 2; any other exception is a bug and keeps its traceback. The message names
the file or argument at fault and says what to do, e.g.
`UserError("--weights w.pth: not a PyTorch checkpoint (truncated?); re-download it")`.

An OSError (or an error caused by one, as torch.save's RuntimeError on a full disk) is read
here, once, into such a line: `describe_os_error` knows the kinds a user can fix (a full disk, a
read-only folder, a path through a file, a missing file); other kinds stay bugs.
"""
from __future__ import annotations

import errno
import os


class UserError(Exception):
    """A bad input, argument, file or environment that the user can correct."""


# errno -> (what is wrong, what to do); the path is put in front by describe_os_error.
_OS_ERRORS: dict[int, tuple[str, str]] = {
    errno.ENOSPC: ("disk full", "free space on that disk or write somewhere else"),
    errno.EDQUOT: ("disk full (quota exceeded)", "free space or write somewhere else"),
    errno.EFBIG: ("file too large for its file system", "write somewhere else"),
    errno.EACCES: ("permission denied", "check the permissions of the file and its folders, or use another path"),
    errno.EPERM: ("operation not permitted", "check the permissions of the file and its folders, or use another path"),
    errno.EROFS: ("on a read-only file system, not writable", "write to a folder on a writable disk"),
    errno.ENOTDIR: ("a part of the path is a file, not a folder", "check the path"),
    errno.EISDIR: ("is a folder, not a file", "name a file"),
    errno.ENOENT: ("no such file or folder", "check the path"),
    errno.EEXIST: ("already exists", "remove it or choose another path"),
    errno.ENAMETOOLONG: ("file name too long", "choose a shorter path"),
    errno.ELOOP: ("too many levels of symbolic links", "check the links on the path"),
    errno.EIO: ("input/output error", "check the disk (or network file system) holding it"),
    errno.EMFILE: ("too many open files", "raise the limit (ulimit -n) or use fewer workers"),
    errno.ENFILE: ("too many open files in the system", "raise the limit or use fewer workers"),
}


def os_error_in(error: BaseException) -> OSError | None:
    """The OSError that `error` is or was caused by (its __cause__ / __context__ chain), if any."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, OSError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def describe_os_error(error: OSError, path: str | os.PathLike | None = None) -> str | None:
    """'<path>: <what is wrong>; <what to do>' for an OSError a user can fix, else None.

    path: the file to name (default: the error's own filename); a write to a temporary file
    is better reported under the file it stands for.
    """
    known = _OS_ERRORS.get(error.errno)
    if known is None:
        return None
    where = path if path is not None else (error.filename if error.filename is not None else None)
    what, todo = known
    return f"{where}: {what}; {todo}" if where is not None else f"{what}; {todo}"
