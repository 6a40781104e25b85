"""Results files the origins' own scorers read: VIP PNGs as CRW's eval_vip.py reads them
(cv2.imread, last channel, ids <= 20), JHMDB joints as CRW's test.py dumps them for eval_pck.py
(OUT/eval_pck/<i>.dat, (2, 15, T) feature cells); and frame 0 written as each origin does."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from smae.data.synth import SynthPreset, VideoSetSpec, generate
from smae.eval.jhmdb_metrics import normalized_distances
from smae.layouts.images import read_label_png
from smae.layouts.jhmdb import read_joints as read_jhmdb_joints
from smae.eval.vip_metrics import VIP_CLASSES, confusion_matrix
from smae.propagation import PixelFeatures, propagate_dataset, protocol_preset
from smae.propagation.labels import decode_segmentation, segmentation_labels
from smae.propagation.videos import list_videos

SPEC = VideoSetSpec(videos=2, frames=(5, 5), height=32, width=48, objects=(2, 2), entering=(0, 0))
TINY = SynthPreset(mp4=SPEC, davis=SPEC, jhmdb=dataclasses.replace(SPEC, objects=(1, 1)), vip=SPEC)
PROTOCOL = dataclasses.replace(protocol_preset("siammae"), n_context=2, size=(32, 48))


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    generate(root, TINY, seed=5, formats=("davis", "jhmdb", "vip"))
    return root


def test_vip_results_read_by_crw_eval_vip(synth_root, tmp_path):
    root, out = synth_root / "vip", tmp_path / "vip"
    propagate_dataset("vip", root, out, PixelFeatures(stride=4), PROTOCOL, evaluate=False, progress=False)
    ours = np.zeros((20, 20), np.int64)
    theirs = np.zeros((20, 20))
    for video in list_videos("vip", root):
        for frame in video.frames:
            result = out / video.name / f"{frame.stem}.png"
            gt = read_label_png(root / "Annotations" / "Category_ids" / video.name / result.name)
            # eval_vip.py: cv2.imread (3 channels), stop if any value > 20, keep the last channel.
            image = cv2.imread(str(result)).astype(np.int32)
            assert image.max() <= 20
            pred = image[..., -1]
            np.testing.assert_array_equal(pred, read_label_png(result))  # smae evaluate reads the same ids
            keep = (gt >= 0) & (gt < 20)  # its fast_hist
            theirs += np.bincount(20 * gt[keep].astype(int) + pred[keep], minlength=400).reshape(20, 20)
            ours += confusion_matrix(gt, read_label_png(result), len(VIP_CLASSES))
    np.testing.assert_array_equal(ours, theirs)


def test_jhmdb_dat_files_read_by_crw_eval_pck(synth_root, tmp_path):
    root, out = synth_root / "jhmdb", tmp_path / "jhmdb"
    protocol = dataclasses.replace(PROTOCOL, resize="fixed", size=(32, 48))
    propagate_dataset("jhmdb", root, out, PixelFeatures(stride=4), protocol, evaluate=False, progress=False)
    grid = (32 // 4, 48 // 4)
    for index, video in enumerate(list_videos("jhmdb", root)):
        dumped = np.load(out / "eval_pck" / f"{index}.dat", allow_pickle=True)  # as eval_pck.py loads it
        truth = read_jhmdb_joints(video.annotation)  # (T, 15, 2)
        assert dumped.shape == (2, 15, len(video.frames)) and dumped.dtype == np.float32
        height, width = cv2.imread(str(video.frames[0])).shape[:2]
        # eval_pck.py: x / feat_res[0] * width, y / feat_res[1] * height (feat_res = the grid).
        pixels = np.stack([dumped[0] / float(grid[1]) * width, dumped[1] / float(grid[0]) * height])  # (2, 15, T)
        pixels = np.where(dumped < 0, -1.0, pixels).transpose(2, 1, 0)  # (T, 15, 2)
        ours = np.load(out / f"{video.name}.npy")
        np.testing.assert_allclose(pixels, ours, rtol=1e-6, atol=1e-4)
        assert np.array_equal(pixels < 0, ours < 0)
        np.testing.assert_allclose(normalized_distances(pixels, truth), normalized_distances(ours, truth), rtol=1e-5)


def test_frame_zero_from_the_grid_or_as_given(synth_root, tmp_path):
    root = synth_root / "davis"
    video = list_videos("davis", root)[0]
    annotation = read_label_png(video.annotation)
    for first_frame in ("grid", "given"):
        protocol = dataclasses.replace(PROTOCOL, first_frame=first_frame)
        propagate_dataset("davis", root, tmp_path / first_frame, PixelFeatures(stride=4), protocol, evaluate=False, progress=False)
    given = read_label_png(tmp_path / "given" / video.name / f"{video.frames[0].stem}.png")
    grid = read_label_png(tmp_path / "grid" / video.name / f"{video.frames[0].stem}.png")
    np.testing.assert_array_equal(given, annotation)
    # CRW / CropMAE: the first frame's labels on the grid, decoded like any other frame.
    labels, ids = segmentation_labels(annotation, (32, 48), (8, 12), PROTOCOL, torch.device("cpu"))
    np.testing.assert_array_equal(grid, decode_segmentation(labels, ids, (8, 12), (32, 48), annotation.shape, PROTOCOL))
    assert (grid != annotation).any()  # the two rules differ on these frames
