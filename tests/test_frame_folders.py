"""Folders of frame images: natural order, and bad images that skip the folder, never training."""
from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from PIL import Image
from pretrain_fixtures import coded_frames, write_frame_folder

from smae.data.pairs import FramePairDataset, PairKey
from smae.data.transforms import PairAugment
from smae.data.video import VideoError, VideoSource, find_videos, natural_key, open_video


def test_frames_are_read_in_natural_order(tmp_path):
    frames = coded_frames(12, 8, seed=0)
    folder = tmp_path / "clip"
    folder.mkdir()
    for t, rgb in enumerate(frames):  # frame_2 sorts after frame_10 as text
        Image.fromarray(rgb).save(folder / f"frame_{t}.png")
    reader = open_video(VideoSource(str(folder), True))
    got = reader.read(list(range(12)))
    for t in range(12):
        np.testing.assert_array_equal(got[t], frames[t])
    assert sorted(["b10", "a2", "b9", "B1"], key=natural_key) == ["a2", "B1", "b9", "b10"]


def _huge_png(path, width=20000, height=10000):
    """A valid PNG header announcing width x height (Pillow refuses it on open, before decoding)."""
    Image.new("L", (4, 4)).save(path)
    data = bytearray(path.read_bytes())
    struct.pack_into(">II", data, 16, width, height)  # IHDR: after signature (8), length (4), type (4)
    struct.pack_into(">I", data, 29, zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))


def _corrupt_jpeg(path):
    Image.fromarray(coded_frames(1, 32, seed=1)[0]).save(path, quality=90)
    path.write_bytes(path.read_bytes()[:300])


@pytest.mark.parametrize("make_bad,reason", [(_huge_png, "DecompressionBombError"), (_corrupt_jpeg, "OSError: Truncated")])
def test_a_bad_frame_image_skips_its_folder(tmp_path, make_bad, reason):
    write_frame_folder(tmp_path / "good", coded_frames(20, 16, seed=0))
    bad = write_frame_folder(tmp_path / "bad", coded_frames(20, 16, seed=1))
    for index in range(20):
        target = bad / f"{index:05d}.png"
        target.unlink()
        make_bad(target.with_suffix(".jpg") if make_bad is _corrupt_jpeg else target)
    with pytest.raises(VideoError, match=reason):
        open_video(VideoSource(str(bad), True)).read([3])
    dataset = FramePairDataset(find_videos(tmp_path), PairAugment(size=8), gap_range=(2, 8), repeats=1)
    assert [s.path for s in dataset.sources] == [str(bad), str(tmp_path / "good")]
    item = dataset[PairKey(0, 0)]  # index 0: the bad folder, replaced by the good one
    assert item["f1"].shape == (1, 3, 8, 8)
    assert item["skipped"] and all(path == str(bad) and reason in why for path, why in item["skipped"])
