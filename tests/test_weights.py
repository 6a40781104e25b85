"""Loading encoder weights from DINO, MAE, CropMAE, timm and smae checkpoints, full training
checkpoints included, with weights_only=True: plain values load, code never runs."""
import argparse
import os
import pathlib

import numpy as np
import pytest
import torch

import smae
from smae.config import to_dict
from smae.errors import UserError
from smae.models import WeightsError, encoder_state_dict, load_encoder_weights, read_checkpoint
from smae.models.presets import PRESETS
from smae.propagation.features import build_feature_source
from smae.train.config import TrainConfig


@pytest.fixture
def source():
    torch.manual_seed(0)
    return smae.build_encoder("tiny")


def _assert_same_weights(a, b):
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        torch.testing.assert_close(x, y, msg=name)


def _optimizer_state(lr):
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(3))], lr=1e-3)
    optimizer.param_groups[0]["lr"] = lr
    optimizer.param_groups[0]["weight_decay"] = np.float64(0.04) if isinstance(lr, np.floating) else 0.05
    return optimizer.state_dict()


def dino_training_checkpoint(teacher: dict, student: dict) -> dict:
    """What facebookresearch/dino main_dino.py saves: numpy lr / weight decay in the optimizer
    groups (set from numpy schedules), the args Namespace (a PosixPath output_dir under submitit),
    the DINO loss's center and the fp16 scaler state."""
    args = argparse.Namespace(arch="vit_small", patch_size=8, out_dim=65536, norm_last_layer=True, use_fp16=True,
                              global_crops_scale=(0.4, 1.0), output_dir=pathlib.PosixPath("/checkpoint/u/exp/123"),
                              dist_url="env://", rank=0, gpu=0, world_size=8, lr=0.0005)
    return {
        "student": {f"module.backbone.{k}": v for k, v in student.items()} | {"module.head.last_layer.weight_g": torch.ones(8, 1)},
        "teacher": {f"backbone.{k}": v for k, v in teacher.items()} | {"head.mlp.0.weight": torch.zeros(8, 128)},
        "optimizer": _optimizer_state(np.float64(1.5e-4)),
        "epoch": 101,
        "args": args,
        "dino_loss": {"center": torch.zeros(1, 8)},
        "fp16_scaler": {"scale": 65536.0, "growth_factor": 2.0, "backoff_factor": 0.5, "growth_interval": 2000, "_growth_tracker": 17},
    }


def mae_training_checkpoint(model: dict) -> dict:
    """What MAE's (and CropMAE's) util/misc.py save_model writes."""
    args = argparse.Namespace(model="mae_vit_base_patch16", mask_ratio=0.75, norm_pix_loss=True, blr=1.5e-4, lr=6e-4,
                              output_dir="./output_dir", distributed=True, dist_backend="nccl", resume="")
    return {"model": model, "optimizer": _optimizer_state(6e-4), "epoch": 799,
            "scaler": {"scale": 32768.0, "growth_factor": 2.0, "backoff_factor": 0.5, "growth_interval": 2000, "_growth_tracker": 3},
            "args": args}


def test_round_trip_of_our_own_checkpoint(tmp_path):
    torch.manual_seed(1)
    model = smae.build_model("tiny")
    path = tmp_path / "ckpt.pth"
    torch.save({"model": model.state_dict(), "step": 3}, path)
    encoder = smae.build_encoder("tiny")
    load_encoder_weights(encoder, path)
    _assert_same_weights(encoder, model.encoder)


@pytest.mark.parametrize("wrap", [
    lambda s: {"teacher": {f"backbone.{k}": v for k, v in s.items()} | {"head.mlp.0.weight": torch.zeros(2)}},  # DINO
    lambda s: {"student": {f"module.backbone.{k}": v for k, v in s.items()}},  # DINO under DDP
    lambda s: {"model": s | {"decoder_embed.weight": torch.zeros(2), "mask_token": torch.zeros(1)}},  # MAE
    lambda s: s | {"head.weight": torch.zeros(10, 128), "head.bias": torch.zeros(10)},  # timm
], ids=["dino-teacher", "dino-student-ddp", "mae", "timm"])
def test_foreign_layouts_map_onto_the_encoder(tmp_path, source, wrap):
    path = tmp_path / "foreign.pth"
    torch.save(wrap(source.state_dict()), path)
    encoder = smae.build_encoder("tiny")
    load_encoder_weights(encoder, path)
    _assert_same_weights(encoder, source)


