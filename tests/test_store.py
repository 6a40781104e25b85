"""The prepared frame store: every frame of a plain decode, resized, in tar shards; a killed
prepare resumes to the same bytes; pairs from the store match pairs from the videos."""
from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import tarfile

import numpy as np
import pytest
import real_videos
import torch
from PIL import Image
from pretrain_fixtures import CODE_STEP, coded_frames, small_config, write_frame_folder, write_mp4

from smae.data.pair_source import open_pair_dataset, pair_batch_to_device
from smae.data.pairs import FramePairDataset, PairKey, StorePairDataset
from smae.data.prepare import fitted_size, prepare
from smae.data.store import FrameStore, encode_jpeg
from smae.data.transforms import PairAugment
from smae.data.video import find_videos
from smae.errors import UserError


@pytest.fixture(scope="module")
def real_corpus(tmp_path_factory):
    try:
        samples = real_videos.sample_videos()
    except real_videos.Unavailable as error:
        pytest.skip(f"real sample videos unavailable: {error}")
    corpus = tmp_path_factory.mktemp("corpus")
    for name in ("editlist_cut.mp4", "mpeg4_bframes.avi", "rotated.mp4", "vp9.webm", "mjpeg_dropped.avi"):
        (corpus / "hard").mkdir(exist_ok=True)
        os.symlink(real_videos.hard_case(name), corpus / "hard" / name)
    (corpus / "camera").mkdir()
    os.symlink(samples["carphone_pristine.mp4"], corpus / "camera" / "carphone.mp4")
    (corpus / "camera" / "broken.mp4").write_bytes(samples["bikes.mp4"].read_bytes()[:5000])
    return corpus


def _expected_jpegs(path, short_side, quality=90):
    """Independently of smae's reader: a plain PyAV decode, each frame scaled in swscale (area
    filter) to the short side, turned upright, and JPEG-encoded as the store does."""
    import av

    jpegs = []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            turns = round(frame.rotation / 90) % 4
            width, height = (frame.height, frame.width) if turns % 2 else (frame.width, frame.height)
            width, height = fitted_size(width, height, short_side)
            if turns % 2:
                width, height = height, width
            rgb = frame.to_ndarray(format="rgb24", width=width, height=height, interpolation="AREA")
            jpegs.append(encode_jpeg(np.ascontiguousarray(np.rot90(rgb, k=turns)), quality))
    return jpegs


def test_store_holds_every_frame_of_the_plain_decode_in_order(real_corpus, tmp_path):
    summary = prepare(real_corpus, tmp_path / "store", short_side=48, workers=2, progress=False)
    store = FrameStore(tmp_path / "store")
    assert summary.videos == len(store.videos) == 6 and summary.unreadable == 1
    assert [os.path.basename(p) for p, _ in store.unreadable] == ["broken.mp4"]
    assert "broken.mp4" in (tmp_path / "store" / "unreadable.txt").read_text()
    for video in store.videos:
        expected = _expected_jpegs(video.path, 48)
        assert store.num_frames(video.row) == len(expected), video.path
        for index, reference in enumerate(expected):
            assert store.jpeg(video.row, index) == reference, (video.path, index)
        assert min(Image.open(io.BytesIO(reference)).size) == 48
    # Shards are plain tars that standard tools read. Shard 0 holds broken.mp4 (first in order):
    # left out, an empty tar; shard 1 holds the first readable video.
    with tarfile.open(tmp_path / "store" / "shard-000000.tar") as shard:
        assert shard.getmembers() == []
    with tarfile.open(tmp_path / "store" / "shard-000001.tar") as shard:
        members = shard.getmembers()
        assert [m.name for m in members[:2]] == ["0000001/000000.jpg", "0000001/000001.jpg"]
        assert len(members) == store.num_frames(0) and shard.extractfile(members[5]).read() == store.jpeg(0, 5)


def _coded_corpus(folder, count=6):
    folder.mkdir(parents=True)
    for i in range(count):
        write_mp4(folder / f"v{i}.mp4", coded_frames(24, 32, seed=i), gop=6)
    write_frame_folder(folder / "frames_folder", coded_frames(24, 32, seed=9))
    return folder


# Loaded by every Python process of the killed run (PYTHONPATH), the spawned worker included:
# after the first frame of the fourth shard, the whole process group is killed, as a machine going
# down would kill it: at a fixed point, whatever the machine's load.
KILL_IN_THE_FOURTH_SHARD = """
import os, signal
from smae.data import store
add_frame = store.ShardWriter.add_frame
def add_frame_then_die(self, row, frame, jpeg):
    add_frame(self, row, frame, jpeg)
    if self.stem == store.shard_stem(3):
        os.killpg(os.getpgrp(), signal.SIGKILL)
store.ShardWriter.add_frame = add_frame_then_die
"""


