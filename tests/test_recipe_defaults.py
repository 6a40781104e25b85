"""The paper's pre-training recipe (SiamMAE Table 4a, MAE's defaults where the paper keeps them)
is what a run gets when it changes nothing: the presets, the pair data's own defaults, and the
weight decay per parameter in the optimizer the training loop builds."""
from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch
from pretrain_fixtures import small_config

from smae.data.pairs import FramePairDataset, StorePairDataset
from smae.data.transforms import PairAugment
from smae.data.video import VideoSource
from smae.models.presets import PRESETS
from smae.train.config import TRAIN_PRESETS, TrainConfig
from smae.train.distributed import DistContext
from smae.train.loop import _start_session
from smae.train.optim import effective_lr

PAPER = dict(batch_size=2048, epochs=400, warmup_epochs=40, base_lr=1.5e-4, min_lr=0.0, weight_decay=0.05,
             betas=(0.9, 0.95), gap_range=(4, 48), repeats=2, crop_scale=(0.5, 1.0), crop_ratio=(3 / 4, 4 / 3),
             flip_prob=0.5)


@pytest.mark.parametrize("preset", ["default", "vits16", "vits8", "vitb16"])
def test_paper_presets_carry_the_papers_recipe(preset):
    config = TrainConfig() if preset == "default" else TRAIN_PRESETS[preset]
    assert {name: getattr(config, name) for name in PAPER} == PAPER
    assert effective_lr(config.base_lr, config.batch_size) == pytest.approx(1.2e-3)  # 1.5e-4 x 2048 / 256
    model = config.model
    assert (model.mask_ratio, model.past_mask_ratio, model.decoder_variant, model.norm_pix_loss) == (0.95, 0.0, "cross-self", True)
    if preset != "default":
        assert model == PRESETS[preset]


def test_pair_augment_defaults_are_the_papers_crop_and_flip():
    augment = PairAugment(size=224)
    assert (augment.scale, augment.ratio, augment.flip_prob) == ((0.5, 1.0), (3 / 4, 4 / 3), 0.5)


def test_pair_datasets_draw_gaps_of_4_to_48_frames_by_default():
    """Every gap from 4 to 48 occurs in a long video, and none outside: FramePairDataset's own
    default, and StorePairDataset's (the same signature default; it needs a store to run)."""
    dataset = FramePairDataset([VideoSource("video.mp4", False)], PairAugment(size=16))
    assert dataset.repeats == 2
    rng = np.random.default_rng(0)
    gaps = {second - first for _ in range(2000) for first, second in dataset.sample_pairs("video.mp4", 100, rng)}
    assert gaps == set(range(4, 49))
    store_defaults = inspect.signature(StorePairDataset).parameters
    assert (store_defaults["gap_range"].default, store_defaults["repeats"].default) == ((4, 48), 2)


def _decays_by_name(optimizer: torch.optim.Optimizer, model: torch.nn.Module) -> dict[str, float]:
    names = {id(p): name for name, p in model.named_parameters()}
    return {names[id(p)]: group["weight_decay"] for group in optimizer.param_groups for p in group["params"]}


def _exempt(name: str) -> bool:
    """MAE's rule, written by name: no decay on biases, norms, learned tokens, position tables."""
    leaf = name.rsplit(".", 1)[-1]
    return leaf == "bias" or ".norm" in name or name.startswith("norm") or leaf in ("cls_token", "mask_token") or "pos_embed" in name


@pytest.mark.parametrize("variant", ["cross-self", "cross", "joint"])
def test_training_optimizer_decays_only_weight_matrices(variant):
    """The optimizer the training loop starts with (fused AdamW where the device has it, as on
    this CPU): 0.05 on every weight matrix, 0 on every bias, norm, token and position table;
    and one step on zero gradients shrinks exactly the decayed parameters by lr x 0.05."""
    config = small_config(f"model.decoder_variant={variant}", "weight_decay=0.05")
    session, _ = _start_session(config, DistContext(0, 1, torch.device("cpu")), None)
    model, optimizer = session.model, session.optimizer
    assert optimizer.defaults["fused"] is True and optimizer.defaults["betas"] == (0.9, 0.95)
    decays = _decays_by_name(optimizer, model)
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable <= decays.keys()
    for name, decay in decays.items():
        assert decay == (0.0 if _exempt(name) else 0.05), name
    assert {"encoder.cls_token", "mask_token", "encoder.norm.weight", "decoder.norm.bias", "decoder_pred.bias"} <= {
        name for name, decay in decays.items() if decay == 0}

    lr = 0.1
    for group in optimizer.param_groups:
        group["lr"] = lr
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    for p in model.parameters():
        if p.requires_grad:
            p.grad = torch.zeros_like(p)
    optimizer.step()
    for name, p in model.named_parameters():
        shrink = 1 - lr * decays.get(name, 0.0)
        torch.testing.assert_close(p.detach(), before[name] * shrink, rtol=1e-6, atol=0, msg=lambda m, name=name: f"{name}: {m}")
        assert _exempt(name) == torch.equal(p.detach(), before[name]) or not before[name].any(), name
