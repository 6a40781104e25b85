"""`smae propagate` end to end on tiny synthetic DAVIS / JHMDB / VIP sets: scores, resume,
atomic outputs, bounded context, no label leakage, sharding and the command line."""
from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import smae.propagation.engine as engine
from smae.cli import main as cli_main
from smae.errors import UserError
from smae.data.synth import SynthPreset, VideoSetSpec, generate
from smae.layouts.images import read_label_png
from smae.eval.tasks import format_scores
from smae.propagation import PixelFeatures, propagate_dataset, protocol_preset
from smae.propagation.distributed import shard
from smae.propagation.engine import ContextQueue, propagate_video
from smae.propagation.outputs import STAGING
from smae.propagation.videos import list_videos

SPEC = VideoSetSpec(videos=2, frames=(6, 6), height=32, width=48, objects=(2, 2), entering=(0, 0))
TINY = SynthPreset(mp4=SPEC, davis=SPEC, jhmdb=dataclasses.replace(SPEC, objects=(1, 1)), vip=SPEC)
# Small context and frames as they are: fast, and the bounded-context test sees the ring wrap.
PROTOCOL = dataclasses.replace(protocol_preset("siammae"), n_context=3, size=(32, 48))


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    generate(root, TINY, seed=3, formats=("davis", "jhmdb", "vip"))
    return root


class OracleFeatures:
    """Ground truth as features: each cell's feature is its area share of every label id (a
    plumbing test, so even the query frame's comes from its own annotation). Frames must be asked
    for in the order of `annotations`."""

    def __init__(self, annotations: list[Path], stride: int, classes: int = 8):
        self.pending, self.stride, self.classes = list(annotations), stride, classes
        self.device = torch.device("cpu")

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        batch = [read_label_png(self.pending.pop(0)) for _ in range(frames.shape[0])]
        onehot = F.one_hot(torch.from_numpy(np.stack(batch)).long(), self.classes).permute(0, 3, 1, 2).float()
        onehot = F.interpolate(onehot, size=frames.shape[-2:], mode="nearest")
        return F.avg_pool2d(onehot, self.stride).permute(0, 2, 3, 1)


def davis_annotations(root: Path) -> list[Path]:
    videos = list_videos("davis", root)
    return [root / "Annotations" / "480p" / v.name / f"{frame.stem}.png" for v in videos for frame in v.frames]


@pytest.mark.parametrize("name", ["siammae", "dino"])
def test_oracle_features_score_near_one(synth_root, tmp_path, name):
    """One feature per pixel (the synthetic objects have 1-pixel-wide limbs) and a small window
    (the oracle needs no search range): every object is recovered."""
    davis = synth_root / "davis"
    oracle = OracleFeatures(davis_annotations(davis), stride=1)
    protocol = dataclasses.replace(protocol_preset(name), n_context=3, radius=4.0, resize="fixed", size=(32, 48))
    scores = propagate_dataset("davis", davis, tmp_path, oracle, protocol, progress=False)
    assert not oracle.pending, "every frame was encoded exactly once"
    assert scores["J&F-Mean"] > 0.99, scores
    assert read_label_png(tmp_path / "synth000" / "00003.png").shape == (32, 48)


