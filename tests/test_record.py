"""The GPU record's rehearsal: `bench/record.py --dry-run` runs every part on the CPU at tiny
shapes, records each figure, and writes the README's table between its markers only."""
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench import record

REPO = Path(__file__).resolve().parent.parent

README = "# x\nbefore\n<!-- device-record:begin -->\nold table\n<!-- device-record:end -->\nafter\n"
# The suite part runs `pytest -m cuda` on these: one case passes, one fails, one is not marked.
CUDA_CASES = """import pytest

@pytest.mark.cuda
def test_passes():
    assert True

@pytest.mark.cuda
def test_fails():
    assert False

def test_not_a_cuda_case():
    assert False
"""


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    """(record.json's content, the README it wrote, the output folder)."""
    root = tmp_path_factory.mktemp("record")
    (root / "test_cases.py").write_text(CUDA_CASES)
    (root / "README.md").write_text(README)
    command = [sys.executable, "bench/record.py", "--out", str(root / "out"), "--dry-run",
               "--tests", str(root / "test_cases.py"), "--write", str(root / "README.md")]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return json.loads((root / "out" / "record.json").read_text()), (root / "README.md").read_text(), root / "out"


@pytest.mark.slow
def test_dry_run_records_every_part(dry_run):
    data, _, _ = dry_run
    parts = data["parts"]
    assert list(parts) == list(record.PARTS) and all("error" not in part for part in parts.values()), parts
    env = data["environment"]
    assert env["torch"] and env["triton"] and env["command"].startswith("python bench/record.py --out")

    suite = parts["suite"]["result"]
    assert (suite["passed"], suite["failed"], suite["returncode"]) == (1, [suite["failed"][0]], 1)
    assert suite["failed"][0].endswith("test_fails")

    kernels = parts["kernels"]["result"]
    assert {name.split()[0] for name in kernels} == {"gather_patches", "gather_visible", "scatter_visible", "masked_patch_loss",
                                                "propagate_labels"}
    for name, case in kernels.items():  # every provider checked and timed
        assert not case["errors"] and set(case["ms"]) == {"reference", "compile", "triton"}, (name, case)
        assert all(ms > 0 for ms in case["ms"].values())

    (attention,) = parts["attention"]["result"].values()
    assert attention["auto_runs"] == "sdpa" and {"auto", "sdpa-math"} <= set(attention["ms"])
    assert "xformers" in attention["errors"]  # CPU: recorded as unable, never timed

    steps = parts["train_step"]["result"]["steps"]
    assert set(steps) == {"tiny-b2 eager", "tiny-b2 eager+fused"} and all(s["pairs_per_s"] > 0 for s in steps.values())

    propagate = parts["propagate"]["result"]
    assert propagate["frames"] == 3 and propagate["runs"]["tiny"]["returncode"] == 0
    assert "WORK" in propagate["runs"]["tiny"]["command"]  # no temporary path in the record


@pytest.mark.slow
def test_readme_table_is_written_between_the_markers_only(dry_run, tmp_path):
    data, readme, out = dry_run
    assert "old table" not in readme and readme.startswith("# x\nbefore\n<!-- device-record:begin -->\n")
    assert readme.endswith("<!-- device-record:end -->\nafter\n")
    assert "1 passed, 1 failed" in readme and "| gather_visible tiny-b2 (forward+backward) |" in readme
    assert "| tiny-b2 eager |" in readme and "`smae propagate --task davis" in readme
    # --render makes the same table from the record alone
    (tmp_path / "README.md").write_text(README)
    assert record.main(["--render", str(out / "record.json"), "--write", str(tmp_path / "README.md")]) == 0
    assert (tmp_path / "README.md").read_text() == readme


def test_a_readme_without_markers_is_refused_and_left_as_it_was(tmp_path, capsys):
    minimal = {"environment": dict.fromkeys(("command", "device", "torch", "triton", "cuda", "date", "commit"), "x"), "parts": {}}
    (tmp_path / "record.json").write_text(json.dumps(minimal))
    (tmp_path / "README.md").write_text("no markers here\n")
    assert record.main(["--render", str(tmp_path / "record.json"), "--write", str(tmp_path / "README.md")]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "device-record:begin" in error and str(tmp_path / "README.md") in error
    assert (tmp_path / "README.md").read_text() == "no markers here\n"
    # refused before a record starts: nothing is measured or written
    assert record.main(["--out", str(tmp_path / "out"), "--dry-run", "--write", str(tmp_path / "README.md")]) == 2
    assert not (tmp_path / "out").exists()


def test_a_wrong_kernel_is_recorded_as_failing_and_not_timed(monkeypatch):
    import smae.kernels

    monkeypatch.setattr(smae.kernels, "gather_visible", lambda tokens, ids_keep, pos_embed: 2 * tokens[:, : ids_keep.shape[1]])
    plan = dataclasses.replace(record.dry_plan(), propagation={})
    result = record.kernels(plan)["gather_visible tiny-b2"]
    assert "triton" not in result["ms"] and "Mismatch" in result["errors"]["triton"]
    assert set(result["ms"]) == {"reference", "compile"}
