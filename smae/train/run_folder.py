"""The run folder: what a run may overwrite, and its metrics log.

    config.json                the resolved config, the preset and the derived values
    checkpoint.pt              the latest checkpoint (replaced atomically)
    metrics.jsonl              one line per `log_every` steps (see MetricsWindow.record)
    figures/step-NNNNNNN.png   the reconstruction figure of each checkpoint
Only rank 0 writes here.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from smae.atomic import write_text_atomic

from .checkpoint import CHECKPOINT_NAME, load_checkpoint
from .config import OPERATIONAL_FIELDS, TrainConfig, config_differences, train_config_from_dict

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


def truncate_metrics(path: Path, last_step: int) -> None:
    """On resume: drop the lines the interrupted session logged after its last checkpoint."""
    if path.exists():
        lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        kept = [line for line in lines if json.loads(line)["step"] <= last_step]
        write_text_atomic(path, "".join(line + "\n" for line in kept))


class MetricsWindow:
    """Losses and timing since the last log line."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.losses: list[float] = []
        self.start = time.perf_counter()

    def add(self, loss: float) -> None:
        self.losses.append(loss)

    def record(self, step: int, epoch: float, lr: float, batch_size: int, skipped: int) -> dict:
        """The log line of the window (mean loss, global pairs per second), and a new window."""
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        line = {"step": step, "epoch": round(epoch, 4), "loss": sum(self.losses) / len(self.losses), "lr": lr,
                "pairs_per_s": round(len(self.losses) * batch_size / elapsed, 2), "skipped_videos": skipped}
        self.reset()
        return line


def last_logged_loss(out: Path) -> float:
    """The loss of the last line of metrics.jsonl (NaN if none)."""
    path = out / METRICS_NAME
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    return json.loads(lines[-1])["loss"] if lines else float("nan")


def append_metrics(out: Path, line: dict) -> None:
    with open(out / METRICS_NAME, "a", encoding="utf-8") as log:
        log.write(json.dumps(line) + "\n")
