"""`smae demo`: the folder guard, the whole path on a very small set with its pictures, and (marked
exhaustive: minutes) the full demo's claim, trained beats random init and pixels by the margin."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from pretrain_fixtures import small_config, write_video_set

from smae import cli
from smae.data import synth
from PIL import Image

from smae.demo import MARKER, SOURCES, feature_sources, paired_margin, prepare_out_dir, run_demo, score_source
from smae.demo_pictures import LOSS_DPI, LOSS_FIGSIZE, STRIP_FRAMES, strip_frames, strip_size
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
    summary = run_demo(out, seed=5, synth_preset=small, train_config=small_config("epochs=2"),
                       log=lines.append)
    assert list(summary) == list(SOURCES)
    saved = json.loads((out / "summary.json").read_text())
    assert saved["seed"] == 5 and saved["seconds"] > 0
    assert {name: saved[name] for name in SOURCES} == summary
    # Trained's margin over each baseline, paired over the set's objects: its mean is the
    # J&F-Mean difference (DAVIS averages over objects), and it carries a standard error.
    per_object = json.loads((out / "propagation" / "trained" / "metrics.json").read_text())["per_object"]
    assert set(saved["margins"]) == {"random_init", "pixels"}
    for baseline, margin in saved["margins"].items():
        assert margin["objects"] == len(per_object) >= 2
        assert margin["J&F"] == pytest.approx(summary["trained"]["J&F-Mean"] - summary[baseline]["J&F-Mean"])
        assert margin["standard_error"] >= 0
    assert json.loads((out / "data" / "synth.json").read_text())["formats"]["davis"]["seed"] == 5
    assert json.loads((out / "pretrain" / "config.json").read_text())["config"]["seed"] == 5
    for scores in summary.values():
        assert set(scores) == {"J&F-Mean", "J-Mean", "F-Mean"}
        assert 0 <= scores["J-Mean"] <= 1 and scores["J&F-Mean"] == pytest.approx((scores["J-Mean"] + scores["F-Mean"]) / 2)
    assert (out / "pretrain" / "checkpoint.pt").exists() and list((out / "pretrain" / "figures").glob("*.png"))
    assert any(line.startswith("features") for line in lines)  # the table

    # The encoders were scored in worker processes: each name holds its own source's scores.
    davis = out / "data" / "davis"
    for name, source in feature_sources(out / "pretrain" / "checkpoint.pt").items():
        direct = score_source(source, davis, tmp_path / "direct" / name, log=lambda _: None)
        assert summary[name]["J&F-Mean"] == pytest.approx(direct["J&F-Mean"], abs=1e-6), name
    assert summary["trained"] != summary["random_init"]

    # The pictures: a strip of frame | ground truth | 3 sources for a few frames of the first
    # sequence, and a 640x400 loss curve.
    rows = len(strip_frames(small.davis.frames[0]))
    strip = Image.open(out / "strip.png")
    assert strip.size == strip_size(small.davis.height, small.davis.width, rows, 2 + len(SOURCES))
    pixels = np.asarray(strip.convert("RGB"))
    assert pixels.std() > 10  # frames were pasted, not a blank canvas
    assert Image.open(out / "loss.png").size == (round(LOSS_FIGSIZE[0] * LOSS_DPI), round(LOSS_FIGSIZE[1] * LOSS_DPI))


def test_paired_margin_is_the_mean_difference_per_object_with_its_standard_error():
    trained = {"a_1": 0.9, "a_2": 0.5, "b_1": 0.7}
    baseline = {"a_1": 0.8, "a_2": 0.2, "b_1": 0.2}  # differences 0.1, 0.3, 0.5: sd 0.2
    margin = paired_margin(trained, baseline)
    assert margin["J&F"] == pytest.approx(0.3) and margin["objects"] == 3
    assert margin["standard_error"] == pytest.approx(0.2 / 3 ** 0.5)
    with pytest.raises(ValueError, match="same two or more objects"):
        paired_margin(trained, {"a_1": 0.8, "a_2": 0.2, "c_1": 0.2})


def test_strip_frames_skip_the_given_first_frame():
    assert strip_frames(40) == [11, 20, 29, 39]
    assert len(strip_frames(100)) == STRIP_FRAMES
    assert strip_frames(3) == [1, 2]


def test_random_init_baseline_is_the_runs_starting_point(tmp_path):
    videos = tmp_path / "videos"
    write_video_set(videos, 4, num_frames=16, size=32)
    config = small_config("epochs=1", "seed=3")
    seen = []  # what a learning curve is handed: each checkpoint, while it is in place
    result = train(config, videos, tmp_path / "run", progress=False,
                   on_checkpoint=lambda step, path: seen.append((step, path, path.exists())))
    assert seen == [(result.steps, result.checkpoint, True)]
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


def test_demo_scores_48_sequences_and_tuning_keeps_its_24(tmp_path, monkeypatch):
    """The demo's set: 48 sequences of 40 frames (24 let the margin move by about 2 points from set
    to set; docs/demo.md). The tuning set of bench/learning_curve.py: the first 24 sequences of
    the same shape, which every recorded tuning run was scored on."""
    from bench import learning_curve

    davis = synth.PRESETS["tiny"].davis
    assert (davis.videos, davis.frames) == (48, (40, 40))
    written = {}
    monkeypatch.setattr(synth, "generate", lambda folder, preset, seed, formats, log: written.update({formats: (preset, seed)}))
    learning_curve.write_data(tmp_path, 3, learning_curve.TUNING_SEED)
    (videos_preset, train_seed), (held_out, eval_seed) = written[("mp4",)], written[("davis",)]
    assert (train_seed, eval_seed) == (3, 1000)
    assert videos_preset.mp4 == synth.PRESETS["tiny"].mp4
    assert held_out.davis == dataclasses.replace(davis, videos=24)


def test_learning_curve_runs_the_demo_recipe_four_times_longer_with_stochastic_depth():
    """By default the curve is 4800 steps (the demo's 1200 x 4) of the demo's recipe plus the
    encoder's stochastic depth at 0.2; `--set` alone is the demo's recipe unchanged."""
    from bench import learning_curve

    demo = TRAIN_PRESETS["tiny"]
    defaults = learning_curve.parse_args(["--out", "x"])
    assert (defaults.steps, defaults.every, defaults.overrides) == (4800, 400, ["model.encoder.drop_path_rate=0.2"])
    config = learning_curve.tiny_config(defaults.steps, defaults.every, defaults.overrides)
    assert config.epochs == 4 * demo.epochs and config.model.encoder.drop_path_rate == 0.2
    plain_encoder = dataclasses.replace(config.model.encoder, drop_path_rate=0.0)
    assert dataclasses.replace(config, epochs=demo.epochs, checkpoint_every=demo.checkpoint_every,
                               model=dataclasses.replace(config.model, encoder=plain_encoder)) == demo
    assert learning_curve.parse_args(["--out", "x", "--set"]).overrides == []
    assert learning_curve.tiny_config(1200, 1200, []).model == demo.model


@pytest.mark.parametrize("content", [None, "not json", "[1, 2]", '{"steps": [400]}'])
def test_learning_curve_refuses_a_compare_file_that_is_no_curve(tmp_path, capsys, content):
    """One line naming --compare and the file, exit status 2, before anything is trained or removed."""
    from bench import learning_curve

    path = tmp_path / "curve.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(SystemExit) as exit_info:
        learning_curve.parse_args(["--out", str(tmp_path / "out"), "--compare", str(path)])
    assert exit_info.value.code == 2
    message = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"--compare {path}" in message and "curve.json" in message and "Traceback" not in message
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("arguments,named", [(["--set", "model.encoder.drop_path_rate=1"], "--set model.encoder.drop_path_rate=1"),
                                              (["--steps", "7"], "--steps 7")])
def test_learning_curve_refuses_a_recipe_it_cannot_run(tmp_path, capsys, arguments, named):
    from bench import learning_curve

    with pytest.raises(SystemExit) as exit_info:
        learning_curve.parse_args(["--out", str(tmp_path / "out"), *arguments])
    assert exit_info.value.code == 2
    assert named in capsys.readouterr().err.strip().splitlines()[-1]
    assert not (tmp_path / "out").exists()


def test_learning_curve_reads_the_recorded_curve_to_compare_with():
    from bench import learning_curve

    recorded = learning_curve.RESULTS / "2026-12-06-cpu-learning-curve.json"
    args = learning_curve.parse_args(["--out", "x", "--compare", str(recorded)])
    assert args.compare["overrides"] == [] and args.compare["steps"][:3] == [400, 800, 1200]


MARGIN = 0.05  # J&F (as a fraction): the demo's claim, pre-training beats both baselines by 5 points


@pytest.mark.exhaustive
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_full_demo_beats_both_baselines_by_the_margin(tmp_path, seed):
    """The full demo (about 6 minutes on 2 cores per seed): trained beats random init and pixels."""
    out = tmp_path / "demo"
    prepare_out_dir(out)
    summary = run_demo(out, seed=seed, log=lambda _: None)
    trained = summary["trained"]["J&F-Mean"]
    for baseline in ("random_init", "pixels"):
        assert trained - summary[baseline]["J&F-Mean"] >= MARGIN, f"seed {seed}: {summary}"
