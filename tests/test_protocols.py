"""Propagation protocols: preset values, frame sizes, `--set` overrides, and the label transforms
each protocol prescribes (in: downsampling, heatmaps; out: upsampling, min-max, joints)."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from smae.config import apply_overrides
from smae.errors import UserError
from smae.propagation.labels import decode_joints, decode_segmentation, joint_heatmaps, segmentation_labels
from smae.propagation.protocols import DINO_STD, IMAGENET_STD, Protocol, input_size, protocol_preset

CPU = torch.device("cpu")


def test_preset_values():
    siammae, crw, dino = (protocol_preset(name) for name in ("siammae", "crw", "dino"))
    assert (siammae.window, siammae.topk, siammae.radius, siammae.n_context, siammae.temperature) == ("circle", 7, 20.0, 20, 0.7)
    assert (siammae.resize, siammae.size, siammae.global_frames, siammae.pad_context) == ("fixed", (480, 880), 1, True)
    assert (siammae.label_downsample, siammae.minmax_output, siammae.std) == ("bilinear", False, IMAGENET_STD)
    assert (crw.window, crw.topk, crw.radius, crw.n_context, crw.temperature, crw.resize) == ("circle", 10, 12.0, 20, 0.05, "native")
    assert (dino.window, dino.topk, dino.radius, dino.n_context, dino.temperature) == ("square", 5, 12.0, 7, 0.1)
    assert (dino.global_frames, dino.pad_context, dino.resize, dino.size, dino.std) == (0, False, "short_side", (480, 64), DINO_STD)
    assert (dino.label_downsample, dino.label_nearest, dino.output_nearest, dino.minmax_output) == ("nearest", "pil", "pil", True)
    # The resize libraries and frame 0 follow each origin: CRW / CropMAE cv2, DINO PIL + torch.
    assert (siammae.frame_dtype, siammae.label_nearest, siammae.output_nearest, siammae.bilinear, siammae.first_frame) == (
        "float32", "cv2", "cv2", "cv2", "grid")
    assert (crw.frame_dtype, crw.bilinear, crw.first_frame) == ("float32", "cv2", "grid")
    assert (dino.frame_dtype, dino.bilinear, dino.first_frame) == ("uint8", "torch", "given")


def test_task_settings():
    vip = protocol_preset("siammae", "vip")
    assert (vip.topk, vip.n_context, vip.radius, vip.output_nearest) == (10, 20, 20.0, "pil")  # CropMAE's VIP arguments
    assert protocol_preset("siammae-paper", "vip").radius == 8.0  # SiamMAE paper Table 4b
    jhmdb = protocol_preset("siammae", "jhmdb")
    assert (jhmdb.topk, jhmdb.n_context, jhmdb.radius, jhmdb.size, jhmdb.joint_topk) == (7, 20, 20.0, (320, 320), 5)
    assert dataclasses.replace(protocol_preset("siammae-paper", "jhmdb"), joint_topk=5) == jhmdb
    assert protocol_preset("crw", "jhmdb").joint_topk == 3  # CRW's process_pose
    assert protocol_preset("siammae-paper") == protocol_preset("siammae")  # DAVIS: no disagreement
    assert protocol_preset("dino", "vip") == protocol_preset("dino")
    with pytest.raises(ValueError, match="unknown protocol"):
        protocol_preset("stc")
    with pytest.raises(ValueError, match="unknown task"):
        protocol_preset("crw", "kinetics")


@pytest.mark.parametrize(
    "name, frame, stride, expected",
    [
        ("siammae", (480, 854), 16, (480, 880)),
        ("crw", (480, 854), 16, (480, 848)),  # native, floored to whole patches
        ("crw", (480, 854), 8, (480, 848)),
        ("dino", (480, 854), 16, (480, 832)),  # 854 floored to a multiple of 64
        ("dino", (1080, 1920), 8, (480, 832)),  # 853.3 -> 832
        ("dino", (854, 480), 16, (832, 480)),  # portrait: the width is the short side
    ],
)
def test_input_size(name, frame, stride, expected):
    assert input_size(protocol_preset(name), *frame, stride) == expected


def test_input_size_long_side_and_errors():
    vip = protocol_preset("siammae", "vip")  # CropMAE's VIP: long side 880, short side floored to 64
    assert input_size(vip, 720, 1280, 16) == (448, 880)  # 495 -> 448
    assert input_size(vip, 1280, 720, 16) == (880, 448)
    with pytest.raises(ValueError, match="multiple of the feature stride 16"):
        input_size(dataclasses.replace(protocol_preset("siammae"), size=(100, 200)), 480, 854, 16)


def test_overrides():
    protocol = apply_overrides(protocol_preset("siammae"), ["topk=3", "radius=none", "size=240,440", "window=square"])
    assert (protocol.topk, protocol.radius, protocol.size, protocol.window) == (3, None, (240, 440), "square")
    with pytest.raises(ValueError, match="unknown key 'top_k'"):
        apply_overrides(protocol_preset("siammae"), ["top_k=3"])
    with pytest.raises(ValueError, match="not one of"):
        apply_overrides(protocol_preset("siammae"), ["window=diamond"])
    with pytest.raises(UserError, match="--set topk=0: must be at least 1"):
        apply_overrides(protocol_preset("siammae"), ["topk=0"])
    with pytest.raises(UserError, match="temperature"):
        Protocol(temperature=0.0)


def test_first_frame_labels_crw_and_dino():
    rng = np.random.default_rng(0)
    annotation = rng.choice([0, 2, 5, 255], size=(8, 12)).astype(np.uint8)  # 255: void, counts as background
    ids_expected = [0, 2, 5]
    onehot = (np.where(annotation == 255, 0, annotation)[..., None] == np.array(ids_expected)).astype(np.float32)
    crw = protocol_preset("siammae")
    labels, ids = segmentation_labels(annotation, (8, 12), (4, 6), crw, CPU)
    assert ids.tolist() == ids_expected
    # Bilinear by exactly 2 with half-pixel centres samples between 4 pixels: the 2x2 block mean.
    block_mean = onehot.reshape(4, 2, 6, 2, 3).mean(axis=(1, 3)).reshape(24, 3)
    torch.testing.assert_close(labels, torch.from_numpy(block_mean))
    labels, _ = segmentation_labels(annotation, (8, 12), (4, 6), protocol_preset("dino"), CPU)
    # PIL's nearest samples the pixel under each target cell's centre: (2i + 1, 2j + 1).
    torch.testing.assert_close(labels, torch.from_numpy(onehot[1::2, 1::2].reshape(24, 3)))
    labels, _ = segmentation_labels(annotation, (8, 12), (4, 6), dataclasses.replace(crw, label_downsample="nearest", label_nearest="cv2"), CPU)
    torch.testing.assert_close(labels, torch.from_numpy(onehot[::2, ::2].reshape(24, 3)))  # cv2's: (2i, 2j)


def test_decode_segmentation_maps_channels_to_ids_and_dino_minmax():
    grid = (2, 2)
    # Channel 0 always larger, but channel 1 relatively high in cell 3 only.
    pred = torch.tensor([[0.6, 0.0], [0.6, 0.1], [0.55, 0.1], [0.5, 0.4]])  # min-max: [1, 1, .5, 0] vs [0, .25, .25, 1]
    ids = torch.tensor([0, 7])
    crw = protocol_preset("siammae")
    assert (decode_segmentation(pred, ids, grid, (2, 2), (4, 4), crw) == 0).all()
    out = decode_segmentation(pred, ids, grid, (2, 2), (4, 4), protocol_preset("dino"))
    expected = np.array([[0, 0], [0, 7]], dtype=np.uint8).repeat(2, 0).repeat(2, 1)
    np.testing.assert_array_equal(out, expected)


def crw_gaussian(height, width, x, y, sigma):
    """CRW's rule, written out step by step: the window, its clipped part, then the copy."""
    image = np.zeros((height, width))
    upper_left = [int(x - 3 * sigma), int(y - 3 * sigma)]
    bottom_right = [int(x + 3 * sigma + 1), int(y + 3 * sigma + 1)]
    if upper_left[0] >= width or upper_left[1] >= height or bottom_right[0] < 0 or bottom_right[1] < 0:
        return image
    size = 6 * sigma + 1
    xs = np.arange(0, size, 1, float)
    ys = xs[:, None]
    window = np.exp(-((xs - size // 2) ** 2 + (ys - size // 2) ** 2) / (2 * sigma**2))
    gx = max(0, -upper_left[0]), min(bottom_right[0], width) - upper_left[0]
    gy = max(0, -upper_left[1]), min(bottom_right[1], height) - upper_left[1]
    ix = max(0, upper_left[0]), min(bottom_right[0], width)
    iy = max(0, upper_left[1]), min(bottom_right[1], height)
    image[iy[0]:iy[1], ix[0]:ix[1]] = window[gy[0]:gy[1], gx[0]:gx[1]]
    return image


def test_joint_heatmaps_follow_crw_and_decode_back():
    rng = np.random.default_rng(1)
    grid = (9, 11)
    joints = np.concatenate([rng.uniform(-2, 12, size=(12, 2)), [[0.3, 0.2], [10.9, 8.9], [-3, 4], [20, 3]]])
    heat = joint_heatmaps(joints, grid, 0.5).reshape(*grid, -1)
    for j, (x, y) in enumerate(joints):
        torch.testing.assert_close(heat[..., 1 + j], torch.from_numpy(crw_gaussian(*grid, x, y, 0.5)).float())
    assert torch.equal(heat[..., 0], (heat[..., 1:].sum(-1) == 0).float())

    interior = rng.uniform(2, 8, size=(15, 2))
    decoded = decode_joints(joint_heatmaps(interior, grid, 0.5), grid, topk=3)
    # Peak at the rounded position, top-3 mean pulled at most exp(-2) / (1 + 2 exp(-2)) cells aside.
    assert np.abs(decoded - interior).max() <= 0.5 + np.exp(-2) / (1 + 2 * np.exp(-2)) + 1e-9
    lost = decode_joints(torch.cat([torch.ones(99, 1), torch.zeros(99, 2)], dim=1), grid, topk=3)
    np.testing.assert_array_equal(lost, -np.ones((2, 2)))
