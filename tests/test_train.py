"""Pre-training: optimizer groups, schedule, step arithmetic, the loop's outputs and failures."""
from __future__ import annotations

import argparse
import json

import pytest
import torch
from PIL import Image
from pretrain_fixtures import small_config, write_broken_videos, write_synthetic_videos, write_video_set

from smae.config import to_dict
from smae.models import SiamMAE
from smae.commands import pretrain
from smae.train.checkpoint import build_model_from_checkpoint, load_checkpoint
from smae.train.config import TRAIN_PRESETS, train_config_from_dict
from smae.train.distributed import StepBatchSampler
from smae.train.loop import train
from smae.train.optim import effective_lr, lr_at, param_groups, step_plan


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """8 synthetic videos (smae synth) of 24 frames at 48x48."""
    return write_synthetic_videos(tmp_path_factory.mktemp("synthetic"))


def test_no_weight_decay_on_norms_biases_and_tokens():
    model = SiamMAE(small_config().model)
    decay, no_decay = param_groups(model, 0.05)
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    names = {id(p): n for n, p in model.named_parameters()}
    undecayed = {names[id(p)] for p in no_decay["params"]}
    decayed = {names[id(p)] for p in decay["params"]}
    assert {"encoder.cls_token", "mask_token", "encoder.norm.weight", "encoder.blocks.0.attn.qkv.bias"} <= undecayed
    assert {"encoder.blocks.0.attn.qkv.weight", "encoder.patch_embed.proj.weight", "decoder_pred.weight"} <= decayed
    assert all(p.ndim >= 2 for p in decay["params"])
    # Fixed sin-cos tables are not trained at all, so in neither group.
    assert not any("pos_embed" in n for n in decayed | undecayed)
    assert len(decayed) + len(undecayed) == sum(p.requires_grad for p in model.parameters())


