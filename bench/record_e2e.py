"""Section 6 of the device record: `smae propagate` end to end on a DAVIS-val-sized synthetic set.

The set is made by `smae synth` in the background from the record's start (one CPU process: it
overlaps the GPU sections instead of adding to them). Each encoder preset then runs

    python -m bench.record_e2e --timings T.json propagate --task davis --data SYNTH/davis ...

which is `smae propagate ...` with timers wrapped around its stages (STAGES, the one place that
names smae's internals): waiting for decoded frames, features, propagation, label decoding and
scoring, each synchronised with the GPU so its time is its own. Writing is the rest of the
per-video loop (`VideoOutput.write_all` consumes the whole pipeline: PNG encoding and saving);
set-up (model build, CUDA start, listing) is the rest of the wall time.
"""
from __future__ import annotations

import functools
import importlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from bench.record_bench import REPO, run_logged

# stage -> (module, attribute path) whose calls the stage's time is spent in
STAGES = {
    "decode": ("smae.propagation.engine", "iter_frame_batches"),  # a generator: the time in next()
    "features": ("smae.propagation.features", "EncoderFeatures.__call__"),
    "propagation": ("smae.propagation.engine", "propagate_labels"),
    "label_decoding": ("smae.propagation.engine", "decode_segmentation"),
    "scoring": ("smae.propagation.pipeline", "evaluate_results"),
    "loop": ("smae.propagation.outputs", "VideoOutput.write_all"),
}


def _sync() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def _install_timers(seconds: dict[str, float], counts: dict[str, int]) -> None:
    for stage, (module_name, path) in STAGES.items():
        owner = importlib.import_module(module_name)
        *parents, attribute = path.split(".")
        for parent in parents:
            owner = getattr(owner, parent)
        original = getattr(owner, attribute)
        setattr(owner, attribute, _timed_generator(original, stage, seconds, counts) if stage == "decode"
                else _timed(original, stage, seconds))


def _timed(fn, stage: str, seconds: dict[str, float]):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        _sync()
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            _sync()
            seconds[stage] += time.perf_counter() - start
    return wrapper


def _timed_generator(fn, stage: str, seconds: dict[str, float], counts: dict[str, int]):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        iterator = fn(*args, **kwargs)
        while True:
            start = time.perf_counter()
            try:
                batch = next(iterator)
            except StopIteration:
                seconds[stage] += time.perf_counter() - start
                return
            _sync()
            seconds[stage] += time.perf_counter() - start
            counts["frames"] += batch.pixels.shape[0]
            yield batch
    return wrapper


def main(argv: list[str]) -> int:
    """--timings PATH, then a `smae` command line; writes the stage times to PATH."""
    if len(argv) < 3 or argv[0] != "--timings":
        raise SystemExit("usage: python -m bench.record_e2e --timings PATH propagate ...")
    from smae.cli import main as smae_main

    seconds, counts = dict.fromkeys(STAGES, 0.0), {"frames": 0}
    _install_timers(seconds, counts)
    start = time.perf_counter()
    returncode = smae_main(argv[2:])
    wall = time.perf_counter() - start
    inner = sum(seconds[s] for s in ("decode", "features", "propagation", "label_decoding"))
    split = {s: seconds[s] for s in ("decode", "features", "propagation", "label_decoding", "scoring")}
    split.update(writing=seconds["loop"] - inner, setup_and_other=wall - seconds["loop"] - seconds["scoring"])
    cuda = torch.cuda.is_available() and torch.cuda.is_initialized()
    Path(argv[1]).write_text(json.dumps({
        "returncode": returncode, "wall_s": wall, "frames": counts["frames"], "frames_per_s": counts["frames"] / wall,
        "loop_frames_per_s": counts["frames"] / seconds["loop"] if seconds["loop"] else None,
        "peak_gpu_bytes": torch.cuda.max_memory_allocated() if cuda else None, "split_s": split}, indent=2))
    return returncode


class BackgroundSynth:
    """`smae synth` started now in its own process group; `wait` collects it."""

    def __init__(self, synth_args: tuple[str, ...], out_dir: Path, log_path: Path):
        shutil.rmtree(out_dir, ignore_errors=True)
        self.out_dir, self.log_path = out_dir, log_path
        self.command = [sys.executable, "-m", "smae", "synth", "--out", str(out_dir), *synth_args]
        self.start = time.monotonic()
        self.log = open(log_path, "w")
        self.process = subprocess.Popen(self.command, cwd=REPO, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)

    def wait(self, deadline: float) -> dict:
        try:
            returncode = self.process.wait(timeout=max(deadline - time.monotonic(), 1))
        except subprocess.TimeoutExpired:
            self.stop()
            returncode = None
        seconds = time.monotonic() - self.start
        self.log.close()
        manifest = self.out_dir / "synth.json"
        formats = json.loads(manifest.read_text())["formats"] if manifest.is_file() else {}
        return {"command": " ".join(self.command), "returncode": returncode, "seconds_since_start": seconds,
                "frames": sum(f["frames"] for f in formats.values()), "log_tail": self.log_path.read_text()[-500:]}

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def end_to_end(plan, work_dir: Path, deadline: float, synth: BackgroundSynth) -> dict:
    made = synth.wait(deadline)
    results: dict = {"synth": made, "propagate": {}}
    if made["returncode"] != 0:
        raise RuntimeError(f"smae synth failed or timed out: {made}")
    for preset in plan.propagate_presets:
        out = work_dir / f"propagate-{preset}"
        shutil.rmtree(out, ignore_errors=True)
        smae_args = ["propagate", "--task", "davis", "--data", str(synth.out_dir / "davis"), "--out", str(out),
                     "--preset", preset, *plan.propagate_args]
        timings = work_dir / f"timings-{preset}.json"
        timings.unlink(missing_ok=True)
        remaining = deadline - time.monotonic()
        if remaining < 10:
            results["propagate"][preset] = {"not_run": "section time cap"}
            continue
        run = run_logged([sys.executable, "-m", "bench.record_e2e", "--timings", str(timings), *smae_args],
                         work_dir / f"propagate-{preset}.log", remaining)
        measured = json.loads(timings.read_text()) if timings.is_file() else {}
        results["propagate"][preset] = dict(measured, smae_command="smae " + " ".join(smae_args), run=run)
    results["ok"] = all(entry.get("returncode") == 0 for entry in results["propagate"].values())
    return results


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
