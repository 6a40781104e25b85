"""Reading a checkpoint file safely: torch.load(weights_only=True), never unpickling code.

The full training checkpoints researchers have hold a few plain Python objects besides tensors
(read from the code that writes them):
- DINO main_dino.py and MAE / CropMAE util/misc.py:save_model store the run's
  `argparse.Namespace` under "args"; runs launched through their submitit scripts set
  `args.output_dir` to a `pathlib.PosixPath`;
- DINO sets each optimizer group's "lr" and "weight_decay" from numpy schedules, so its
  "optimizer" entry holds numpy float64 scalars (pickled as numpy's `scalar(dtype, bytes)`);
- the fp16 scaler states (DINO "fp16_scaler", MAE / CropMAE "scaler") are dicts of floats and ints.
Exactly these are allowed, and each is rebuilt by code here that can only make harmless values:
a Namespace, a path as a string, a number (numeric numpy dtypes only). Any other global in the
pickle (a function, a class with side effects) is refused before it runs.
"""
from __future__ import annotations

import argparse
import os
import pickle
import re
from pathlib import Path, PurePosixPath
from typing import Mapping

import numpy as np
import torch

from smae.errors import UserError


class WeightsError(UserError, ValueError):
    """A weights file or state dict that cannot be used; the message names the file and says what to do."""


class _PickledDtype:
    """What a pickled `numpy.dtype` becomes here: its type code and byte order, nothing else."""

    def __init__(self, code: object, align: object = False, copy: object = True):
        if not isinstance(code, str) or not re.fullmatch(r"[a-z]\d{0,2}", code):
            raise pickle.UnpicklingError(f"numpy dtype {code!r} is not a plain numeric type")
        self.code, self.byteorder = code, "="

    def __setstate__(self, state: object) -> None:
        if isinstance(state, tuple) and len(state) > 1 and state[1] in ("<", ">", "|", "="):
            self.byteorder = state[1]


def _numpy_scalar(dtype: object, data: object = None) -> bool | int | float:
    """numpy's scalar(dtype, raw bytes) for bool, integer and float dtypes only, as a Python number."""
    if not isinstance(dtype, _PickledDtype) or not isinstance(data, bytes):
        raise pickle.UnpicklingError("a numpy scalar in the checkpoint is not a plain number")
    np_dtype = np.dtype(dtype.code).newbyteorder(dtype.byteorder)
    if np_dtype.kind not in "biuf" or len(data) != np_dtype.itemsize:
        raise pickle.UnpicklingError(f"a numpy scalar of type {np_dtype} is not a plain number")
    return np.frombuffer(data, np_dtype)[0].item()


def _path_text(*parts: object) -> str:
    """A pickled pathlib.PosixPath, kept as its text (never touches the file system)."""
    if not all(isinstance(part, str) for part in parts):
        raise pickle.UnpicklingError("a path in the checkpoint is not made of strings")
    return str(PurePosixPath(*parts))


TRAINING_CHECKPOINT_GLOBALS = [
    argparse.Namespace,
    (_path_text, "pathlib.PosixPath"),
    (_path_text, "pathlib._local.PosixPath"),  # pickled by Python >= 3.13
    (_PickledDtype, "numpy.dtype"),
    (_numpy_scalar, "numpy.core.multiarray.scalar"),  # numpy 1.x
    (_numpy_scalar, "numpy._core.multiarray.scalar"),  # numpy 2.x
]


def _refused_global(error: Exception) -> str | None:
    match = re.search(r"GLOBAL ([\w.]+)", str(error))
    return match.group(1) if match else None


def read_checkpoint(path: str | os.PathLike) -> Mapping:
    """The dict a checkpoint file holds, loaded with weights_only=True and the globals above.

    Raises WeightsError naming the file for a missing, empty, truncated, non-PyTorch or unsafe
    file, or one that does not hold a dict."""
    path = Path(path)
    if not path.exists():
        raise WeightsError(f"{path}: no such file; check the path")
    if not path.is_file():
        raise WeightsError(f"{path}: not a file; give the checkpoint file itself")
    if path.stat().st_size == 0:
        raise WeightsError(f"{path}: the file is empty; re-download or re-save it")
    try:
        with torch.serialization.safe_globals(TRAINING_CHECKPOINT_GLOBALS):
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        refused = _refused_global(error)
        if refused is None:
            raise WeightsError(f"{path}: not a readable PyTorch checkpoint (not a pickle torch can read); "
                               f"re-download or re-save it") from None
        raise WeightsError(f"{path}: holds a Python object ({refused}) that smae never unpickles, as it could run code; "
                           f"save the weights alone, e.g. torch.save(model.state_dict(), ...)") from None
    except Exception as error:  # noqa: BLE001 - the file's bytes are the only variable here
        # Truncated archives, text files and foreign binaries surface as EOFError, RuntimeError,
        # KeyError (a text byte read as a memo index), UnicodeDecodeError... depending on where they
        # break; torch's own text for them is long and not about what to do.
        raise WeightsError(f"{path}: not a readable PyTorch checkpoint (truncated, or another format: {type(error).__name__}); "
                           f"re-download or re-save it") from None
    if not isinstance(checkpoint, Mapping):
        raise WeightsError(f"{path}: holds a {type(checkpoint).__name__}, not a dict of weights; "
                           f"save a state dict (torch.save(model.state_dict(), ...))")
    return checkpoint