def test_learning_rate_rule_and_schedule():
    assert effective_lr(1.5e-4, 2048) == pytest.approx(1.2e-3)
    peak, total, warmup = 1e-3, 100, 10
    lrs = [lr_at(s, peak, total, warmup, min_lr=1e-5) for s in range(total)]
    assert lrs[0] == pytest.approx(peak / warmup) and lrs[warmup - 1] == pytest.approx(peak)
    assert all(b > a for a, b in zip(lrs[:warmup], lrs[1:warmup]))  # linear warmup
    assert all(b < a for a, b in zip(lrs[warmup:], lrs[warmup + 1:]))  # cosine decay
    assert lrs[warmup + (total - warmup) // 2] == pytest.approx((peak + 1e-5) / 2)
    assert lr_at(total, peak, total, warmup, min_lr=1e-5) == pytest.approx(1e-5)


def test_step_plan_counts_effective_epochs():
    # 100 videos, 16 pairs per step = 8 videos: 12 steps per pass; a pass is 2 effective epochs.
    plan = step_plan(100, 16, 2, world_size=2, accum_steps=2, epochs=10, warmup_epochs=1)
    assert plan == (2, 12, 60, 6)
    with pytest.raises(ValueError, match="multiple of repeats"):
        step_plan(100, 12, 2, world_size=2, accum_steps=2, epochs=1, warmup_epochs=0)
    with pytest.raises(ValueError, match="fewer than one step"):
        step_plan(7, 16, 2, world_size=1, accum_steps=1, epochs=1, warmup_epochs=0)


def test_sampler_gives_every_rank_its_slice_of_the_same_global_batches():
    single = list(StepBatchSampler(50, 3, accum_steps=4, world_size=1, rank=0, seed=7, start_step=0, total_steps=9))
    ranks = [list(StepBatchSampler(50, 3, accum_steps=2, world_size=2, rank=r, seed=7, start_step=0, total_steps=9))
             for r in range(2)]
    for step in range(9):  # micro-batch m = rank * accum + a holds the same videos either way
        assert single[4 * step: 4 * step + 4] == ranks[0][2 * step: 2 * step + 2] + ranks[1][2 * step: 2 * step + 2]
    per_pass = [key.video_index for batch in single[:16] for key in batch]  # 4 steps x 12 videos
    assert len(set(per_pass)) == 48 and {key.pass_index for batch in single[16:32] for key in batch} == {1}
    resumed = list(StepBatchSampler(50, 3, accum_steps=4, world_size=1, rank=0, seed=7, start_step=5, total_steps=9))
    assert resumed == single[20:]


def test_config_round_trips_through_json():
    config = small_config("clip_grad=0.5", "precision=fp32")
    assert train_config_from_dict(json.loads(json.dumps(to_dict(config)))) == config
    with pytest.raises(ValueError, match="unknown config keys"):
        train_config_from_dict({**to_dict(config), "lr": 1})
    assert TRAIN_PRESETS["vits16"].batch_size == 2048 and TRAIN_PRESETS["vits16"].epochs == 400


def test_training_writes_its_run_and_the_loss_falls(tmp_path, videos):
    out = tmp_path / "run"
    result = train(small_config("epochs=24", "checkpoint_every=12"), videos, out, preset="test", progress=False)
    assert result.steps == 24 and result.skipped_videos == 0
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == list(range(1, 25))
    first, last = (sum(line["loss"] for line in window) / 4 for window in (lines[:4], lines[-4:]))
    assert last < 0.8 * first, f"loss did not fall: {first:.3f} -> {last:.3f}"
    assert lines[-1]["epoch"] == 24 and lines[-1]["lr"] < lines[5]["lr"]
    saved = json.loads((out / "config.json").read_text())
    assert saved["preset"] == "test" and saved["derived"]["peak_lr"] == pytest.approx(0.1 * 8 / 256)
    checkpoint = load_checkpoint(out / "checkpoint.pt")  # weights_only=True inside
    assert checkpoint["step"] == 24 and train_config_from_dict(checkpoint["config"]) == small_config("epochs=24", "checkpoint_every=12")
    model = build_model_from_checkpoint(out / "checkpoint.pt")
    torch.testing.assert_close(model.state_dict()["decoder_pred.weight"], checkpoint["model"]["decoder_pred.weight"])
    figures = sorted((out / "figures").iterdir())
    assert [f.name for f in figures] == ["step-0000012.png", "step-0000024.png"] and result.figure == figures[-1]
    with Image.open(figures[-1]) as image:  # 2 rows x 4 columns of 32 px panels shown at 128 px
        assert image.width > 4 * 128 and image.height > 2 * 128
    assert not list(out.glob(".*tmp*"))  # no temporary files left behind


def test_bad_videos_are_counted_in_the_metrics(tmp_path, videos):
    data = tmp_path / "data"
    good = write_video_set(data, 4, num_frames=24, size=32)
    write_broken_videos(data, good[0])
    result = train(small_config("epochs=6"), data, tmp_path / "run", progress=False)
    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert result.steps == 6 and result.skipped_videos == lines[-1]["skipped_videos"] > 0


def _cli(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    pretrain.add_arguments(parser)
    return pretrain.run(parser.parse_args(list(argv)))


def test_cli_refuses_to_overwrite_a_run_and_checks_resume_config(tmp_path, videos):
    out = str(tmp_path / "run")
    settings = ["model.encoder.img_size=32", "model.encoder.depth=1", "model.decoder.depth=1", "batch_size=8",
                "epochs=2", "num_workers=0", "gap_range=2,10"]
    assert _cli("--preset", "tiny", "--data", str(videos), "--out", out, "--set", *settings) == 0
    with pytest.raises(FileExistsError, match="--resume"):
        _cli("--preset", "tiny", "--data", str(videos), "--out", out, "--set", *settings)
    with pytest.raises(ValueError, match="batch_size: 8 != 16"):
        _cli("--preset", "tiny", "--data", str(videos), "--out", out, "--resume", "--set", *settings[:-4], "batch_size=16",
             *settings[-3:])
    with pytest.raises(ValueError, match="unknown key 'batchsize'"):
        _cli("--preset", "tiny", "--data", str(videos), "--out", str(tmp_path / "new"), "--set", "batchsize=8")
    assert _cli("--data", str(videos), "--out", out, "--resume") == 0  # finished already: nothing to do
