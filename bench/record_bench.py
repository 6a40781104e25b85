"""Section 5 of the device record: the project's pytest-benchmark files, run as they are.

Each file of `plan.bench_selection` runs in its own pytest process (`-k` picks the batch-256
and CUDA cases), with `--benchmark-json` into the output folder: those raw files are part of the
record. The record keeps a summary per case (group, parameters, median, extra_info) and, for
the training step, the model FLOP utilisation: FLOPs of one step (counted by PyTorch's
FlopCounterMode on the same model and batch, kernels off) x steps per second, over the bf16
datasheet peak and over the bf16 matmul ceiling measured in section 2.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

import smae
from bench.record_plan import BF16_FLOPS_DATASHEET, Plan, bench_file_seconds, device_plan
from smae.kernels import use_attention_backend, use_backend

REPO = Path(__file__).resolve().parent.parent
OUTPUT_TAIL_LINES = 150


def run_logged(command: list[str], log_path: Path, timeout: float, env: dict | None = None) -> dict:
    """Runs command from the repository root in its own process group, output to log_path; on
    timeout the whole group (compile workers too) is killed. -> returncode, seconds, tail of output."""
    start = time.monotonic()
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            returncode = process.wait(timeout=max(timeout, 1))
        except subprocess.TimeoutExpired:
            returncode = None
        finally:  # also when the record itself is stopped: its own session would outlive it
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    lines = log_path.read_text(errors="replace").splitlines()
    print("\n".join(lines[-25:]), flush=True)
    # The logs stay on the device; the record keeps the end of each (a failure's traceback).
    tail = [line[-300:] for line in lines[-OUTPUT_TAIL_LINES:]]
    return {"command": " ".join(command), "returncode": returncode, "timed_out": returncode is None,
            "timeout_s": round(timeout, 1), "seconds": time.monotonic() - start, "last_line": lines[-1] if lines else "",
            "output_tail": tail}


def summarize(json_path: Path) -> list[dict]:
    """One entry per benchmark of a pytest-benchmark JSON (empty when no case ran: the plugin then
    leaves the file empty)."""
    if not json_path.is_file() or json_path.stat().st_size == 0:
        return []
    data = json.loads(json_path.read_text())
    return [{"name": b["name"], "group": b.get("group"), "params": b.get("params"), "median_s": b["stats"]["median"],
             "rounds": b["stats"]["rounds"], "extra_info": b.get("extra_info", {})} for b in data["benchmarks"]]


def step_flops(preset: str, batch: int, plan: Plan) -> float:
    """FLOPs of one SiamMAE training step (forward + backward), kernels off, SDPA attention."""
    from torch.utils.flop_counter import FlopCounterMode

    device = plan.device
    model = smae.build_model(preset).to(device)
    size = model.config.encoder.img_size
    frames = [torch.randn(batch, 3, size, size, device=device) for _ in range(2)]
    with use_backend("torch"), use_attention_backend("sdpa"), FlopCounterMode(display=False) as counter:
        with torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
            loss, _, _ = model(*frames, generator=torch.Generator(device).manual_seed(0))
        loss.backward()
    return float(counter.get_total_flops())


def train_utilisation(cases: list[dict], plan: Plan, matmul_tflops: float | None) -> dict:
    """pairs/s, MFU per training-step case. The bench file's parameters name the case: shape_name
    (a bench/shapes.py TRAINING_SHAPES key) and provider."""
    flops = {name: step_flops(preset, batch, plan) for name, (preset, batch) in plan.train_presets.items()}
    out = {"step_flops": flops, "cases": {}}
    for case in cases:
        params = case["params"] or {}
        shape_name, pairs_per_s = params.get("shape_name"), case["extra_info"].get("pairs_per_s")
        if shape_name not in flops or pairs_per_s is None:
            continue
        batch = plan.train_presets[shape_name][1]
        achieved = flops[shape_name] / batch * pairs_per_s
        out["cases"][f"{shape_name}/{params.get('provider')}"] = {
            "pairs_per_s": pairs_per_s, "tflops": achieved / 1e12, "mfu_datasheet": achieved / BF16_FLOPS_DATASHEET,
            "fraction_of_measured_matmul": achieved / (matmul_tflops * 1e12) if matmul_tflops else None}
    return out


def benchmarks(plan: Plan, out_dir: Path, work_dir: Path, deadline: float, matmul_tflops: float | None) -> dict:
    estimates = bench_file_seconds(device_plan())
    files = {}
    for file_name, selection in plan.bench_selection.items():
        stem = file_name.removeprefix("bench_").removesuffix(".py").replace("_", "-")
        json_path = out_dir / f"bench-{stem}.json"
        remaining = deadline - time.monotonic()
        if remaining < 5:
            files[file_name] = {"not_run": "section time cap"}
            continue
        command = [sys.executable, "-m", "pytest", f"bench/{file_name}", "--benchmark-only", "-q", "-p", "no:cacheprovider",
                   "-k", selection, f"--benchmark-json={json_path}"] + (["-p", plan.bench_plugin] if plan.bench_plugin else [])
        run = run_logged(command, work_dir / f"bench-{stem}.log", min(remaining, 1.5 * estimates[file_name] + 30))
        files[file_name] = dict(run, json=json_path.name, cases=summarize(json_path))
    train = files.get("bench_train_step.py", {})
    if train.get("cases") is not None:
        try:
            train["utilisation"] = train_utilisation(train["cases"], plan, matmul_tflops)
        except Exception as error:  # the runs above stay recorded
            train["utilisation"] = {"error": f"{type(error).__name__}: {error}"}
    return {"files": files, "ok": all(entry.get("returncode") == 0 for entry in files.values())}
