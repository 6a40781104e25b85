"""A run killed mid-way and resumed ends exactly where an uninterrupted run ends (CPU)."""
from __future__ import annotations

import json

import pytest
import torch
from pretrain_fixtures import small_config, write_synthetic_videos

from smae.train import loop
from smae.train.checkpoint import load_checkpoint
from smae.train.loop import train


def test_resumed_run_matches_uninterrupted_run(tmp_path, monkeypatch):
    videos = write_synthetic_videos(tmp_path / "synthetic")
    config = small_config("epochs=8", "checkpoint_every=3", "num_workers=1")
    train(config, videos, tmp_path / "straight", progress=False)

    lr_at = loop.lr_at

    def killed_at_step_5(step, *args, **kwargs):
        if step == 5:  # two steps after the step-3 checkpoint: their work is lost
            raise KeyboardInterrupt
        return lr_at(step, *args, **kwargs)

    out = tmp_path / "interrupted"
    with monkeypatch.context() as patch:
        patch.setattr(loop, "lr_at", killed_at_step_5)
        with pytest.raises(KeyboardInterrupt):
            train(config, videos, out, progress=False)
    assert load_checkpoint(out / "checkpoint.pt")["step"] == 3
    (out / ".checkpoint.pt.tmp-999").write_bytes(b"half a checkpoint")  # a kill while saving leaves this
    # Operational settings may change on resume. (Not the worker count here: on the CPU it sets the
    # compute threads, and another summation order would change the last bits.)
    train(small_config("epochs=8", "checkpoint_every=4", "num_workers=1"), videos, out, resume=True, progress=False)

    straight, resumed = (load_checkpoint(path / "checkpoint.pt") for path in (tmp_path / "straight", out))
    assert resumed["step"] == straight["step"] == 8
    torch.testing.assert_close(resumed["model"], straight["model"], rtol=0, atol=0)
    torch.testing.assert_close(resumed["optimizer"]["state"], straight["optimizer"]["state"], rtol=0, atol=0)
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 9))  # lines of the lost steps 4-5 were replaced, not duplicated
    assert not (out / ".checkpoint.pt.tmp-999").exists()
    straight_losses = [json.loads(line)["loss"] for line in (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()]
    resumed_losses = [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert resumed_losses == straight_losses


def test_resume_refuses_a_changed_recipe(tmp_path):
    videos = write_synthetic_videos(tmp_path / "synthetic", count=4)
    train(small_config("epochs=2"), videos, tmp_path / "run", progress=False)
    with pytest.raises(ValueError, match=r"base_lr: 0.1 != 0.2"):
        train(small_config("epochs=2", "base_lr=0.2"), videos, tmp_path / "run", resume=True, progress=False)
    with pytest.raises(FileNotFoundError, match="no checkpoint.pt"):
        train(small_config(), videos, tmp_path / "empty", resume=True, progress=False)
