"""bench/copy_baseline.py runs on a video set and orders its three predictors as they must be."""
from __future__ import annotations

import re

from pretrain_fixtures import write_video_set

from bench.copy_baseline import main


def test_copy_baseline_orders_zero_same_position_and_oracle(tmp_path, capsys):
    videos = tmp_path / "videos"
    write_video_set(videos, 2, num_frames=30, size=64)
    main([str(videos), "--pairs", "4"])
    zero, same, oracle = map(float, re.findall(r"\d+\.\d+", capsys.readouterr().out))
    assert 0.9 < zero <= 1.0  # standardised patches: predicting their mean leaves about their variance
    assert oracle <= same  # the same position is one of the oracle's 25 choices
