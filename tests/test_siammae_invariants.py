"""What SiamMAE is, pinned by properties any correct implementation has (not by comparing two
backends): the loss looks only at masked patches, the prediction depends on every patch of the
past frame f1, and label propagation neither depends on feature scale nor reads later labels."""
from __future__ import annotations

import dataclasses
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

import smae
from smae.data.synth import SynthPreset, VideoSetSpec, generate
from smae.layouts.images import read_label_png
from smae.propagation import PixelFeatures, propagate_dataset, protocol_preset

PATCH = 8


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return smae.build_model("tiny").eval()


def _pair(batch=2, seed=0):
    return torch.randn(2, batch, 3, 64, 64, generator=torch.Generator().manual_seed(seed)).unbind(0)


def _run(model, f1, f2, change=None):
    """loss, pred, mask with f2's mask from a fixed seed; change(pred_with_cls, mask) -> an addend."""
    mask_seen = {}

    def hook(module, inputs, output):
        return output + change(output, mask_seen["mask"]) if change is not None else None

    if change is not None:  # a first pass tells which patches are masked
        mask_seen["mask"] = model(f1, f2, generator=torch.Generator().manual_seed(7))[2]
    handle = model.decoder_pred.register_forward_hook(hook)
    try:
        return model(f1, f2, generator=torch.Generator().manual_seed(7))
    finally:
        handle.remove()


def test_loss_ignores_the_prediction_at_visible_patches(model):
    f1, f2 = _pair()
    with torch.no_grad():
        loss, _, mask = _run(model, f1, f2)
        noise = torch.randn(2, 65, PATCH * PATCH * 3) * 10

        # Rows of the decoder output: [CLS], then patches 0 .. L-1 (mask: 1 = masked).
        visible_changed = _run(model, f1, f2, lambda out, m: noise * torch.cat([torch.ones(2, 1), 1 - m], dim=1)[..., None])[0]
        masked_changed = _run(model, f1, f2, lambda out, m: noise * torch.cat([torch.zeros(2, 1), m], dim=1)[..., None])[0]
    torch.testing.assert_close(visible_changed, loss, rtol=0, atol=1e-6)
    assert (masked_changed - loss).abs() > 1e-2


def test_every_patch_of_the_past_frame_reaches_the_loss(model):
    """d loss / d f1 is non-zero, and non-zero at every one of f1's L patches: the decoder's
    context holds 1 + L past tokens (f1 unmasked), not a masked subset, not f2."""
    f1, f2 = _pair(seed=1)
    f1.requires_grad_(True)
    loss, _, _ = _run(model, f1, f2)
    loss.backward()
    per_patch = f1.grad.abs().reshape(2, 3, 8, PATCH, 8, PATCH).sum(dim=(1, 3, 5))  # (B, 8, 8)
    assert (per_patch > 0).all(), f"{int((per_patch == 0).sum())} of f1's patches do not reach the loss"


def test_decoder_context_is_one_plus_l_past_tokens(model):
    seen = []
    handle = model.decoder.register_forward_pre_hook(lambda module, args: seen.append([a.shape for a in args]))
    try:
        _run(model, *_pair())
    finally:
        handle.remove()
    (future, past), = seen
    assert tuple(past) == (2, 1 + 64, 128) and tuple(future) == (2, 1 + 64, 128)


# --- label propagation -----------------------------------------------------------------------

SPEC = VideoSetSpec(videos=2, frames=(6, 6), height=32, width=48, objects=(2, 2), entering=(0, 0))
PROTOCOL = dataclasses.replace(protocol_preset("siammae"), n_context=3, size=(32, 48), radius=3.0)


@pytest.fixture(scope="module")
def davis(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    generate(root, SynthPreset(mp4=SPEC, davis=SPEC, jhmdb=SPEC, vip=SPEC), seed=5, formats=("davis",))
    return root / "davis"


def _outputs(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*.png"))}


class ScaledPixels(PixelFeatures):
    """Pixel features with every cell multiplied by its own positive factor."""

    def __call__(self, frames):
        features = super().__call__(frames)
        scale = torch.rand(features.shape[:3], generator=torch.Generator().manual_seed(1)) * 10 + 0.1
        return features * scale[..., None]


def test_propagation_does_not_depend_on_each_cells_feature_scale(davis, tmp_path):
    """Features are compared as directions: L2-normalised over channels, per cell."""
    propagate_dataset("davis", davis, tmp_path / "plain", PixelFeatures(stride=4), PROTOCOL, evaluate=False, progress=False)
    propagate_dataset("davis", davis, tmp_path / "scaled", ScaledPixels(stride=4), PROTOCOL, evaluate=False, progress=False)
    assert _outputs(tmp_path / "plain") == _outputs(tmp_path / "scaled")


@pytest.mark.parametrize("how", ["garbled", "deleted"])
def test_later_annotations_never_reach_the_predictions(davis, tmp_path, how):
    """Whatever reads them: with the annotations of frames >= 1 garbled or deleted, every
    prediction is byte-identical."""
    propagate_dataset("davis", davis, tmp_path / "clean", PixelFeatures(stride=4), PROTOCOL, evaluate=False, progress=False)
    broken = tmp_path / "data"
    shutil.copytree(davis, broken)
    rng = np.random.default_rng(0)
    for video in (broken / "Annotations" / "480p").iterdir():
        first = read_label_png(video / "00000.png")
        for png in sorted(video.glob("*.png"))[1:]:
            if how == "deleted":
                png.unlink()
            else:
                garbled = Image.fromarray(rng.integers(0, first.max() + 1, first.shape, dtype=np.uint8), mode="P")
                garbled.putpalette(Image.open(video / "00000.png").getpalette())
                garbled.save(png)
    propagate_dataset("davis", broken, tmp_path / "broken", PixelFeatures(stride=4), PROTOCOL, evaluate=False, progress=False)
    clean, after = _outputs(tmp_path / "clean"), _outputs(tmp_path / "broken")
    assert len(clean) == 12 and clean == after
