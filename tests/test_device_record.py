"""The GPU performance record's rehearsal: `bench/device_record.py --dry-run` runs every section
on the CPU at tiny sizes and must leave every section's output; its time model must fit the
9 minutes of one device call; the README table renders from the record it writes."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench import device_record, record_env  # noqa: E402
from bench.record_plan import BUDGET_S, device_plan, estimate_seconds  # noqa: E402

SECTIONS = ["environment", "ceilings", "correctness", "attention", "benchmarks", "end_to_end"]


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    """One dry run for the module: (output folder, its stdout)."""
    root = tmp_path_factory.mktemp("record")
    out, work = root / "out", root / "work"
    env = dict(os.environ, OMP_NUM_THREADS="1")  # the CI machine has 2 cores; threads only oversubscribe them
    result = subprocess.run([sys.executable, "bench/device_record.py", "--out", str(out), "--work", str(work), "--dry-run"],
                            cwd=REPO, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out, result.stdout


def test_device_plan_has_the_issues_sizes_and_fits_nine_minutes():
    plan = device_plan()
    estimates = estimate_seconds(plan)
    assert list(estimates) == SECTIONS and all(seconds > 0 for seconds in estimates.values())
    assert sum(estimates.values()) <= BUDGET_S <= 9 * 60
    assert plan.matmul_n == 8192 and plan.kernel_dtypes == ("float32", "float16", "bfloat16")
    assert {case.queries for case in plan.attention_cases.values()} >= {197, 785, 6601}
    assert {shape["batch"] for shape in plan.kernel_shapes.values()} == {256}
    assert plan.parity_preset == "vits16" and plan.propagate_presets == ("vits16", "vits8")


@pytest.mark.slow
def test_dry_run_leaves_every_sections_output(dry_run):
    out, stdout = dry_run
    assert re.search(r"total\s+[\d.]+ s of a 540 s budget", stdout)
    record = json.loads((out / "record.json").read_text())
    assert record["mode"] == "dry-run" and sum(record["estimate_s"].values()) <= BUDGET_S
    sections = record["sections"]
    assert list(sections) == SECTIONS
    assert {name: s["status"] for name, s in sections.items()} == dict.fromkeys(SECTIONS, "ok")
    results = {name: s["results"] for name, s in sections.items()}

    assert results["environment"]["torch"] and "clocks_after" in results["environment"]
    assert results["ceilings"]["copy"]["GBps"] > 0 and results["ceilings"]["matmul_bf16"]["TFLOPs"] > 0

    correctness = results["correctness"]
    assert len(correctness["kernels"]) == 4 * 2 and len(correctness["propagation"]) == 2 * 2  # ops x dtypes, grids x dtypes
    assert correctness["model_parity"]["ok"] and correctness["ok"] and not correctness["not_run"]

    attention = json.loads((out / "attention.json").read_text())
    for case in attention["cases"].values():
        assert case["forward"]["winner"] in case["forward"]["ms"] and case["forward+backward"]["winner"]
    (rows,) = attention["table"].values()  # the rows `auto` reads, for this one device
    measured = {(c["dtype"], c["q_shape"][3], c["q_shape"][1], c["kv_shape"][1]) for c in attention["cases"].values()}
    # a case whose candidates all failed their check has no row (auto keeps SDPA there)
    assert rows and {(r["dtype"], r["head_dim"], r["q_tokens"], r["k_tokens"]) for r in rows} <= measured
    assert all(row["best"] in row["seconds"] for row in rows)

    files = results["benchmarks"]["files"]
    assert sorted(files) == ["bench_loss.py", "bench_masking.py", "bench_propagation.py", "bench_train_step.py"]
    assert all(entry["returncode"] == 0 and (out / entry["json"]).is_file() for entry in files.values())
    assert {case["params"]["provider"] for case in files["bench_propagation.py"]["cases"]} >= {"reference", "crw-chunked"}
    assert any("passed" in line for line in files["bench_propagation.py"]["output_tail"])  # the log stays behind, its end comes back
    assert files["bench_train_step.py"]["utilisation"]["step_flops"]["tiny-b2"] > 0

    e2e = results["end_to_end"]
    run = e2e["propagate"]["tiny"]
    assert run["returncode"] == 0 and run["frames"] == e2e["synth"]["frames"] == 8
    assert abs(sum(run["split_s"].values()) - run["wall_s"]) < 1e-6 * max(1.0, run["wall_s"]) + 1e-3

    # what comes back from the device: at most 8 files (one kept for the log), plain names
    names = [path.name for path in out.iterdir()]
    assert len(names) <= 7 and all(re.fullmatch(r"[A-Za-z0-9._-]+", name) for name in names)


@pytest.mark.slow
def test_readme_table_renders_from_the_record(dry_run, tmp_path):
    out, _ = dry_run
    readme = tmp_path / "README.md"
    readme.write_text("# x\nbefore\n<!-- device-record:begin -->\nold table\n<!-- device-record:end -->\nafter\n")
    command = [sys.executable, "bench/render_record.py", str(out / "record.json"), "--write", str(readme)]
    subprocess.run(command, cwd=REPO, check=True, timeout=60)
    text = readme.read_text()
    assert "old table" not in text and text.startswith("# x\nbefore\n") and text.endswith("after\n")
    assert "| what | ours | compared with | ratio |" in text
    assert "`propagate_labels cpu davis-vits16` (reference)" in text and "`smae propagate --preset tiny`" in text
    assert "12 of 12 kernel checks pass" in text

    readme.write_text("no markers here\n")
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "device-record:begin" in result.stderr and readme.read_text() == "no markers here\n"


@pytest.mark.slow
def test_measured_attention_rows_become_the_auto_table(dry_run, tmp_path):
    from bench.render_record import install_attention_rows
    from smae.kernels.attention_table import load_table, lookup

    out, _ = dry_run
    table_path = tmp_path / "attention_table.json"
    table_path.write_text(json.dumps({"Another GPU": [{"dtype": "bfloat16", "head_dim": 64, "q_tokens": 197,
                                                       "k_tokens": 197, "seconds": {"sdpa": 1.0}, "best": "sdpa"}]}))
    written = json.loads((out / "attention.json").read_text())["table"]
    assert install_attention_rows(out / "attention.json", table_path) == sum(map(len, written.values()))
    table = load_table(table_path)
    assert "Another GPU" in table  # other devices' rows stay
    ((device, rows),) = written.items()
    for row in rows:
        assert lookup(table, device, row["dtype"], row["head_dim"], row["q_tokens"], row["k_tokens"]) == row["best"]


def test_a_failing_section_is_recorded_and_the_next_one_runs(tmp_path, monkeypatch):
    def broken(plan):
        raise RuntimeError("planted failure")

    monkeypatch.setattr(record_env, "ceilings", broken)
    assert device_record.main(["--out", str(tmp_path), "--dry-run", "--sections", "ceilings,environment"]) == 0
    record = json.loads((tmp_path / "record.json").read_text())
    assert list(record["sections"]) == ["environment", "ceilings"]  # the issue's order, whatever the argument's
    assert record["sections"]["ceilings"]["status"] == "error" and "planted failure" in record["sections"]["ceilings"]["error"]
    assert record["sections"]["environment"]["status"] == "ok" and record["sections"]["environment"]["seconds"] >= 0


def test_the_written_run_call_fits_the_device_tool():
    """bench/results/README.md's `run` command: within the tool's 2000 characters, ending inside
    its 600 s limit, carrying only the wheel folder the download command fills."""
    text = (REPO / "bench" / "results" / "README.md").read_text()
    commands = [line.strip() for line in text.splitlines() if line.strip().startswith("set -o pipefail;")]
    assert len(commands) == 1
    command = commands[0]
    assert len(command) <= 2000 and "bench/device_record.py --out $OUT" in command and "tee $OUT/log.txt" in command
    guard = int(re.search(r"timeout (\d+) python3 bench/device_record.py", command).group(1))
    assert BUDGET_S < guard < 600 and "`timeout_s: 600`" in text and '`carry: [".whl"]`' in text
    assert "-d .whl av==" in text and "xformers==" in text and ".whl/*.whl" in command
