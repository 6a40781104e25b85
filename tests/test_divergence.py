"""The NaN / inf stop: device-side record, checked at log and checkpoint steps; only finite
checkpoints are kept; the metrics log never repeats a step."""
from __future__ import annotations

import json
import math
import re

import pytest
import torch
from pretrain_fixtures import small_config, write_synthetic_videos

from smae.models import SiamMAE
from smae.train.checkpoint import build_model_from_checkpoint, load_checkpoint
from smae.train.divergence import NEVER, DivergenceWatch, non_finite_entries
from smae.train import loop
from smae.train.loop import TrainingDiverged, train


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    return write_synthetic_videos(tmp_path_factory.mktemp("synthetic"))


def _steps(out) -> list[int]:
    return [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]


def _assert_kept_checkpoint_is_finite(path, step: int) -> None:
    checkpoint = load_checkpoint(path)
    assert checkpoint["step"] == step
    assert non_finite_entries({"model": checkpoint["model"], "optimizer": checkpoint["optimizer"]["state"]}) == []
    model = build_model_from_checkpoint(path)  # it loads and builds its model
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_watch_records_the_first_bad_step_and_skips_from_there():
    watch = DivergenceWatch(torch.device("cpu"))
    finite, weights = torch.tensor(1.0), [torch.ones(3)]
    assert watch.skip_update(finite, [torch.ones(2)]).item() == 0
    watch.after_update(1, weights)
    assert watch.skip_update(finite, [torch.tensor([1.0, math.inf])]).item() == 1  # gradients
    watch.after_update(2, weights)
    assert watch.skip_update(finite, [torch.ones(2)]).item() == 1  # sticky: every later update skipped
    watch.after_update(3, [torch.tensor([math.nan])])
    assert watch.first_bad.tolist() == [NEVER, 2, 3]
    divergence = watch.check(world_size=1)
    assert divergence.step == 2 and "the gradients became non-finite at step 2; step 1 was the last finite one" in divergence.describe()


def test_non_finite_entries_names_the_tensors():
    state = {"model": {"w": torch.ones(2), "b": torch.tensor([math.nan])}, "optimizer": {0: {"exp_avg_sq": torch.tensor([math.inf]), "step": torch.tensor(3.0)}}}
    assert non_finite_entries(state) == ["model.b", "optimizer.0.exp_avg_sq"]


def test_a_nan_is_seen_at_the_next_check_and_the_finite_checkpoint_kept(tmp_path, videos, monkeypatch):
    forward, calls = SiamMAE.forward, []

    def poisoned(self, f1, f2, generator=None):
        loss, pred, mask = forward(self, f1, f2, generator=generator)
        if self.training:  # not the figure's forward pass
            calls.append(self)
            if len(calls) == 3:
                loss = loss * math.nan
        return loss, pred, mask

    monkeypatch.setattr(SiamMAE, "forward", poisoned)
    out = tmp_path / "run"
    # Checked at steps 2 and 4 (checkpoints), 5 (log): step 3's NaN is seen at step 4, before saving.
    with pytest.raises(TrainingDiverged, match=r"the loss and gradients became non-finite at step 3; step 2 was the "
                                               r"last finite one .*seen at step 4.*checkpoint.pt \(step 2\), holds only finite"):
        train(small_config("epochs=8", "checkpoint_every=2", "log_every=5"), videos, out, progress=False)
    _assert_kept_checkpoint_is_finite(out / "checkpoint.pt", 2)
    assert not (out / "metrics.jsonl").exists()  # nothing logged before step 5
    # Steps 3 and 4 skipped their updates on the device: the model in memory is the checkpoint's.
    kept = load_checkpoint(out / "checkpoint.pt")["model"]
    torch.testing.assert_close(calls[-1].state_dict(), kept, rtol=0, atol=0)


def test_an_exploding_finite_loss_stops_before_a_non_finite_checkpoint(tmp_path, videos):
    out = tmp_path / "run"
    # lr 1e4 x 8/256 at its peak: the loss grows by orders of magnitude, finite, until the
    # optimizer state overflows; the weights never take a non-finite update.
    config = small_config("epochs=8", "checkpoint_every=2", "log_every=1", "base_lr=1e4", "warmup_epochs=8")
    with pytest.raises(TrainingDiverged, match=r"became non-finite at step (\d+); step \d+ was the last finite one") as info:
        train(config, videos, out, progress=False)
    losses = [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert max(losses) > 1e6 and all(math.isfinite(loss) for loss in losses)  # exploded, finite
    first_bad = int(re.search(r"non-finite at step (\d+)", str(info.value)).group(1))
    kept = load_checkpoint(out / "checkpoint.pt")["step"]
    assert kept < first_bad and f"(step {kept}), holds only finite tensors" in str(info.value)
    _assert_kept_checkpoint_is_finite(out / "checkpoint.pt", kept)


def test_metrics_never_repeat_a_step_and_a_torn_line_is_dropped(tmp_path, videos, capfd, monkeypatch):
    out = tmp_path / "run"
    out.mkdir()
    # An earlier run killed before its first checkpoint left its log: a fresh start replaces it.
    (out / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "loss": 1.0}) + "\n" for s in (1, 2, 3)))
    config = small_config("epochs=6", "checkpoint_every=4")
    lr_at = loop.lr_at

    def killed_before_step_6(step, *args, **kwargs):
        if step == 5:
            raise KeyboardInterrupt
        return lr_at(step, *args, **kwargs)

    with monkeypatch.context() as patch, pytest.raises(KeyboardInterrupt):
        patch.setattr(loop, "lr_at", killed_before_step_6)
        train(config, videos, out, progress=False)
    assert _steps(out) == [1, 2, 3, 4, 5]
    # A kill mid-write leaves a torn last line; resume drops it, with a warning naming the file,
    # and the lines past the step-4 checkpoint.
    with open(out / "metrics.jsonl", "a") as log:
        log.write('{"step": 6, "epo')
    train(config, videos, out, resume=True, progress=False)
    assert _steps(out) == [1, 2, 3, 4, 5, 6]
    assert f"{out / 'metrics.jsonl'}: dropping its torn last line" in capfd.readouterr().err


def test_a_step_reads_no_tensor_value_on_the_host(tmp_path, videos, monkeypatch):
    """The CPU stand-in for CUDA's sync debug mode: inside optimizer_step nothing turns a tensor
    into a Python value (each would wait for the device there). Data comes from a worker process."""
    reads = []
    step = loop.optimizer_step

    def watched_step(*args, **kwargs):
        with monkeypatch.context() as patch:
            for name in ("item", "tolist", "__bool__", "__float__", "__int__"):
                original = getattr(torch.Tensor, name)
                patch.setattr(torch.Tensor, name, lambda self, *a, _o=original, _n=name, **k: (reads.append(_n), _o(self, *a, **k))[1])
            return step(*args, **kwargs)

    monkeypatch.setattr(loop, "optimizer_step", watched_step)
    train(small_config("epochs=4", "num_workers=1", "log_every=2", "checkpoint_every=4"), videos, tmp_path / "run",
          progress=False)
    assert reads == [] and _steps(tmp_path / "run") == [2, 4]
