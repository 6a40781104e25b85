"""The SiamMAE model layer on the CPU."""
import dataclasses

import pytest
import torch

import smae
from smae.models import PRESETS, model_config
from smae.models.pos_embed import resize_pos_embed, sincos_2d


def test_vits16_encoder_has_timm_parameter_count_and_names():
    model = smae.build_model("vits16")
    # timm's vit_small_patch16_224 has 22,050,664 parameters; without its 384x1000 head: 21,665,664.
    assert sum(p.numel() for p in model.encoder.parameters()) == 21_665_664
    names = set(model.encoder.state_dict())
    for name in ["patch_embed.proj.weight", "cls_token", "pos_embed", "blocks.0.norm1.weight", "blocks.11.attn.qkv.bias",
                 "blocks.0.attn.proj.weight", "blocks.0.norm2.bias", "blocks.0.mlp.fc1.weight", "blocks.0.mlp.fc2.bias", "norm.weight"]:
        assert name in names


@pytest.mark.parametrize("preset,size", [("tiny", 64), ("vits16", 224)])
def test_forward_backward(preset, size):
    torch.manual_seed(0)
    model = smae.build_model(preset)
    f1, f2 = torch.randn(2, 3, size, size), torch.randn(2, 3, size, size)
    loss, pred, mask = model(f1, f2)
    patch = model.patch_size
    length = (size // patch) ** 2
    assert pred.shape == (2, length, patch * patch * 3) and mask.shape == (2, length)
    assert torch.isfinite(loss) and loss.item() > 0.5  # random init predicts ~0 against unit-variance targets
    assert (mask.sum(1) == length - max(1, int(length * 0.05))).all()
    assert not torch.equal(mask[0], mask[1])
    loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    assert all(g is not None and torch.isfinite(g).all() for g in grads.values())
    assert grads["encoder.blocks.0.attn.qkv.weight"].abs().sum() > 0  # f1 and f2 paths reach the encoder
    assert model.encoder.pos_embed.grad is None  # fixed sin-cos table


@pytest.mark.parametrize("variant", ["cross-self", "cross", "joint"])
def test_decoder_variants_run_and_differ_in_structure(variant):
    model = smae.build_model("tiny", decoder_variant=variant)
    loss, _, _ = model(torch.randn(1, 3, 64, 64), torch.randn(1, 3, 64, 64))
    loss.backward()
    has_cross = any("cross_attn" in n for n, _ in model.named_parameters())
    has_self = any("self_attn.qkv" in n for n, _ in model.decoder.named_parameters())
    assert has_cross == (variant != "joint") and has_self == (variant != "cross")


def test_past_frame_masking_is_optional():
    model = smae.build_model("tiny", past_mask_ratio=0.5)
    loss, _, mask = model(torch.randn(2, 3, 64, 64), torch.randn(2, 3, 64, 64))
    assert torch.isfinite(loss) and mask.shape == (2, 64)


def test_get_features_at_480x880():
    encoder = smae.build_model("vits16").encoder.eval()
    with torch.no_grad():
        feats = encoder.get_features(torch.randn(1, 3, 480, 880))
    assert feats.shape == (1, 30, 55, 384)
    norms = feats.norm(dim=-1)
    assert not torch.allclose(norms, torch.ones_like(norms))  # not L2-normalised


def test_get_features_equals_tokens_after_final_norm():
    encoder = smae.build_model("tiny").encoder.eval()
    frames = torch.randn(2, 3, 48, 80)
    with torch.no_grad():
        feats = encoder.get_features(frames)
        tokens = encoder(frames)
    torch.testing.assert_close(feats.reshape(2, -1, encoder.embed_dim), tokens[:, 1:])


def test_presets_and_overrides():
    assert {"tiny", "vits16", "vits8", "vitb16"} <= set(PRESETS)
    config = model_config("vits8", decoder="dec512d8b", mask_ratio=0.9)
    assert (config.encoder.patch_size, config.decoder.embed_dim, config.decoder.depth, config.decoder.num_heads) == (8, 512, 8, 16)
    assert model_config("vits16").decoder == smae.models.DECODERS["dec256d4b"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.mask_ratio = 0.5
    with pytest.raises(ValueError, match="unknown model option"):
        model_config("vits16", mask_ration=0.9)
    with pytest.raises(ValueError, match="unknown decoder preset"):
        model_config("vits16", decoder="dec1024")
    with pytest.raises(ValueError, match="unknown model preset"):
        smae.build_model("vitl16")


def test_mae_initialisation():
    model = smae.build_model("tiny")
    weight = model.decoder_pred.weight
    bound = (6 / (weight.shape[0] + weight.shape[1])) ** 0.5  # xavier-uniform
    assert weight.abs().max() <= bound and weight.abs().max() > 0.8 * bound
    assert model.decoder_pred.bias.abs().max() == 0
    assert 0.01 < model.mask_token.std() < 0.04
    assert model.encoder.norm.eps == 1e-6


def test_sincos_table_and_bicubic_resize():
    table = sincos_2d(16, (3, 5))
    assert table.shape == (16, 16) and table[0].abs().max() == 0
    # Column half first: tokens of one column share their second half, tokens of one row their first.
    torch.testing.assert_close(table[1 + 0 * 5 + 2, :8], table[1 + 1 * 5 + 2, :8])
    torch.testing.assert_close(table[1 + 2 * 5 + 0, 8:], table[1 + 2 * 5 + 4, 8:])
    resized = resize_pos_embed(table[None], (3, 5), (6, 10))
    assert resized.shape == (1, 61, 16)
    torch.testing.assert_close(resize_pos_embed(table[None], (3, 5), (3, 5)), table[None])


def test_frames_must_fit_the_patch_grid():
    with pytest.raises(ValueError, match="multiple of the patch size"):
        smae.build_model("tiny").encoder.get_features(torch.randn(1, 3, 60, 64))


def test_drop_path_skips_whole_samples_and_keeps_the_expectation():
    """Each sample's branch is either zero or scaled by 1 / (1 - rate), about `rate` of them zero."""
    from smae.models.vit import drop_path

    torch.manual_seed(0)
    branch = torch.randn(4000, 5, 8)
    out = drop_path(branch, 0.25)
    dropped = (out == 0).flatten(1).all(1)
    kept = ~dropped
    torch.testing.assert_close(out[kept], branch[kept] / 0.75, rtol=0, atol=0)
    assert 0.22 < dropped.float().mean().item() < 0.28  # 4000 draws: 6 standard deviations either side
    assert abs(out.mean().item() - branch.mean().item()) < 0.02


def test_encoder_stochastic_depth_acts_in_training_only():
    """Rates rise linearly to the last block; the weights (names and values) are those of an
    encoder without it, and in eval mode so are the outputs."""
    plain_config = model_config("tiny").encoder
    deep = smae.models.encoder_from_config(dataclasses.replace(plain_config, drop_path_rate=0.3))
    plain = smae.models.encoder_from_config(plain_config)
    assert [round(block.drop_path_rate, 6) for block in deep.blocks] == [0.0, 0.1, 0.2, 0.3]
    assert plain.state_dict().keys() == deep.state_dict().keys()
    deep.load_state_dict(plain.state_dict())
    frames = torch.randn(16, 3, 64, 64)
    torch.testing.assert_close(deep.eval()(frames), plain.eval()(frames), rtol=0, atol=0)
    deep.train()
    draws = []
    for seed in (1, 1, 2):
        torch.manual_seed(seed)
        draws.append(deep(frames))
    torch.testing.assert_close(draws[0], draws[1], rtol=0, atol=0)  # the draws come from torch's generator
    assert not torch.allclose(draws[0], draws[2]) and not torch.allclose(draws[0], plain.train()(frames))


def test_siammae_takes_the_encoders_stochastic_depth():
    encoder = model_config("tiny").encoder
    assert encoder.drop_path_rate == 0.0  # the demo's recipe trains without it
    model = smae.models.SiamMAE(model_config("tiny", encoder=dataclasses.replace(encoder, drop_path_rate=0.2)))
    assert model.encoder.blocks[-1].drop_path_rate == pytest.approx(0.2)
    with pytest.raises(ValueError, match="drop_path_rate"):
        dataclasses.replace(encoder, drop_path_rate=1.0)
