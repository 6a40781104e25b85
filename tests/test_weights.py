"""Loading encoder weights from DINO, MAE, timm and smae checkpoints."""
import pytest
import torch

import smae
from smae.models import encoder_state_dict, load_encoder_weights


@pytest.fixture
def source():
    torch.manual_seed(0)
    return smae.build_encoder("tiny")


def _assert_same_weights(a, b):
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        torch.testing.assert_close(x, y, msg=name)


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


def test_missing_and_unexpected_keys_are_listed(source):
    state = source.state_dict()
    del state["norm.weight"]
    state["blocks.0.attn.rel_pos"] = torch.zeros(3)
    with pytest.raises(ValueError) as info:
        load_encoder_weights(smae.build_encoder("tiny"), state)
    assert "missing keys ['norm.weight']" in str(info.value)
    assert "unexpected keys ['blocks.0.attn.rel_pos']" in str(info.value)


def test_position_table_of_another_grid_is_resized(source):
    state = source.state_dict()
    state["pos_embed"] = torch.randn(1, 1 + 4 * 4, 128)  # a 32x32 checkpoint for a 64x64 encoder
    encoder = smae.build_encoder("tiny")
    load_encoder_weights(encoder, state)
    assert encoder.pos_embed.shape == (1, 65, 128)
    torch.testing.assert_close(encoder.pos_embed[0, 0], state["pos_embed"][0, 0])


def test_shape_mismatch_and_missing_file_are_clear(tmp_path):
    wrong = smae.build_encoder("vits16").state_dict()
    with pytest.raises(ValueError, match="shapes do not match"):
        load_encoder_weights(smae.build_encoder("vits8"), {k: v for k, v in wrong.items() if k != "pos_embed"} | {"pos_embed": torch.zeros(1, 785, 384)})
    with pytest.raises(FileNotFoundError, match="nowhere.pth"):
        load_encoder_weights(smae.build_encoder("tiny"), tmp_path / "nowhere.pth")


class Payload:
    """An arbitrary object: a weights-only load must refuse to rebuild it."""


def test_checkpoints_are_loaded_without_unpickling_objects(tmp_path, source):
    path = tmp_path / "evil.pth"
    torch.save({"model": source.state_dict(), "object": Payload()}, path)
    with pytest.raises(Exception, match="(?i)weights_only|unsupported global"):
        load_encoder_weights(smae.build_encoder("tiny"), path)


def test_prefixes_stack():
    state = encoder_state_dict({"model": {"module.encoder.norm.weight": torch.ones(2)}})
    assert list(state) == ["norm.weight"]
