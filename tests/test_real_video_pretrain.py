"""Real video end to end, CI-sized: `smae prepare` the real sample videos into a store, then
`smae pretrain --preset tiny --data STORE` for a few hundred steps: the loss falls clearly below
where it started, and the reconstruction figure shows a real frame pair.

Full length (the demo's 1200 steps of 8 pairs, over the 4 clips; an epoch is as many pairs as videos):
    smae prepare --data VIDEOS --out STORE --short-side 96
    smae pretrain --preset tiny --data STORE --out RUN --set epochs=2400
"""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from real_videos import Unavailable, sample_videos

from smae import cli
from smae.train.figure import COLUMNS

STEPS = 200
BATCH = 8  # 4 sample videos x repeats 2: one step sees every video


@pytest.fixture(scope="module")
def samples():
    try:
        return sample_videos()
    except Unavailable as error:
        pytest.skip(str(error))


@pytest.mark.slow
def test_tiny_pretrains_on_real_video(samples, tmp_path, capsys):
    videos = next(iter(samples.values())).parent
    store, run = tmp_path / "store", tmp_path / "run"
    assert cli.main(["prepare", "--data", str(videos), "--out", str(store), "--short-side", "96", "--workers", "1"]) == 0
    epochs = STEPS * BATCH // len(samples)  # one epoch = as many pairs as videos
    argv = ["pretrain", "--preset", "tiny", "--data", str(store), "--out", str(run),
            "--set", f"batch_size={BATCH}", f"epochs={epochs}", "num_workers=0", f"checkpoint_every={STEPS}"]
    assert cli.main(argv) == 0, capsys.readouterr().err

    losses = [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(losses) == STEPS // 10  # the tiny recipe logs every 10 steps
    start, end = losses[0], float(np.mean(losses[-3:]))
    assert end < 0.8 * start, f"loss {start:.3f} -> {end:.3f}: not clearly lower"

    figure = run / "figures" / f"step-{STEPS:07d}.png"
    image = np.asarray(Image.open(figure).convert("RGB")).astype(float)
    assert image.shape[1] > len(COLUMNS) * 64
    # A real frame pair: the past-frame column holds varied, natural content (not flat, not noise-free grey).
    past = image[20:, : image.shape[1] // len(COLUMNS)]
    assert past.std() > 20
