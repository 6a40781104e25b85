"""The project's performance record on a GPU, in one command of at most 9 minutes.

    python bench/device_record.py --out $OUT                 # on the device (bench/results/README.md has the `run` call)
    python bench/device_record.py --out /tmp/rec --dry-run   # the rehearsal: every section, tiny, on the CPU
    python bench/device_record.py --out /tmp/rec --sections ceilings,attention   # some sections again

Sections, in this order, each timed and guarded (a failure is recorded with its traceback and
the next section runs): environment, ceilings, correctness, attention, benchmarks, end_to_end.
OUT/record.json is rewritten (atomically) when each section starts and ends, so a crash or a
kill leaves every finished section on disk. OUT also gets attention.json (the attention `auto`
table's measurements) and the raw pytest-benchmark JSON of each bench file: at most 7 files, as
the device tool returns at most 8 (the 8th: the command's own log).

Before anything runs, the expected device seconds of each section (bench/record_plan.py's time
model, from the device sizes) are printed and recorded; each section is capped at 1.5 times its
estimate plus 30 s and leaves half of the later sections' estimates to them; none runs past the
budget (9 minutes from the start). Sizes come from
the plan: `--dry-run` uses the tiny plan on the CPU (Triton in its interpreter), with the same
code, control flow and output files. `smae synth` for the end-to-end section starts first, in
the background, on the CPU.
"""
from __future__ import annotations

import argparse
import datetime
import os
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # `python bench/device_record.py` imports bench.* from the repository root
    sys.path.insert(0, str(REPO))

SECTIONS = ("environment", "ceilings", "correctness", "attention", "benchmarks", "end_to_end")
RECORD_FILE = "record.json"
RESERVE = 0.5  # a section never eats into this fraction of the estimates of the sections after it
ATTENTION_FILE = "attention.json"


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="bench/device_record.py", description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path, help="output folder (the device's $OUT)")
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes on the CPU, Triton in its interpreter")
    parser.add_argument("--work", type=Path, help="scratch folder for the synthetic set and logs (default: a new temporary one)")
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {','.join(SECTIONS)}")
    parser.add_argument("--budget-s", type=float, default=None, help="seconds for the whole record (default: bench/record_plan.py BUDGET_S)")
    args = parser.parse_args(argv)
    chosen = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = [s for s in chosen if s not in SECTIONS]
    if unknown or not chosen:
        parser.error(f"--sections: unknown {unknown or 'empty list'}; choose from {','.join(SECTIONS)}")
    args.sections = [s for s in SECTIONS if s in chosen]
    return args


def _dry_run_environment() -> None:
    """The rehearsal runs Triton in its CPU interpreter; set before any kernel module loads."""
    os.environ.setdefault("TRITON_INTERPRET", "1")
    os.environ.setdefault("SMAE_KERNELS", "torch")


class Record:
    """record.json: rewritten atomically after every change."""

    def __init__(self, path: Path, header: dict):
        from smae.atomic import write_json_atomic

        self._write = write_json_atomic
        self.path = path
        self.data = dict(header, sections={})
        self.save()

    def save(self) -> None:
        self._write(self.path, _json_ready(self.data))

    def section(self, name: str, **fields) -> None:
        self.data["sections"].setdefault(name, {}).update(fields)
        self.save()


def _json_ready(value):
    """Tensors never reach the record; inf (a failed error check) and NaN become strings."""
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return str(value)
    return value