def test_full_dino_training_checkpoint_and_checkpoint_keys(tmp_path, source):
    torch.manual_seed(5)
    student = smae.build_encoder("tiny")
    path = tmp_path / "checkpoint.pth"
    torch.save(dino_training_checkpoint(source.state_dict(), student.state_dict()), path)
    for key, expected in [(None, source), ("teacher", source), ("student", student)]:
        encoder = smae.build_encoder("tiny")
        load_encoder_weights(encoder, path, key)
        _assert_same_weights(encoder, expected)
    checkpoint = read_checkpoint(path)  # plain values come back as plain values
    assert checkpoint["args"].patch_size == 8 and checkpoint["args"].output_dir == "/checkpoint/u/exp/123"
    assert checkpoint["optimizer"]["param_groups"][0]["lr"] == 1.5e-4
    with pytest.raises(WeightsError, match="--checkpoint-key model: .*checkpoint.pth has no 'model' entry .*student, teacher"):
        load_encoder_weights(smae.build_encoder("tiny"), path, "model")
    with pytest.raises(WeightsError, match="--checkpoint-key head: not one of teacher, student, model"):
        load_encoder_weights(smae.build_encoder("tiny"), path, "head")


def test_full_mae_training_checkpoint(tmp_path, source):
    path = tmp_path / "checkpoint-799.pth"
    torch.save(mae_training_checkpoint(source.state_dict() | {"decoder_pred.weight": torch.zeros(2)}), path)
    encoder = smae.build_encoder("tiny")
    load_encoder_weights(encoder, path)
    _assert_same_weights(encoder, source)


def test_full_cropmae_siammae_training_checkpoint_loads_whole_model(tmp_path):
    """train_siammae_k400.py saves CropMAE's SiamMAE through MAE's save_model: its encoder keys at the
    top level, decoder_blocks.* in nn.TransformerDecoderLayer names."""
    from test_cropmae_decoder import cropmae_state_dict

    state = cropmae_state_dict("tiny", seed=3)
    path = tmp_path / "checkpoint-399.pth"
    torch.save(mae_training_checkpoint(state), path)
    model = smae.build_model("tiny", weights=path)
    torch.testing.assert_close(model.decoder.blocks[1].cross_attn.qkv.weight, state["decoder_blocks.1.multihead_attn.in_proj_weight"])
    encoder = smae.build_encoder("tiny")
    load_encoder_weights(encoder, path)
    _assert_same_weights(encoder, model.encoder)


class WritesAFile:
    """A pickle payload that would create a file when unpickled."""

    def __init__(self, target):
        self.target = str(target)

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


@pytest.mark.parametrize("extra", ["top-level", "inside-args"])
def test_malicious_checkpoint_never_runs(tmp_path, source, extra):
    marker = tmp_path / "payload-ran"
    payload = WritesAFile(marker)
    checkpoint = {"model": source.state_dict(), "args": argparse.Namespace(lr=1.0)}
    if extra == "top-level":
        checkpoint["object"] = payload
    else:
        checkpoint["args"].hook = payload  # hidden inside an allowed type
    path = tmp_path / "evil.pth"
    torch.save(checkpoint, path)
    with pytest.raises(WeightsError, match=r"evil.pth: holds a Python object \(posix.system\) that smae never unpickles"):
        load_encoder_weights(smae.build_encoder("tiny"), path)
    assert not marker.exists()


def test_numpy_scalars_other_than_numbers_are_refused(tmp_path, source):
    path = tmp_path / "dates.pth"
    torch.save({"model": source.state_dict(), "when": np.datetime64("2024-01-01")}, path)
    with pytest.raises(WeightsError, match="dates.pth: not a readable PyTorch checkpoint"):
        read_checkpoint(path)


