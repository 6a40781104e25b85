"""Frame-pair data: crops, gaps, decoding, and bad files."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader
from pretrain_fixtures import CODE_STEP, coded_frames, write_broken_videos, write_frame_folder, write_mp4, write_video_set

from smae.data.pairs import FramePairDataset, PairKey, collate_pairs, sample_pair_indices
from smae.data.transforms import IMAGENET_STD, PairAugment, denormalize, sample_crop_box
from smae.data.video import VideoSource, find_videos, open_video
from smae.errors import UserError
from smae.train.distributed import StepBatchSampler


@pytest.mark.parametrize("height,width", [(64, 64), (120, 216), (240, 320)])
def test_crop_box_area_and_ratio_within_bounds(height, width):
    rng = np.random.default_rng(0)
    for _ in range(300):
        box = sample_crop_box(rng, height, width, (0.5, 1.0), (3 / 4, 4 / 3))
        assert 0 <= box.top and box.top + box.height <= height
        assert 0 <= box.left and box.left + box.width <= width
        # Rounding the sides to whole pixels moves area and ratio by at most about one pixel.
        assert 0.5 - 2 / min(height, width) <= box.height * box.width / (height * width) <= 1.0
        assert 3 / 4 - 2 / box.height <= box.width / box.height <= 4 / 3 + 2 / box.height


def test_crop_box_falls_back_to_a_centred_allowed_ratio():
    box = sample_crop_box(np.random.default_rng(0), 10, 200, (0.9, 1.0), (3 / 4, 4 / 3))
    assert box.height == 10 and box.width == round(10 * 4 / 3)
    assert box.left == (200 - box.width) // 2


def test_pair_augment_applies_one_crop_and_flip_to_both_frames():
    """f2 = f1 + delta: after a shared crop, resize and flip, out2 - out1 is delta / std exactly;
    different crops or flips would leave the random texture in the difference."""
    rng_frames = np.random.default_rng(1)
    f1 = rng_frames.integers(0, 200, size=(60, 90, 3), dtype=np.uint8)
    delta = np.array([7, 30, 50], dtype=np.uint8)
    augment, unflipped = PairAugment(size=32), PairAugment(size=32, flip_prob=0.0)
    outputs, flipped = [], []
    for seed in range(12):
        out = augment([f1, f1 + delta], np.random.default_rng(seed))
        assert out.shape == (2, 3, 32, 32)
        expected = torch.tensor(delta / 255.0 / np.array(IMAGENET_STD), dtype=torch.float32).view(3, 1, 1)
        torch.testing.assert_close(out[1] - out[0], expected.expand(3, 32, 32), atol=1e-5, rtol=0)
        outputs.append(out[0])
        plain = unflipped([f1], np.random.default_rng(seed))[0]  # same draws, flip never taken
        assert torch.equal(out[0], plain) or torch.equal(out[0], plain.flip(-1))
        flipped.append(not torch.equal(out[0], plain))
    assert any(flipped) and not all(flipped)  # both cases were exercised
    assert len({tuple(o.flatten()[:20].tolist()) for o in outputs}) == len(outputs)  # crops differ per draw


def test_pair_augment_flip_is_a_mirror_of_the_unflipped_crop():
    frame = np.random.default_rng(2).integers(0, 256, size=(40, 40, 3), dtype=np.uint8)
    never, always = PairAugment(size=24, flip_prob=0.0), PairAugment(size=24, flip_prob=1.0)
    plain = never([frame], np.random.default_rng(3))
    mirrored = always([frame], np.random.default_rng(3))
    torch.testing.assert_close(mirrored, plain.flip(-1))
    pixels = denormalize(plain)
    assert pixels.min() >= -1e-6 and pixels.max() <= 1 + 1e-6
    assert abs(pixels.mean().item() - frame.mean() / 255) < 0.05


def test_pair_gaps_stay_in_bounds_and_order():
    rng = np.random.default_rng(0)
    for num_frames in (5, 11, 49, 300):
        gaps = []
        for _ in range(400):
            first, second = sample_pair_indices(rng, num_frames, (4, 48))
            assert 0 <= first < second < num_frames
            gaps.append(second - first)
        assert min(gaps) >= 4 and max(gaps) <= min(48, num_frames - 1)
        if num_frames >= 49:  # uniform over the whole range: both ends are reached
            assert min(gaps) == 4 and max(gaps) == 48
    with pytest.raises(ValueError):
        sample_pair_indices(rng, 4, (4, 48))


def _red_index(images: torch.Tensor) -> torch.Tensor:
    """Frame index coded in the red level of augmented frames (N, 3, S, S) -> (N,) float."""
    return denormalize(images)[:, 0].mean(dim=(-1, -2)) * 255 / CODE_STEP


@pytest.mark.parametrize("kind", ["frames", "mp4"])
def test_dataset_pairs_hold_the_frames_they_name(tmp_path, kind):
    frames = coded_frames(60, 32, seed=0)
    path = write_frame_folder(tmp_path / "clip", frames) if kind == "frames" else write_mp4(tmp_path / "clip.mp4", frames)
    dataset = FramePairDataset(find_videos(tmp_path), PairAugment(size=16), gap_range=(4, 20), repeats=3, seed=5)
    assert [s.path for s in dataset.sources] == [str(path)]
    for pass_index in range(6):
        item = dataset[PairKey(pass_index, 0)]
        assert item["f1"].shape == item["f2"].shape == (3, 3, 16, 16) and not item["skipped"]
        gaps = item["frames"][:, 1] - item["frames"][:, 0]
        assert ((gaps >= 4) & (gaps <= 20)).all()
        tolerance = 0.01 if kind == "frames" else 1.0  # H.264 moves the red level by a few units
        torch.testing.assert_close(_red_index(item["f1"]), item["frames"][:, 0].float(), atol=tolerance, rtol=0)
        torch.testing.assert_close(_red_index(item["f2"]), item["frames"][:, 1].float(), atol=tolerance, rtol=0)
    again = dataset[PairKey(2, 0)]
    torch.testing.assert_close(again["f1"], dataset[PairKey(2, 0)]["f1"], rtol=0, atol=0)  # keyed, not stateful


def test_mp4_reader_seeks_to_the_same_frames_as_a_full_decode(tmp_path):
    path = write_mp4(tmp_path / "v.mp4", coded_frames(50, 32, seed=3), gop=7)
    reader = open_video(VideoSource(str(path), False))
    assert reader.num_frames == 50
    everything = reader.read(list(range(50)))
    rng = np.random.default_rng(0)
    for _ in range(10):
        wanted = sorted(rng.choice(50, size=4, replace=False).tolist())
        got = reader.read(wanted)
        assert sorted(got) == wanted
        for index in wanted:
            np.testing.assert_array_equal(got[index], everything[index])
    reader.close()


def test_find_videos_walks_folders_and_list_files(tmp_path):
    write_video_set(tmp_path / "a" / "b", 2, num_frames=8)
    write_frame_folder(tmp_path / "frames" / "seq1", coded_frames(6, 16, 0))
    write_frame_folder(tmp_path / "frames" / "Annotations" / "seq1", coded_frames(6, 16, 0))  # labels: ignored
    (tmp_path / "notes.txt").write_text("not a video list in a folder scan")
    found = find_videos(tmp_path)
    assert [(p.replace(str(tmp_path), ""), f) for p, f in found] == [
        ("/a/b/video00.mp4", False), ("/a/b/video01.mp4", False), ("/frames/seq1", True)]
    listing = tmp_path / "list.txt"
    listing.write_text("# training videos\na/b/video01.mp4\n\nframes/seq1  # a frame folder\n")
    assert [p for p, _ in find_videos(listing)] == [str(tmp_path / "a/b/video01.mp4"), str(tmp_path / "frames/seq1")]
    with pytest.raises(FileNotFoundError, match="missing"):
        find_videos(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no videos"):
        find_videos(tmp_path / "empty")


def test_bad_videos_are_skipped_counted_and_never_stop_an_epoch(tmp_path):
    good = write_video_set(tmp_path, 3, num_frames=30)
    broken = write_broken_videos(tmp_path, good[0])
    broken["short"] = write_mp4(tmp_path / "short.mp4", coded_frames(3, 32, 0))
    broken["missing"] = tmp_path / "listed-but-missing.mp4"
    listing = tmp_path / "all.txt"
    listing.write_text("\n".join(p.name for p in good + list(broken.values())))
    dataset = FramePairDataset(find_videos(listing), PairAugment(size=16), gap_range=(4, 20), repeats=2, seed=0)
    assert len(dataset) == 9
    sampler = StepBatchSampler(len(dataset), videos_per_micro=2, accum_steps=1, world_size=1, rank=0, seed=0,
                               start_step=0, total_steps=12)  # 3 passes of 4 steps
    loader = DataLoader(dataset, batch_sampler=sampler, num_workers=1, collate_fn=collate_pairs)
    skipped, batches = [], 0
    for batch in loader:
        batches += 1
        assert batch["f1"].shape == (4, 3, 16, 16) and torch.isfinite(batch["f2"]).all()
        skipped += batch["skipped"]
    assert batches == 12
    reasons = dict(skipped)
    assert set(reasons) == {str(p) for p in broken.values()}  # every bad file, and only those
    assert len(skipped) >= 12  # 6 bad of 9 videos, 8 of them drawn per pass, 3 passes
    assert "too short" in reasons[str(broken["short"])] and "does not exist" in reasons[str(broken["missing"])]
    assert all(str(path) in reason for path, reason in skipped)


def test_all_bad_videos_is_a_clear_and_true_error(tmp_path):
    (tmp_path / "a.mp4").write_text("no")
    dataset = FramePairDataset(find_videos(tmp_path), PairAugment(size=16))
    with pytest.raises(UserError, match=r"^--data: the only video could not be read; .*a\.mp4: not a readable video"):
        dataset[0]
    (tmp_path / "b.mp4").write_bytes(b"")
    dataset = FramePairDataset(find_videos(tmp_path), PairAugment(size=16))
    with pytest.raises(UserError, match="^--data: none of the 2 videos could be read"):
        dataset[0]


def test_a_bad_video_among_good_ones_is_read_once_per_process(tmp_path, monkeypatch):
    good = write_video_set(tmp_path, 1, num_frames=30)
    (tmp_path / "bad.mp4").write_text("no")
    dataset = FramePairDataset(find_videos(tmp_path), PairAugment(size=16), gap_range=(4, 20), repeats=1)
    opened = []
    real_read = dataset.read_pairs
    monkeypatch.setattr(dataset, "read_pairs", lambda source, rng: opened.append(source.path) or real_read(source, rng))
    skips = [entry for index in range(8) for entry in dataset[PairKey(index, 0)]["skipped"]]
    assert len(skips) >= 8 and all(path.endswith("bad.mp4") for path, _ in skips)  # bad.mp4 is index 0, drawn again at times
    assert opened.count(str(tmp_path / "bad.mp4")) == 1 and opened.count(str(good[0])) == 8


def test_collate_concatenates_repeats():
    items = [{"f1": torch.randn(2, 3, 4, 4), "f2": torch.randn(2, 3, 4, 4), "frames": torch.tensor([[0, 5], [1, 9]]),
              "skipped": [("x", "bad")] * i} for i in range(3)]
    batch = collate_pairs(items)
    assert batch["f1"].shape == (6, 3, 4, 4) and batch["frames"].shape == (6, 2) and len(batch["skipped"]) == 3
    assert math.isclose(batch["f2"][2:4].sum().item(), items[1]["f2"].sum().item(), rel_tol=1e-6)