def _estimate_table(estimates: dict[str, float], budget: float) -> str:
    from bench import record_plan as model

    lines = ["expected device seconds per section (bench/record_plan.py's time model, device sizes):",
             f"  bytes / {model.COPY_BYTES_PER_S / 1e12:.1f} TB/s copy, FLOPs / {model.BF16_FLOPS / 1e12:.0f} TFLOP/s bf16 or "
             f"{model.FP32_FLOPS / 1e12:.0f} fp32 (H200, /work/.library/device), launches {model.LAUNCH_S * 1e6:.0f} us, Triton "
             f"compile {model.TRITON_COMPILE_S} s per kernel, torch.compile {model.INDUCTOR_OP_COMPILE_S:.0f} s per op and "
             f"{model.INDUCTOR_MODEL_COMPILE_S:.0f} s per model, process start {model.PYTHON_START_S:.0f} s + CUDA {model.CUDA_START_S:.0f} s"]
    lines += [f"  {name:<12} {seconds:7.1f} s" for name, seconds in estimates.items()]
    lines.append(f"  {'total':<12} {sum(estimates.values()):7.1f} s of a {budget:.0f} s budget"
                 f" (smae synth meanwhile on the CPU: ~{model.synth_seconds_one_core():.0f} s)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.dry_run:
        _dry_run_environment()
    import torch

    from bench import record_attention, record_bench, record_correctness, record_e2e, record_env
    from bench.record_plan import BUDGET_S, device_plan, dry_plan, estimate_seconds

    plan = dry_plan() if args.dry_run else device_plan()
    if plan.device == "cuda" and not torch.cuda.is_available():
        print("bench/device_record.py: no CUDA device here; use --dry-run for the CPU rehearsal", file=sys.stderr)
        return 2
    budget = args.budget_s or BUDGET_S
    start = time.monotonic()
    end = start + budget
    args.out.mkdir(parents=True, exist_ok=True)
    work = args.work or Path(tempfile.mkdtemp(prefix="smae-record-"))
    work.mkdir(parents=True, exist_ok=True)
    # `timeout` (or the device tool) stops the record with SIGTERM: exit through the `finally`
    # below, which stops the background synth and records what is done.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    estimates = estimate_seconds(device_plan())
    print(_estimate_table(estimates, budget), flush=True)
    command = "python bench/device_record.py " + " ".join(argv if argv is not None else sys.argv[1:])
    record = Record(args.out / RECORD_FILE, {
        "schema": 1, "mode": plan.name, "command": command, "started": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "budget_s": budget, "estimate_s": estimates, "sections_run": args.sections})

    synth = record_e2e.BackgroundSynth(plan.synth_args, work / "synth", work / "synth.log") if "end_to_end" in args.sections else None
    results: dict[str, dict] = {}

    def matmul_tflops():
        return results.get("ceilings", {}).get("matmul_bf16", {}).get("TFLOPs")

    # section -> how it runs, given its deadline; each names the code it calls in one line
    runners = {
        "environment": lambda deadline: record_env.environment(plan),
        "ceilings": lambda deadline: record_env.ceilings(plan),
        "correctness": lambda deadline: record_correctness.correctness(plan, deadline),
        "attention": lambda deadline: record_attention.attention_section(plan, deadline),
        "benchmarks": lambda deadline: record_bench.benchmarks(plan, args.out, work, deadline, matmul_tflops()),
        "end_to_end": lambda deadline: record_e2e.end_to_end(plan, work, deadline, synth),
    }
    try:
        for name in args.sections:
            section_start = time.monotonic()
            later = args.sections[args.sections.index(name) + 1:]
            deadline = min(end - sum(RESERVE * estimates[s] for s in later), section_start + 1.5 * estimates[name] + 30)
            section_command = f"python bench/device_record.py --out OUT --sections {name}" + (" --dry-run" if args.dry_run else "")
            record.section(name, status="running", command=section_command, estimate_s=estimates[name])
            print(f"\n== {name} (estimate {estimates[name]:.0f} s, cap {deadline - section_start:.0f} s)", flush=True)
            if plan.device == "cuda":
                torch.cuda.empty_cache()  # the bench and propagate processes share the GPU with this one
            try:
                if section_start >= end:
                    raise TimeoutError(f"the record's {budget:.0f} s budget was spent before this section")
                results[name] = runners[name](deadline)
                status = "ok" if results[name].get("ok", True) else "failed checks"
                record.section(name, status=status, results=results[name])
            except Exception:  # recorded; the next section still runs
                record.section(name, status="error", error=traceback.format_exc(limit=12))
                print(traceback.format_exc(limit=12), flush=True)
            seconds = time.monotonic() - section_start
            record.section(name, seconds=seconds)
            print(f"== {name}: {record.data['sections'][name]['status']} in {seconds:.1f} s", flush=True)
            if name == "attention" and name in results:
                from smae.atomic import write_json_atomic

                table = record_attention.auto_table(results[name], results.get("environment", {}))
                write_json_atomic(args.out / ATTENTION_FILE, _json_ready(table))
    finally:
        if synth is not None:
            synth.stop()
        for section in record.data["sections"].values():
            if section.get("status") == "running":  # stopped from outside (SIGTERM) mid-section
                section["status"] = "interrupted"
        if "environment" in args.sections and "environment" in results:
            results["environment"]["clocks_after"] = record_env.gpu_clocks()
            record.section("environment", results=results["environment"])
        record.data["seconds"] = time.monotonic() - start
        record.save()
    print(f"\nrecord: {args.out / RECORD_FILE} ({record.data['seconds']:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
