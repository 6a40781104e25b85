"""One SiamMAE pre-training step with the fused kernels off and on.

    python -m pytest bench/bench_train_step.py --benchmark-only -s

The vits16 preset (ViT-S/16 encoder, dec256d4b cross-self decoder) at 224x224, the batches of
bench/shapes.py. A step: forward of a frame pair under bf16 autocast (past frame whole, future
frame 95% masked), backward, AdamW (MAE's parameter groups, lr 1.5e-4 x B / 256, betas 0.9 /
0.95, weight decay 0.05). Providers: `torch` (SMAE_KERNELS=torch: every op its reference) and
`triton` (the fused pixel gather, decoder scatter and loss). Attention follows its own switch,
the same for both. Before timing, both providers' losses from the same weights, frames and masks
must agree. extra_info: pairs per second and the speed-up of kernels on over kernels off.
"""
from __future__ import annotations

import pytest
import torch

import smae
from bench.cuda_measure import time_cuda
from bench.shapes import TRAINING_SHAPES
from smae.kernels import use_backend
from smae.train.optim import build_optimizer, effective_lr

PROVIDERS = ["torch", "triton"]  # kernels off first: triton reports its speed-up on it
SHAPES = [name for name, shape in TRAINING_SHAPES.items() if shape["preset"] == "vits16"]


def _setup(shape: dict):
    torch.manual_seed(0)
    model = smae.build_model(shape["preset"]).cuda()
    optimizer = build_optimizer(model, effective_lr(1.5e-4, shape["batch"]), weight_decay=0.05, betas=(0.9, 0.95))
    generator = torch.Generator("cuda").manual_seed(0)
    frames = [torch.randn(shape["batch"], 3, shape["img_size"], shape["img_size"], device="cuda", generator=generator) for _ in range(2)]
    return model, optimizer, frames


def _loss(model, f1, f2, seed: int) -> torch.Tensor:
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss, _, _ = model(f1, f2, generator=torch.Generator("cuda").manual_seed(seed))
    return loss


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("shape_name", SHAPES)
def test_train_step_speed(benchmark, shape_name, provider):
    shape = TRAINING_SHAPES[shape_name]
    model, optimizer, (f1, f2) = _setup(shape)
    with torch.no_grad():
        with use_backend("torch"):
            want = _loss(model, f1, f2, seed=0)
        with use_backend(provider):
            torch.testing.assert_close(_loss(model, f1, f2, seed=0), want, atol=2e-2, rtol=2e-2)  # bf16 autocast
    seeds = iter(range(1, 10**6))

    def step():
        loss = _loss(model, f1, f2, next(seeds))  # a new mask each step, as in training
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    with use_backend(provider):
        seconds = time_cuda(benchmark, step, group=f"train step {shape_name}", provider=provider, repeats=1, rounds=10, baselines=("torch",))
    benchmark.extra_info["pairs_per_s"] = shape["batch"] / seconds
