"""The run folder: what a run may overwrite, and its metrics log.

    config.json                the resolved config, the preset and the derived values
    checkpoint.pt              the latest checkpoint (replaced atomically)
    metrics.jsonl              one line per `log_every` steps (see MetricsWindow.record)
    figures/step-NNNNNNN.png   the reconstruction figure of each checkpoint
Only rank 0 writes here.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

from smae.atomic import write_text_atomic
from smae.errors import UserError

from .checkpoint import CHECKPOINT_NAME, load_checkpoint
from .config import OPERATIONAL_FIELDS, TrainConfig, config_differences, train_config_from_dict
from .distributed import all_reduce_mean

METRICS_NAME = "metrics.jsonl"


def checkpoint_to_resume(out: Path, resume: bool, config: TrainConfig) -> dict | None:
    """The checkpoint to continue from (None for a fresh run). A fresh run never replaces a run;
    a resumed one must have the saved config, up to operational fields."""
    path = out / CHECKPOINT_NAME
    if not resume:
        if path.exists():
            raise FileExistsError(f"{out} already holds a run ({CHECKPOINT_NAME}); pass --resume to continue it "
                                  f"or choose another --out")
        return None
    if not path.exists():
        raise FileNotFoundError(f"--resume: no {CHECKPOINT_NAME} in {out}")
    checkpoint = load_checkpoint(path)
    for leftover in [*out.glob(".*.tmp-*"), *out.glob("figures/.*.tmp-*")]:
        leftover.unlink()  # half-written by a session killed while saving (see atomic_path)
    saved = train_config_from_dict(checkpoint["config"], str(path))
    differences = config_differences(saved, config, ignore=OPERATIONAL_FIELDS)
    if differences:
        raise ValueError(f"--resume: the config differs from the run's in {out} ({'; '.join(differences)}); "
                         f"only {', '.join(OPERATIONAL_FIELDS)} may change")
    return checkpoint


def rewrite_metrics(path: Path, last_step: int) -> list[dict]:
    """Keeps the lines of steps <= last_step (the checkpoint's step; 0 for a fresh run) and returns
    them, so no step is logged twice after a resume or a restart. A torn last line (a kill while
    it was written) is dropped with a warning; any other unreadable line is a UserError."""
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    kept = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            step = entry["step"]
        except (ValueError, KeyError, TypeError) as error:
            if number == len(lines):
                print(f"warning: {path}: dropping its torn last line (the run was killed while writing it)",
                      file=sys.stderr)
                break
            raise UserError(f"{path}: line {number} is not a metrics line ({error}); "
                            f"move the file away to start its log afresh") from None
        if step <= last_step:
            kept.append(entry)
    write_text_atomic(path, "".join(json.dumps(entry) + "\n" for entry in kept))
    return kept


class MetricsWindow:
    """Losses and timing since the last log line; the losses stay on the device until logged."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.losses: list[torch.Tensor] = []
        self.start = time.perf_counter()

    def add(self, loss: torch.Tensor) -> None:
        """This process's loss of one step (a 0-dim device tensor; not read back)."""
        self.losses.append(loss)

    def record(self, step: int, epoch: float, lr: float, batch_size: int, skipped: int, world_size: int) -> dict:
        """The log line of the window (mean loss over steps and processes, global pairs per
        second), and a new window. Reads the losses back: a host sync and, with several
        processes, an all-reduce, once per log line. Each step's loss is averaged over the
        processes in float32 first, as one process accumulating their micro-batches does."""
        per_step = all_reduce_mean(torch.stack(self.losses), world_size).tolist()
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        line = {"step": step, "epoch": round(epoch, 4), "loss": sum(per_step) / len(per_step), "lr": lr,
                "pairs_per_s": round(len(per_step) * batch_size / elapsed, 2), "skipped_videos": skipped}
        self.reset()
        return line


def append_metrics(out: Path, line: dict) -> None:
    with open(out / METRICS_NAME, "a", encoding="utf-8") as log:
        log.write(json.dumps(line) + "\n")
