"""SMAE_JPEG_DECODE=cuda: workers ship JPEG bytes and crop draws, the training process decodes.
nvJPEG itself cannot run here (no CUDA, no torchvision); a CPU decode stands in for it."""
from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image
from pretrain_fixtures import coded_frames, write_mp4

from smae.data.gpu_decode import StoreJpegPairDataset, crop_flip_normalize, jpeg_decode_device
from smae.data.pair_source import open_pair_dataset, pair_batch_to_device
from smae.data.pairs import PairKey, StorePairDataset, collate_pairs
from smae.data.prepare import prepare
from smae.data.store import FrameStore
from smae.data.transforms import PairAugment
from smae.errors import UserError


def _decode_on_cpu(jpegs):
    """What torchvision.io.decode_jpeg gives: (3, H, W) uint8 per JPEG."""
    return [torch.from_numpy(np.array(Image.open(io.BytesIO(bytes(j.numpy()))).convert("RGB"))).permute(2, 0, 1)
            for j in jpegs]


def test_device_decoding_draws_and_crops_as_the_worker_path(tmp_path):
    (tmp_path / "corpus").mkdir()
    for i in range(3):
        write_mp4(tmp_path / "corpus" / f"v{i}.mp4", coded_frames(30, 48, seed=i))
    prepare(tmp_path / "corpus", tmp_path / "store", workers=1, progress=False)
    store = FrameStore(tmp_path / "store")
    on_device = StoreJpegPairDataset(store, PairAugment(size=24), (3, 12), 2, seed=1)
    in_workers = StorePairDataset(store, PairAugment(size=24), (3, 12), 2, seed=1)
    keys = [PairKey(p, i) for p in range(4) for i in range(3)]
    batch = collate_pairs([on_device[k] for k in keys])
    expected = collate_pairs([in_workers[k] for k in keys])
    expected["f1"], expected["f2"] = pair_batch_to_device(expected, torch.device("cpu"))
    assert torch.equal(batch["frames"], expected["frames"]) and batch["size"] == 24
    assert len(batch["jpegs"]) == 2 * len(batch["boxes"]) == 2 * len(expected["f1"])
    assert batch["flips"].any() and not batch["flips"].all()
    both = crop_flip_normalize(_decode_on_cpu(batch["jpegs"]), batch["boxes"].repeat_interleave(2, 0),
                               batch["flips"].repeat_interleave(2, 0), 24)
    for got, want in ((both[0::2], expected["f1"]), (both[1::2], expected["f2"])):
        assert got.shape == want.shape
        error = (got - want).abs().mean(dim=(1, 2, 3))  # two resizers; another crop or flip is far off
        mirrored = (got - want.flip(-1)).abs().mean(dim=(1, 2, 3))
        assert (error < 0.1).all() and (error < mirrored / 3).all(), (error, mirrored)


def test_the_switch_refuses_what_cannot_run(tmp_path, monkeypatch):
    monkeypatch.setenv("SMAE_JPEG_DECODE", "gpu")
    with pytest.raises(UserError, match="^SMAE_JPEG_DECODE=gpu: expected cpu or cuda"):
        jpeg_decode_device()
    monkeypatch.setenv("SMAE_JPEG_DECODE", "cuda")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="^SMAE_JPEG_DECODE=cuda: no CUDA device"):
            jpeg_decode_device()
    monkeypatch.setenv("SMAE_JPEG_DECODE", "cpu")
    (tmp_path / "corpus").mkdir()
    write_mp4(tmp_path / "corpus" / "v.mp4", coded_frames(12, 16, seed=0))
    prepare(tmp_path / "corpus", tmp_path / "store", workers=1, progress=False)
    assert type(open_pair_dataset(str(tmp_path / "store"), PairAugment(size=8), (2, 4), 1, 0)) is StorePairDataset
