"""bench/feature_drift.py's two shares, on features built to hold only position or only colour."""
from __future__ import annotations

import pytest
import torch

from bench.feature_drift import main, shares

PATCH = 4


def frames_and_cells(count=12, rows=5, cols=7):
    """Random frames (F, 3, rows*PATCH, cols*PATCH) and each patch's mean RGB (F, rows, cols, 3)."""
    generator = torch.Generator().manual_seed(0)
    frames = torch.randn(count, 3, rows * PATCH, cols * PATCH, generator=generator)
    means = torch.nn.functional.avg_pool2d(frames, PATCH).permute(0, 2, 3, 1)
    return frames, means, generator


def test_features_that_only_say_where_have_all_their_variance_in_position():
    frames, means, generator = frames_and_cells()
    per_cell = torch.randn(1, *means.shape[1:3], 16, generator=generator)  # one random vector per grid cell
    result = shares(per_cell.expand(len(frames), -1, -1, -1), frames, PATCH)
    assert result["position"] == pytest.approx(1, abs=1e-5)
    assert result["colour"] < 0.2


def test_features_that_only_say_what_colour_have_it_in_colour():
    frames, means, generator = frames_and_cells()
    mixing = torch.randn(3, 16, generator=generator)
    offset = torch.randn(16, generator=generator) * 10  # far from the origin: normalising stays near linear
    result = shares(means @ mixing * 0.1 + offset, frames, PATCH)
    assert result["colour"] > 0.99
    assert result["position"] < 0.2


def test_a_wrong_folder_or_checkpoint_is_one_line_and_status_2(tmp_path, capsys):
    checkpoint = tmp_path / "checkpoint.pt"
    checkpoint.write_bytes(b"")
    assert main(["--davis", str(tmp_path / "nowhere"), str(checkpoint)]) == 2
    assert "--davis" in capsys.readouterr().err
    (tmp_path / "davis" / "JPEGImages" / "480p").mkdir(parents=True)
    assert main(["--davis", str(tmp_path / "davis"), str(tmp_path / "missing.pt")]) == 2
    error = capsys.readouterr().err
    assert "missing.pt" in error and len(error.strip().splitlines()) == 1
