"""Which attention backend `SMAE_ATTENTION=auto` runs on CUDA, per case, from measurements.

The measurements live in one file, `attention_table.json` beside this module, filled in on a
GPU by the device record (`bench/device_record.py` calls `record_timings` and `save_table`).
Its layout, one list of measured cases per device name (`torch.cuda.get_device_name()`):

    {"NVIDIA H200": [{"dtype": "bfloat16", "head_dim": 64, "q_tokens": 197, "k_tokens": 197,
                      "seconds": {"sdpa": 1.1e-4, "xformers": 1.3e-4}, "best": "sdpa"}, ...]}

A case is looked up by device name, dtype and head dim exactly, and by the nearest measured
(q_tokens, k_tokens) within a factor of 2 of each (beyond that a measurement says little about
the case). No entry: SDPA, which runs PyTorch's flash and cuDNN kernels, the ones xformers
itself dispatches to on Hopper without FlashAttention-3; so nothing changes before a
measurement says it should. The table is read once per process, on the first lookup.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path

TABLE_PATH = Path(__file__).with_name("attention_table.json")
MEASURED_BACKENDS = ("sdpa", "xformers")  # the candidates `auto` chooses between
UNMEASURED_CHOICE = "sdpa"
NEAREST_FACTOR = 2.0  # a measured token count stands for counts within this factor of it

_loaded: dict[str, list[dict]] | None = None


def load_table(path: Path = TABLE_PATH) -> dict[str, list[dict]]:
    """The table at `path`; {} when the file does not exist (nothing measured yet)."""
    if not path.exists():
        return {}
    table = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(table, dict) or not all(isinstance(rows, list) for rows in table.values()):
        raise ValueError(f"{path}: expected {{device name: [measured cases]}}; re-run the device record")
    return table


def _table() -> dict[str, list[dict]]:
    global _loaded
    if _loaded is None:
        _loaded = load_table()
    return _loaded


def lookup(table: dict[str, list[dict]], device: str, dtype: str, head_dim: int, q_tokens: int, k_tokens: int) -> str | None:
    """The measured best backend of the nearest case (see the module doc), None if none is near."""
    best, best_distance = None, math.inf
    for row in table.get(device, []):
        if row["dtype"] != dtype or row["head_dim"] != head_dim:
            continue
        ratios = (abs(math.log(row["q_tokens"] / q_tokens)), abs(math.log(row["k_tokens"] / k_tokens)))
        if max(ratios) <= math.log(NEAREST_FACTOR) and sum(ratios) < best_distance:
            best, best_distance = row["best"], sum(ratios)
    return best


def choose(device: str, dtype: str, head_dim: int, q_tokens: int, k_tokens: int) -> str:
    """The backend `auto` runs for this case on CUDA device `device`: measured, else SDPA."""
    return lookup(_table(), device, dtype, head_dim, q_tokens, k_tokens) or UNMEASURED_CHOICE


def record_timings(table: dict[str, list[dict]], device: str, dtype: str, head_dim: int, q_tokens: int,
                   k_tokens: int, seconds: dict[str, float]) -> dict[str, list[dict]]:
    """A copy of `table` with this case's timings (median seconds per call of each backend that
    ran; a backend that cannot run is left out) replacing any earlier row of the same case."""
    timed = {name: float(s) for name, s in seconds.items() if name in MEASURED_BACKENDS and math.isfinite(s)}
    if not timed:
        raise ValueError(f"no timings of {', '.join(MEASURED_BACKENDS)} for {device} {dtype} d={head_dim} {q_tokens}x{k_tokens}")
    case = {"dtype": dtype, "head_dim": head_dim, "q_tokens": q_tokens, "k_tokens": k_tokens}
    rows = [row for row in table.get(device, []) if {key: row[key] for key in case} != case]
    rows.append({**case, "seconds": timed, "best": min(timed, key=timed.get)})
    return {**table, device: sorted(rows, key=lambda row: (row["dtype"], row["head_dim"], row["q_tokens"], row["k_tokens"]))}


def save_table(table: dict[str, list[dict]], path: Path = TABLE_PATH) -> None:
    """Writes the table atomically (temporary file, then rename) and makes this process use it."""
    global _loaded
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            json.dump(table, out, indent=1, sort_keys=True)
            out.write("\n")
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise
    if path == TABLE_PATH:
        _loaded = table