def test_a_killed_prepare_resumes_to_the_same_store(tmp_path):
    corpus = _coded_corpus(tmp_path / "corpus", count=10)
    prepare(corpus, tmp_path / "whole", workers=1, progress=False)
    command = [sys.executable, "-m", "smae", "prepare", "--data", str(corpus), "--out", str(tmp_path / "killed"), "--workers", "1"]
    (tmp_path / "hook").mkdir()
    (tmp_path / "hook" / "sitecustomize.py").write_text(KILL_IN_THE_FOURTH_SHARD)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "hook"), *filter(None, [os.environ.get("PYTHONPATH")])])}
    killed = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env, start_new_session=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    finished = sorted(p.name for p in (tmp_path / "killed").glob("shard-*.json"))
    assert finished == [f"shard-{i:06d}.json" for i in range(3)], finished  # killed part way
    assert list((tmp_path / "killed").glob(".shard-000003.tar.tmp-*"))  # in the middle of the fourth
    kept = {name: (tmp_path / "killed" / name.replace(".json", ".tar")).stat().st_mtime_ns for name in finished}
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "11 videos" in result.stdout
    for name, modified in kept.items():  # finished shards are kept, not written again
        assert (tmp_path / "killed" / name.replace(".json", ".tar")).stat().st_mtime_ns == modified, name
    whole = sorted(p.name for p in (tmp_path / "whole").iterdir())
    assert sorted(p.name for p in (tmp_path / "killed").iterdir()) == whole  # no temporaries left
    for name in whole:
        if name != "smae-store.json":
            assert (tmp_path / "killed" / name).read_bytes() == (tmp_path / "whole" / name).read_bytes(), name


def test_prepare_refuses_a_foreign_folder_or_changed_options(tmp_path):
    corpus = _coded_corpus(tmp_path / "corpus", count=2)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="--out .*busy: exists and is not an empty folder"):
        prepare(corpus, tmp_path / "busy", progress=False)
    prepare(corpus, tmp_path / "store", progress=False)
    with pytest.raises(UserError, match="other short_side"):
        prepare(corpus, tmp_path / "store", short_side=128, progress=False)
    with pytest.raises(UserError, match="--short-side 8"):
        prepare(corpus, tmp_path / "other", short_side=8, progress=False)


def test_store_pairs_are_the_video_pairs(tmp_path):
    """Same key -> same frames, crop and flip as FramePairDataset on the videos; the red level of
    each output still names its frame."""
    corpus = _coded_corpus(tmp_path / "corpus")
    prepare(corpus, tmp_path / "store", workers=2, progress=False)
    store_pairs = open_pair_dataset(str(tmp_path / "store"), PairAugment(size=16), (3, 12), 2, seed=4)
    video_pairs = FramePairDataset(find_videos(corpus), PairAugment(size=16), (3, 12), 2, seed=4)
    assert isinstance(store_pairs, StorePairDataset) and len(store_pairs) == len(video_pairs) == 7
    for pass_index in range(3):
        for index in range(7):
            a, b = store_pairs[PairKey(pass_index, index)], video_pairs[PairKey(pass_index, index)]
            assert torch.equal(a["frames"], b["frames"]) and not a["skipped"]
            assert a["f1"].shape == b["f1"].shape == (2, 3, 16, 16) and a["f1"].dtype == torch.uint8
            a["f1"], a["f2"] = pair_batch_to_device(a, torch.device("cpu"))  # normalised as for the model
            # JPEG and the uint8 resize move pixels a little; another crop or flip moves them a lot.
            for key in ("f1", "f2"):
                error = (a[key] - b[key]).abs().mean(dim=(1, 2, 3))
                mirrored = (a[key] - b[key].flip(-1)).abs().mean(dim=(1, 2, 3))
                assert (error < 0.25).all() and (error < mirrored / 3).all(), (error, mirrored)
            red = (a["f2"][:, 0] * 0.229 + 0.485).mean(dim=(-1, -2)) * 255 / CODE_STEP
            torch.testing.assert_close(red, a["frames"][:, 1].float(), atol=1.0, rtol=0)


def test_a_damaged_shard_skips_its_videos_and_pretrain_reads_a_store(tmp_path):
    from smae.train.loop import train

    corpus = _coded_corpus(tmp_path / "corpus")
    prepare(corpus, tmp_path / "store", workers=2, progress=False)
    result = train(small_config("epochs=2"), tmp_path / "store", tmp_path / "run", progress=False)
    assert result.steps > 0 and np.isfinite(result.final_loss) and result.skipped_videos == 0
    with open(tmp_path / "store" / "shard-000000.tar", "r+b") as shard:
        shard.truncate(100)
    dataset = open_pair_dataset(str(tmp_path / "store"), PairAugment(size=16), (3, 12), 1, seed=0)
    item = dataset[PairKey(0, 0)]
    assert item["skipped"] and "shard-000000.tar" in item["skipped"][0][1]