def test_random_features_score_lower(synth_root, tmp_path):
    """The score is not a constant of the plumbing: features that know nothing score worse."""

    class Noise:
        stride, device = 8, torch.device("cpu")

        def __call__(self, frames):
            return torch.randn(frames.shape[0], frames.shape[2] // 8, frames.shape[3] // 8, 16, generator=torch.Generator().manual_seed(0))

    scores = propagate_dataset("davis", synth_root / "davis", tmp_path, Noise(), PROTOCOL, progress=False)
    assert scores["J&F-Mean"] < 0.8, scores


class CountingPixels(PixelFeatures):
    def __init__(self, fail_at: int | None = None):
        super().__init__(stride=8)
        self.frames, self.fail_at, self.batches = 0, fail_at, []

    def __call__(self, frames):
        self.frames += frames.shape[0]
        self.batches.append(frames.shape[0])
        if self.fail_at is not None and self.frames >= self.fail_at:
            raise RuntimeError("simulated crash")
        return super().__call__(frames)


def test_context_never_exceeds_first_plus_n_frames(synth_root, monkeypatch):
    seen = []

    def recording(query, keys, labels, **options):
        seen.append(keys.shape[0])
        return real(query, keys, labels, **options)

    real = engine.propagate_labels
    monkeypatch.setattr(engine, "propagate_labels", recording)
    video = list_videos("davis", synth_root / "davis")[0]
    for pad, expected in ((True, [4, 4, 4, 4, 4]), (False, [1, 2, 3, 4, 4])):
        seen.clear()
        source = CountingPixels()
        list(propagate_video(video, source, dataclasses.replace(PROTOCOL, pad_context=pad), batch_size=4))
        assert seen == expected  # 6 frames, n = 3: at most 1 + 3 context frames
        assert source.batches == [4, 2]  # frames are encoded a batch at a time, never the whole video


def test_context_queue_keeps_first_frame_and_the_latest_n():
    queue = ContextQueue(n_recent=2, cells=3, channels=4, classes=2, device=torch.device("cpu"), pad=False)
    frames = [torch.rand(3, 4) for _ in range(5)]
    queue.set_first(frames[0], torch.rand(3, 2))
    for frame in frames[1:]:
        queue.push(frame, torch.rand(3, 2))
    keys, labels = queue.context()
    assert keys.shape == (3, 3, 4) and labels.shape == (3, 3, 2)
    torch.testing.assert_close(keys[0], frames[0])  # the first frame stays in slot 0
    held = {tuple(k.flatten().tolist()) for k in keys[1:]}
    assert held == {tuple(f.flatten().tolist()) for f in frames[3:]}


def test_only_the_first_annotation_is_read(synth_root, monkeypatch):
    """Label leakage guard: later frames are predicted from predictions, never from ground truth."""
    read = []
    monkeypatch.setattr(engine, "read_label_png", lambda path: read.append(Path(path)) or read_label_png(path))
    video = list_videos("davis", synth_root / "davis")[1]
    outputs = list(propagate_video(video, PixelFeatures(stride=8), PROTOCOL))
    assert read == [video.annotation] and len(outputs) == len(video.frames)


def test_resume_skips_finished_videos(synth_root, tmp_path):
    davis = synth_root / "davis"
    propagate_dataset("davis", davis, tmp_path, CountingPixels(), PROTOCOL, evaluate=False, progress=False)
    kept = (tmp_path / "synth000" / "00002.png").stat().st_mtime_ns
    (tmp_path / "synth001" / "00002.png").unlink()
    os.rename(tmp_path / "synth001", tmp_path / "gone")  # as if the run had died before synth001
    source = CountingPixels()
    scores = propagate_dataset("davis", davis, tmp_path, source, PROTOCOL, resume=True, progress=False)
    assert source.frames == 6  # only synth001 again
    assert (tmp_path / "synth000" / "00002.png").stat().st_mtime_ns == kept
    assert sorted(p.name for p in (tmp_path / "synth001").iterdir()) == [f"{i:05d}.png" for i in range(6)]
    assert 0 <= scores["J&F-Mean"] <= 1
    with pytest.raises(UserError, match=r"other settings \(protocol.topk: 7 then, 3 now\)"):
        propagate_dataset("davis", davis, tmp_path, CountingPixels(), dataclasses.replace(PROTOCOL, topk=3), resume=True, progress=False)


def test_results_are_never_overwritten_without_resume(synth_root, tmp_path):
    """Nothing lost: a folder holding a run's results (or only some finished videos) is refused,
    naming --resume and a new folder; the results stay as they were."""
    davis = synth_root / "davis"
    propagate_dataset("davis", davis, tmp_path, CountingPixels(), PROTOCOL, evaluate=False, progress=False)
    kept = (tmp_path / "synth000" / "00002.png").stat().st_mtime_ns
    for remove_record in (False, True):
        if remove_record:
            (tmp_path / "propagate.json").unlink()  # finished videos alone are results too
        source = CountingPixels()
        with pytest.raises(UserError, match="already holds results.*--resume.*new --out"):
            propagate_dataset("davis", davis, tmp_path, source, dataclasses.replace(PROTOCOL, topk=3), progress=False)
        assert source.frames == 0 and (tmp_path / "synth000" / "00002.png").stat().st_mtime_ns == kept


def test_a_crash_mid_video_leaves_no_partial_video(synth_root, tmp_path):
    davis = synth_root / "davis"
    with pytest.raises(RuntimeError, match="simulated crash"):
        # batch_size 1: the crash comes after synth001 wrote some frames into its staging folder
        propagate_dataset("davis", davis, tmp_path, CountingPixels(fail_at=9), PROTOCOL, batch_size=1, progress=False)
    assert (tmp_path / "synth000").is_dir() and len(list((tmp_path / "synth000").iterdir())) == 6
    assert not (tmp_path / "synth001").exists()
    assert not any((tmp_path / STAGING).iterdir())  # the staging folder was cleaned up too


def test_jhmdb_joints_and_vip_parts(synth_root, tmp_path):
    protocol = dataclasses.replace(PROTOCOL, resize="fixed", size=(32, 48))
    scores = propagate_dataset("jhmdb", synth_root / "jhmdb", tmp_path / "jhmdb", PixelFeatures(stride=4), protocol, overlays=True, progress=False)
    assert 0 <= scores["PCK@0.1"] <= scores["PCK@0.2"] <= 1
    assert "PCK" in format_scores("jhmdb", scores, "val")
    assert len(list((tmp_path / "jhmdb" / "overlays").glob("*/*/*.jpg"))) == 12
    video = list_videos("jhmdb", synth_root / "jhmdb")[0]
    joints = np.load(tmp_path / "jhmdb" / f"{video.name}.npy")
    assert joints.shape == (6, 15, 2)
    from smae.layouts.jhmdb import read_joints as read_jhmdb_joints

    truth = read_jhmdb_joints(video.annotation)[0]
    inside = (truth >= 0).all(1) & (truth[:, 0] < 48) & (truth[:, 1] < 32)
    # Frame 0 is decoded from its own heatmaps: within 1.5 feature cells (6 px) of the truth (the
    # synthetic camera's noise and light move the pixel features a joint's heatmap is re-derived
    # from; a lost joint is tens of pixels off).
    assert np.abs(joints[0][inside] - truth[inside]).max() <= 6.0

    scores = propagate_dataset("vip", synth_root / "vip", tmp_path / "vip", PixelFeatures(stride=4), protocol, progress=False)
    assert 0 < scores["mIoU"] <= 1
    assert "mIoU" in format_scores("vip", scores, "val")  # what `smae propagate` prints
    video = list_videos("vip", synth_root / "vip")[0]
    first = read_label_png(video.annotation)
    for frame in video.frames[1:]:
        result = read_label_png(tmp_path / "vip" / video.name / f"{frame.stem}.png")
        assert result.shape == first.shape and set(np.unique(result)) <= set(np.unique(first))


def test_overlays_write_pictures_and_an_mp4(synth_root, tmp_path):
    import av

    propagate_dataset("davis", synth_root / "davis", tmp_path, PixelFeatures(stride=8), PROTOCOL, overlays=True, evaluate=False, progress=False)
    folder = tmp_path / "overlays" / "synth000"
    assert len(list(folder.glob("*.jpg"))) == 6
    with av.open(str(folder / "overlay.mp4")) as container:
        assert sum(1 for _ in container.decode(video=0)) == 6


def test_shard_is_a_balanced_partition():
    counts = [int(c) for c in np.random.default_rng(0).integers(10, 100, size=23)]
    for world in (1, 2, 3, 8, 30):
        parts = [shard(counts, rank, world) for rank in range(world)]
        assert sorted(i for part in parts for i in part) == list(range(len(counts)))
        loads = [sum(counts[i] for i in part) for part in parts]
        assert max(loads) - min(loads) <= max(counts)
        assert parts == [shard(counts, rank, world) for rank in range(world)]  # deterministic
    with pytest.raises(ValueError, match="rank 2"):
        shard(counts, 2, 2)


def test_cli_rejects_unknown_set_key(synth_root, tmp_path, capsys):
    code = cli_main(["propagate", "--task", "davis", "--data", str(synth_root / "davis"), "--out", str(tmp_path),
                     "--features", "pixels", "--set", "top_k=3"])
    assert code == 2
    assert "unknown key 'top_k'" in capsys.readouterr().err


def test_torchrun_two_ranks_share_the_videos(synth_root, tmp_path):
    """Two gloo ranks: each writes its own videos, rank 0 scores all of them."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "smae",
               "propagate", "--task", "davis", "--data", str(synth_root / "davis"), "--out", str(tmp_path),
               "--features", "pixels", "--preset", "tiny", "--device", "cpu", "--set", "n_context=3", "--set", "size=32,48"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert "J&F-Mean" in done.stdout
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("synth")) == ["synth000", "synth001"]


def test_encoder_sources_load_weights_or_warn(synth_root, tmp_path, capsys):
    from smae.models import build_encoder
    from smae.propagation import build_feature_source

    with pytest.warns(UserWarning, match="randomly initialised tiny encoder"):
        first = build_feature_source("encoder", "tiny")
    with pytest.warns(UserWarning):
        second = build_feature_source("encoder", "tiny")
    for name, value in first.encoder.state_dict().items():  # every torchrun rank builds the same one
        torch.testing.assert_close(value, second.encoder.state_dict()[name], msg=name)

    encoder = build_encoder("tiny")
    checkpoint = tmp_path / "tiny.pth"
    torch.save({"model": {f"encoder.{k}": v for k, v in encoder.state_dict().items()}}, checkpoint)
    common = ["propagate", "--task", "davis", "--data", str(synth_root / "davis"), "--weights", str(checkpoint),
              "--set", "n_context=2", "--set", "size=32,48"]
    assert cli_main(common + ["--out", str(tmp_path / "ok"), "--preset", "tiny"]) == 0
    assert "J&F-Mean" in capsys.readouterr().out
    assert cli_main(common + ["--out", str(tmp_path / "bad"), "--preset", "vits16"]) == 2
    assert capsys.readouterr().err.startswith("smae propagate: error:")  # a clear line, not a traceback
