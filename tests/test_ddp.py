"""DistributedDataParallel on the CPU (gloo, 2 processes) gives the same losses and weights as one
process accumulating the same global batch in two micro-batches."""
from __future__ import annotations

import json

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from pretrain_fixtures import small_config, write_synthetic_videos

from smae.train.checkpoint import load_checkpoint
from smae.train.loop import train

STEPS = 4


def _rank_main(rank: int, world_size: int, rendezvous: str, videos: str, out: str) -> None:
    torch.set_num_threads(1)  # two processes share the test machine's cores
    dist.init_process_group("gloo", init_method=rendezvous, rank=rank, world_size=world_size)
    try:
        train(small_config(f"epochs={STEPS}", "accum_steps=1", "clip_grad=1.0"), videos, out, progress=False)
    finally:
        dist.destroy_process_group()


def _losses(run) -> list[float]:
    return [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_two_processes_match_one_process_with_accumulation(tmp_path):
    videos = write_synthetic_videos(tmp_path / "synthetic")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(small_config(f"epochs={STEPS}", "accum_steps=2", "clip_grad=1.0"), videos, tmp_path / "single", progress=False)
    finally:
        torch.set_num_threads(threads)
    mp.spawn(_rank_main, args=(2, f"file://{tmp_path / 'rendezvous'}", str(videos), str(tmp_path / "ddp")), nprocs=2)

    single, ddp = (load_checkpoint(tmp_path / name / "checkpoint.pt") for name in ("single", "ddp"))
    assert single["step"] == ddp["step"] == STEPS
    assert len(ddp["rng"]) == 2  # each rank's RNG state is kept
    # Same micro-batches and masks. The gradients agree to the last bit: accumulation adds g0/2 and
    # g1/2, DDP averages (g0 + g1)/2, and halving is exact while a sum of two terms has one order.
    assert _losses(tmp_path / "ddp") == _losses(tmp_path / "single")
    torch.testing.assert_close(ddp["model"], single["model"], rtol=0, atol=0)
    torch.testing.assert_close(ddp["optimizer"]["state"], single["optimizer"]["state"], rtol=0, atol=0)
