"""Benchmarks (pytest-benchmark), run on purpose and never by `pytest tests`:

    python -m pytest bench --benchmark-only            # or one file, -k to pick cases

They time GPU kernels, so without CUDA every case is skipped at collection except those marked
`cpu_ok` (CPU comparisons, e.g. label propagation's); nothing here touches CUDA otherwise.
"""
import sys
from pathlib import Path

import pytest
import torch

BENCH_DIR = Path(__file__).resolve().parent
# Bench files import their shared helpers as `bench.<module>`: make the repository root
# importable for plain `pytest bench` too, not only `python -m pytest bench`.
if str(BENCH_DIR.parent) not in sys.path:
    sys.path.insert(0, str(BENCH_DIR.parent))


def pytest_configure(config):
    config.addinivalue_line("markers", "cpu_ok: a benchmark case that also runs without CUDA")


def pytest_collect_file(file_path, parent):
    """`pytest bench` collects the bench_*.py files (the default pattern wants test_*.py); files
    named on the command line pytest collects itself."""
    if file_path.parent == BENCH_DIR and file_path.name.startswith("bench_") and file_path.suffix == ".py" \
            and not parent.session.isinitpath(file_path):
        return pytest.Module.from_parent(parent, path=file_path)
    return None


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="GPU benchmark: torch.cuda.is_available() is False")
    for item in items:
        if BENCH_DIR in Path(item.path).resolve().parents and item.get_closest_marker("cpu_ok") is None:
            item.add_marker(skip)
