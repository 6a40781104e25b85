"""`smae demo`: the folder guard, and the whole path on a very small set (the real demo takes
minutes; its claim, trained > random init, is checked by running it)."""
from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from pretrain_fixtures import small_config, write_video_set

from smae import cli
from smae.data import synth
from smae.demo import MARKER, SOURCES, feature_sources, prepare_out_dir, run_demo
from smae.errors import UserError
from smae.models import SiamMAE
from smae.train.config import TRAIN_PRESETS
from smae.train.loop import train
from smae.train.optim import step_plan


def test_demo_refuses_a_folder_it_did_not_make(tmp_path, capsys):
    foreign = tmp_path / "thesis"
    foreign.mkdir()
    (foreign / "chapter1.tex").write_text("precious")
    assert cli.main(["demo", "--out", str(foreign)]) == 2
    assert "not made by smae demo" in capsys.readouterr().err
    assert [p.name for p in foreign.iterdir()] == ["chapter1.tex"]
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(UserError, match="is a file, not a folder"):
        prepare_out_dir(a_file)
    prepare_out_dir(tmp_path / "new")
    (tmp_path / "new" / "data").mkdir()
    prepare_out_dir(tmp_path / "new")  # its own folder: accepted again
    assert (tmp_path / "new" / MARKER).exists()


def test_demo_runs_end_to_end_on_a_small_set(tmp_path):
    small = dataclasses.replace(
        synth.PRESETS["tiny"],
        mp4=synth.VideoSetSpec(videos=8, frames=(24, 24), height=48, width=48, objects=(1, 2), entering=(0, 1)),
        davis=synth.VideoSetSpec(videos=2, frames=(5, 5), height=48, width=64, objects=(1, 2), entering=(0, 0)),
    )
    out = tmp_path / "demo"
    prepare_out_dir(out)
    lines = []
    summary = run_demo(out, synth_preset=small, train_config=small_config("epochs=2"),
                       log=lines.append)
    assert list(summary) == list(SOURCES)
    assert json.loads((out / "summary.json").read_text()) == summary
    for scores in summary.values():
        assert set(scores) == {"J&F-Mean", "J-Mean", "F-Mean"}
        assert 0 <= scores["J-Mean"] <= 1 and scores["J&F-Mean"] == pytest.approx((scores["J-Mean"] + scores["F-Mean"]) / 2)
    assert (out / "pretrain" / "checkpoint.pt").exists() and list((out / "pretrain" / "figures").glob("*.png"))
    assert any(line.startswith("features") for line in lines)  # the table


def test_random_init_baseline_is_the_runs_starting_point(tmp_path):
    videos = tmp_path / "videos"
    write_video_set(videos, 4, num_frames=16, size=32)
    config = small_config("epochs=1", "seed=3")
    result = train(config, videos, tmp_path / "run", progress=False)
    torch.manual_seed(3)
    expected = SiamMAE(config.model).encoder.state_dict()
    sources = feature_sources(result.checkpoint)
    torch.testing.assert_close(sources["random_init"].encoder.state_dict(), expected, rtol=0, atol=0)
    trained = sources["trained"].encoder.state_dict()
    assert not torch.equal(trained["blocks.0.attn.qkv.weight"], expected["blocks.0.attn.qkv.weight"])


def test_tiny_recipe_fits_the_tiny_synthetic_set():
    recipe, videos = TRAIN_PRESETS["tiny"], synth.PRESETS["tiny"].mp4
    plan = step_plan(videos.videos, recipe.batch_size, recipe.repeats, 1, recipe.accum_steps, recipe.epochs,
                     recipe.warmup_epochs)
    assert plan.total_steps >= 100
    assert recipe.gap_range[1] < videos.frames[0]  # every gap fits every video
    smallest_crop_side = min(videos.height, videos.width) * recipe.crop_scale[0] ** 0.5
    assert recipe.model.encoder.img_size <= smallest_crop_side  # crops are shrunk to the model's size, never enlarged
