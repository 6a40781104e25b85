"""Each protocol's resizes reproduce its origin's, pixel for pixel, on real DAVIS frame sizes.

Two kinds of test. Rule tests: the source column (or value) each output column gets, written
out from the library's documented rule, never from calling the library. Origin tests: the
origin's own steps (DINO's eval_video_segmentation.py, CRW's / CropMAE's vos.py, test_utils.py
dump_predictions and convert_davis.py), written out here with the calls they make, against
smae's labels, frames and decoded PNGs on 854-, 910- and 1152-wide frames.
"""
from __future__ import annotations

import dataclasses
import math

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from smae.propagation.labels import decode_segmentation, resize_bilinear, resize_nearest, segmentation_labels
from smae.propagation.protocols import input_size, protocol_preset
from smae.propagation.videos import iter_frame_batches, resize_frame

CPU = torch.device("cpu")


def columns(rule: str, n_in: int, n_out: int) -> list[int]:
    """Source column of every output column: a row of the column numbers, resized."""
    # A label map holds bytes: resize the column's low and high byte separately.
    low, high = (np.arange(n_in)[None] % 256).astype(np.uint8), (np.arange(n_in)[None] // 256).astype(np.uint8)
    resized = [resize_nearest(part, (1, n_out), rule)[0].astype(int) for part in (low, high)]
    return (resized[0] + 256 * resized[1]).tolist()


def test_cv2_nearest_floors_the_double_quotient():
    # cv2 INTER_NEAREST: column x reads floor(x * (1 / (out / in))), the inverse scale in double.
    assert columns("cv2", 5, 3) == [0, 1, 3]  # x * 5/3 = 0, 1.67, 3.33
    assert columns("cv2", 3, 7) == [0, 0, 0, 1, 1, 2, 2]  # x * 3/7 = 0, .43, .86, 1.29, 1.71, 2.14, 2.57
    # Real DAVIS widths: 1 / (910 / 880) rounds down, so 91 * it = 87.999..., read as column 87;
    # the exact quotient 91 * 880 / 910 = 88 (torch's float32 rule lands there too).
    to_910 = columns("cv2", 880, 910)
    assert [to_910[x] for x in (90, 91, 92, 182, 819)] == [87, 87, 88, 175, 791]
    assert columns("cv2", 880, 1152)[648] == 494  # 648 * 880 / 1152 = 495 exactly
    assert columns("cv2", 880, 854)[853] == 878


def test_pil_nearest_accumulates_its_sampling_position():
    # PIL NEAREST: position starts at step / 2, step = in / out, and grows by step per column
    # (a double sum); the column read is trunc(position).
    assert columns("pil", 5, 3) == [0, 2, 4]  # 0.83, 2.5, 4.17
    assert columns("pil", 3, 7) == [0, 0, 1, 1, 1, 2, 2]  # 0.21, 0.64, 1.07, 1.5, 1.93, 2.36, 2.79
    # DINO's output, 832 -> 854: positions 639.5, 640.5, 641.5 times 832/854 are 623.03, 624 and
    # 624.97, but the sum reaches only 623.99999... at column 640.
    to_854 = columns("pil", 832, 854)
    assert [to_854[x] for x in (639, 640, 641)] == [623, 623, 624]
    assert columns("pil", 896, 910)[97] == 95  # bike-packing's width: 97.5 * 896 / 910 = 96 exactly


def test_cv2_bilinear_on_uint8_is_fixed_point_and_rounds_to_bytes():
    # cv2 INTER_LINEAR, 3 -> 7 columns: x_src = (x + 0.5) * 3/7 - 0.5, clamped at the edges; on
    # uint8 the weights are rounded to 1/2048 and the sum to a byte: (a0 s0 + a1 s1 + 1024) >> 11.
    row = np.array([[10, 20, 250]], dtype=np.uint8).repeat(2, 0)
    # x=1: (1755*10 + 293*20 + 1024) >> 11 = 11; x=2: (878*10 + 1170*20 + 1024) >> 11 = 16;
    # x=4: (1170*20 + 878*250 + 1024) >> 11 = 119; x=5: (293*20 + 1755*250 + 1024) >> 11 = 217.
    expected_uint8 = [10, 11, 16, 20, 119, 217, 250]
    expected_float = [10, 10 + 10 / 7, 10 + 40 / 7, 20, 20 + 230 * 3 / 7, 20 + 230 * 6 / 7, 250]
    assert protocol_preset("dino").frame_dtype == "uint8" and protocol_preset("siammae").frame_dtype == "float32"
    image = np.repeat(row[..., None], 3, axis=2)  # (2, 3, 3) uint8
    np.testing.assert_array_equal(resize_frame(image, (2, 7), "uint8")[0, :, 0], np.float32(expected_uint8) / np.float32(255))
    np.testing.assert_allclose(resize_frame(image, (2, 7), "float32")[0, :, 0], np.float32(expected_float) / 255, rtol=1e-6)


def cv2_one_hot_labels(annotation: np.ndarray, size, grid) -> np.ndarray:
    """CropMAE's vos.py + CRW's label set, step by step: the colour label image (as cv2.imread
    gives it), cv2 nearest to the input size, one-hot per colour of the label set, cv2 bilinear
    (float32) to the grid. -> (h, w, K) float32."""
    palette = np.array(Image.open(annotation).getpalette()[:768], dtype=np.uint8).reshape(256, 3)
    colours = palette[np.asarray(Image.open(annotation))][..., ::-1]  # BGR, as cv2.imread
    if colours.shape[:2] != tuple(size):
        colours = cv2.resize(colours, (size[1], size[0]), interpolation=cv2.INTER_NEAREST)
    label_set = np.unique(colours.reshape(-1, 3), axis=0)
    onehot = np.stack([np.all(colours == colour, axis=-1) for colour in label_set], axis=-1)
    return cv2.resize(np.float32(onehot), (grid[1], grid[0]), interpolation=cv2.INTER_LINEAR)


def blob_annotation(path, height, width, seed, objects=3):
    """A palette PNG with `objects` ellipses of ids 1..objects (DAVIS palette)."""
    from smae.layouts.images import write_indexed_png

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:height, :width]
    ids = np.zeros((height, width), np.uint8)
    for label in range(1, objects + 1):
        cy, cx, ry, rx = rng.uniform([60, 60, 20, 30], [height - 60, width - 60, 90, 140])
        ids[((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1] = label
    write_indexed_png(path, ids)
    return ids


@pytest.mark.parametrize("width", [854, 910, 1152])
def test_crw_first_frame_labels_match_cropmae_steps(tmp_path, width):
    annotation = tmp_path / "00000.png"
    ids = blob_annotation(annotation, 480, width, seed=width)
    protocol = protocol_preset("siammae")
    size = input_size(protocol, 480, width, 16)
    grid = (size[0] // 16, size[1] // 16)
    labels, label_ids = segmentation_labels(ids, size, grid, protocol, CPU)
    expected = cv2_one_hot_labels(annotation, size, grid)
    assert label_ids.tolist() == [0, 1, 2, 3]
    assert torch.equal(labels, torch.from_numpy(expected.reshape(-1, 4)))


def crw_decode(pred: np.ndarray, label_ids: np.ndarray, size, out_size) -> np.ndarray:
    """CRW's dump_predictions then convert_davis.py: cv2 bilinear (float32) to the input size,
    argmax, the channel's id, cv2 nearest to the annotation size. pred (h, w, K) float32."""
    upsampled = cv2.resize(pred, (size[1], size[0]))
    ids = label_ids[np.argmax(upsampled, axis=-1)].astype(np.uint8)
    return cv2.resize(ids, (out_size[1], out_size[0]), interpolation=cv2.INTER_NEAREST)


def tie_rich_soft_labels(grid, channels, seed):
    """Soft labels in steps of 1/3 shared by two channels per cell: the upsampling meets
    two-label ties, which cv2's float32 and torch's bilinear round differently."""
    rng = np.random.default_rng(seed)
    pred = np.zeros((*grid, channels), np.float32)
    share = (rng.integers(0, 4, grid) / 3).astype(np.float32)
    first = rng.integers(0, channels, grid)
    second = (first + rng.integers(1, channels, grid)) % channels
    np.put_along_axis(pred, first[..., None], share[..., None], axis=-1)
    np.put_along_axis(pred, second[..., None], 1 - share[..., None], axis=-1)
    return pred


@pytest.mark.parametrize("width", [854, 910, 1152])
def test_crw_decode_matches_dump_predictions_and_convert_davis(width):
    protocol = protocol_preset("siammae")
    size = input_size(protocol, 480, width, 16)
    grid = (size[0] // 16, size[1] // 16)
    pred = tie_rich_soft_labels(grid, 3, seed=width)
    label_ids = np.array([0, 2, 5])
    ours = decode_segmentation(torch.from_numpy(pred.reshape(-1, 3)), torch.from_numpy(label_ids), grid, size, (480, width), protocol)
    np.testing.assert_array_equal(ours, crw_decode(pred, label_ids, size, (480, width)))
    # torch's bilinear breaks some of these ties the other way: the test sees the library.
    with_torch = decode_segmentation(torch.from_numpy(pred.reshape(-1, 3)), torch.from_numpy(label_ids), grid, size, (480, width),
                                     dataclasses.replace(protocol, bilinear="torch"))
    assert (with_torch != ours).any()


def dino_read_frame(path, height, width) -> torch.Tensor:
    """DINO's read_frame: cv2 (BGR uint8) resized as uint8 to the short side 480 and the long
    side floored to 64, / 255, RGB, normalised with its std. -> (3, H, W) float32."""
    image = np.asarray(Image.open(path).convert("RGB"))[..., ::-1]  # what cv2.imread returns
    th = 480
    tw = int(((th * width) / height) // 64 * 64)
    image = cv2.resize(np.ascontiguousarray(image), (tw, th)).astype(np.float32) / 255.0
    tensor = torch.from_numpy(np.transpose(image[:, :, ::-1].copy(), (2, 0, 1))).float()
    for channel, mean, std in zip(tensor, (0.485, 0.456, 0.406), (0.228, 0.224, 0.225)):
        channel.sub_(mean).div_(std)
    return tensor


def cropmae_load_frame(path, size) -> torch.Tensor:
    """CropMAE's load_image + resize + color_normalize: float32 / 255, cv2 bilinear on floats."""
    image = np.asarray(Image.open(path).convert("RGB")).astype(np.float32) / 255.0
    if image.shape[:2] != tuple(size):
        image = cv2.resize(image, (size[1], size[0]))
    tensor = torch.from_numpy(np.transpose(image, (2, 0, 1)).copy()).float()
    for channel, mean, std in zip(tensor, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)):
        channel.sub_(mean).div_(std)
    return tensor


@pytest.mark.parametrize("name, width", [("dino", 910), ("dino", 1152), ("siammae", 854), ("crw", 910)])
def test_frames_match_the_origins_preprocessing(tmp_path, name, width):
    rng = np.random.default_rng(width)
    smooth = cv2.resize(rng.integers(0, 256, (30, width // 16, 3)).astype(np.uint8), (width, 480), interpolation=cv2.INTER_CUBIC)
    path = tmp_path / "00000.jpg"
    Image.fromarray(smooth).save(path, quality=90)
    protocol = protocol_preset(name)
    batch = next(iter_frame_batches((path,), protocol, 16, 1, CPU))
    size = input_size(protocol, 480, width, 16)
    expected = dino_read_frame(path, 480, width) if name == "dino" else cropmae_load_frame(path, size)
    assert torch.equal(batch.pixels[0], expected)


@pytest.mark.parametrize("width", [854, 910])
def test_dino_labels_and_decode_match_its_script(tmp_path, width):
    annotation = tmp_path / "00000.png"
    ids = blob_annotation(annotation, 480, width, seed=width, objects=2)
    protocol = protocol_preset("dino")
    size = input_size(protocol, 480, width, 16)
    grid = (size[0] // 16, size[1] // 16)
    # read_seg: the palette image PIL-nearest-resized straight to the grid, one-hot over 0..max.
    small = np.array(Image.open(annotation).resize((size[1] // 16, size[0] // 16), 0))
    labels, label_ids = segmentation_labels(ids, size, grid, protocol, CPU)
    assert torch.equal(labels, F.one_hot(torch.from_numpy(small).long(), 3).float().reshape(-1, 3))

    # Output: bilinear x patch (torch), norm_mask, torch.max, PIL nearest back to the frame size.
    rng = np.random.default_rng(width)
    pred = torch.from_numpy(rng.random((grid[0] * grid[1], 3), dtype=np.float32))
    maps = F.interpolate(pred.T.reshape(1, 3, *grid), scale_factor=16, mode="bilinear", align_corners=False,
                         recompute_scale_factor=False)[0]
    for channel in maps:
        if channel.max() > 0:
            channel.sub_(channel.min())
            channel.div_(channel.max())
    seg = np.array(torch.max(maps, dim=0)[1].numpy(), dtype=np.uint8)
    expected = np.array(Image.fromarray(seg).resize((width, 480), 0))
    np.testing.assert_array_equal(decode_segmentation(pred, label_ids, grid, size, (480, width), protocol), expected)


def test_resize_rules_name_the_library():
    with pytest.raises(ValueError, match="nearest rule"):
        resize_nearest(np.zeros((2, 2), np.uint8), (3, 3), "torch")
    with pytest.raises(ValueError, match="bilinear library"):
        resize_bilinear(torch.zeros(1, 2, 2), (3, 3), "pil")
    one = resize_bilinear(torch.ones(1, 2, 2), (3, 5), "cv2")  # one channel: cv2 drops the axis, we do not
    assert one.shape == (1, 3, 5) and math.isclose(float(one.min()), 1.0)