def _garbage(tmp_path, kind):
    path = tmp_path / f"{kind}.pth"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("<html>404 Not Found</html>\n" * 20)
    elif kind == "random":
        path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    elif kind == "truncated":
        torch.save({"model": smae.build_encoder("tiny").state_dict()}, path)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif kind == "a-list":
        torch.save([torch.zeros(2)], path)
    elif kind == "no-tensors":
        torch.save({"epoch": 3, "args": argparse.Namespace(lr=1.0)}, path)
    elif kind == "folder":
        path.mkdir()
    return path


@pytest.mark.parametrize("kind", ["empty", "text", "random", "truncated", "a-list", "no-tensors", "folder", "missing"])
def test_unusable_files_give_one_line_naming_the_file(tmp_path, kind):
    path = tmp_path / "missing.pth" if kind == "missing" else _garbage(tmp_path, kind)
    with pytest.raises(UserError) as info:
        load_encoder_weights(smae.build_encoder("tiny"), path)
    message = str(info.value)
    assert message.startswith(str(path)) and "\n" not in message and "; " in message
    assert "weights_only" not in message and "Weights only" not in message


def test_missing_and_unexpected_keys_are_listed(source):
    state = source.state_dict()
    del state["norm.weight"]
    state["blocks.0.attn.rel_pos"] = torch.zeros(3)
    with pytest.raises(ValueError) as info:
        load_encoder_weights(smae.build_encoder("tiny"), state)
    assert "missing keys ['norm.weight']" in str(info.value)
    assert "unexpected keys ['blocks.0.attn.rel_pos']" in str(info.value)


def test_position_table_of_another_grid_becomes_the_encoders(source):
    """Kept as trained (a 4x4 grid), so features at any size resize it once, by the asked rule."""
    state = source.state_dict()
    state["pos_embed"] = torch.randn(1, 1 + 4 * 4, 128)  # a 32x32 checkpoint for a 64x64 encoder
    encoder = smae.build_encoder("tiny")
    load_encoder_weights(encoder, state)
    assert encoder.grid == (4, 4)
    torch.testing.assert_close(encoder.pos_embed, state["pos_embed"])


def test_wrong_preset_names_the_one_that_fits(tmp_path):
    wrong = smae.build_encoder("vits8").state_dict()
    with pytest.raises(WeightsError, match=r"holds a ViT of width 384, depth 12, patch 8 \(preset vits8\).*use --preset vits8"):
        load_encoder_weights(smae.build_encoder("vits16"), wrong)
    odd = {k: v for k, v in smae.build_encoder("tiny").state_dict().items() if not k.startswith("blocks.3.")}
    with pytest.raises(WeightsError, match="depth 3, patch 8 .no preset has this shape.*no preset fits"):
        load_encoder_weights(smae.build_encoder("tiny"), odd)


def _smae_checkpoint(path, preset="tiny"):
    torch.manual_seed(2)
    model = smae.build_model(preset)
    torch.save({"model": model.state_dict(), "optimizer": {}, "scaler": {}, "step": 7, "preset": preset,
                "config": to_dict(TrainConfig(model=PRESETS[preset])), "rng": []}, path)
    return model


def test_propagation_builds_the_encoder_an_smae_checkpoint_was_trained_with(tmp_path):
    path = tmp_path / "checkpoint.pt"
    model = _smae_checkpoint(path)
    source = build_feature_source("encoder", None, str(path))  # no --preset: the checkpoint knows its model
    assert source.stride == 8
    _assert_same_weights(source.encoder, model.encoder)
    with pytest.raises(UserError, match="--preset vits16: .*checkpoint.pt is an smae checkpoint of another encoder.*drop --preset"):
        build_feature_source("encoder", "vits16", str(path))
    foreign = tmp_path / "foreign.pth"
    torch.save(model.encoder.state_dict(), foreign)
    with pytest.raises(UserError, match="foreign.pth: holds .*preset tiny.*use --preset tiny"):
        build_feature_source("encoder", None, str(foreign))  # foreign weights: vits16 assumed
    assert build_feature_source("encoder", "tiny", str(foreign)).stride == 8


def test_prefixes_stack():
    state = encoder_state_dict({"model": {"module.encoder.norm.weight": torch.ones(2)}})
    assert list(state) == ["norm.weight"]
