"""One SiamMAE pre-training step, four ways: eager or torch.compile, fused kernels off or on.

    python -m pytest bench/bench_train_step.py --benchmark-only -s

A step is what `smae.train.loop.optimizer_step` does: forward of a frame pair (past frame whole,
future frame 95% masked; bf16 autocast on CUDA, float32 on the CPU), backward, fused AdamW
(MAE's parameter groups, lr 1.5e-4 x B / 256, betas 0.9 / 0.95, weight decay 0.05), with no
host sync inside the step. Masks come from the seeded default generator, as in the loop.

Providers (one group per case, side by side):
- `eager`: SMAE_KERNELS=torch, every op its PyTorch reference;
- `eager+fused`: SMAE_KERNELS=triton, the fused pixel gather, decoder scatter and loss;
- `compile`: torch.compile of the whole model, references inside (inductor fuses them itself);
- `compile+fused`: torch.compile of the whole model with the fused kernels as custom ops in it.
Attention follows its own switch (SMAE_ATTENTION), the same for all. Before timing, every
provider's loss from the same weights, frames and masks must agree with eager's (inductor is
told to draw random numbers as eager does, `fallback_random`, so the masks match).

Cases: vits16 at 224x224, batches of bench/shapes.py, on CUDA; the `tiny` preset (64x64, batch
16) on the CPU (`cpu_ok`), eager and compile only: Triton on the CPU is its interpreter, which is
no speed.

FLOPs (`step_flops`, extra_info `flops_per_step`): matrix products only, 2 per multiply-add, of
the forward pass, times 3 for forward + backward (backward = 2 x forward: the input and the
weight gradients), the convention of MFU (PaLM, appendix B), less the patch embeddings' input
gradients (the frames need none). With E / D the encoder / decoder
widths, h_E / h_D their MLP widths, d_E / d_D their depths, P = 3p^2 pixels per patch, L patches
per frame, K visible, n1 = 1 + L past-frame tokens, n2 = 1 + K future-frame tokens, N = 1 + L
decoder tokens:
    encoder, per frame of n tokens:  2(n-1)PE + d_E [2n(4E^2 + 2E h_E) + 4n^2 E]
    decoder_embed:                   2(n1 + n2)ED
    decoder, cross-self, per block:  cross  2N D^2 + 4 n1 D^2 + 2N D^2 + 4N n1 D
                                     self   2N 3D^2 + 2N D^2 + 4N^2 D
                                     MLP    4N D h_D
    decoder_pred:                    2N D P
Norms, softmax, GELU and the loss are left out (under 1% at vits16). The count is checked against
torch.utils.flop_counter before timing (the CPU case, with the float64 `math` attention, whose
einsums the counter sees; it does not count SDPA on the CPU): equal to within 1%.
MFU = achieved FLOP/s / the device's published dense bf16 peak, on CUDA devices in PEAK_FLOPS
only; on the CPU extra_info has the achieved FLOP/s alone (no published peak applies).
"""
from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import smae
from bench.cuda_measure import time_cuda
from bench.shapes import TRAINING_SHAPES
from smae.kernels import use_attention_backend, use_backend
from smae.models.presets import ModelConfig
from smae.train.loop import mask_seed
from smae.train.optim import build_optimizer, effective_lr

# Published dense bf16 tensor-core peaks (NVIDIA datasheets; "with sparsity" figures halved).
PEAK_FLOPS = {"NVIDIA H200": 989e12, "NVIDIA H100 80GB HBM3": 989e12, "NVIDIA A100-SXM4-80GB": 312e12}

PROVIDERS = {  # name -> (kernel backend, compiled); eager first: the others report their speed-up on it
    "eager": ("torch", False),
    "eager+fused": ("triton", False),
    "compile": ("torch", True),
    "compile+fused": ("triton", True),
}
# (shape, provider): every provider at ViT-S/16; at ViT-S/8 the eager ones only, since a
# whole-model compile costs about a minute per shape (bench/record.py runs the batch-256 ones).
CUDA_CASES = [(name, provider) for name, shape in TRAINING_SHAPES.items() for provider, (_, compiled) in PROVIDERS.items()
              if shape["preset"] in ("vits16", "vits8") and (shape["preset"] == "vits16" or not compiled)]
CPU_SHAPE = dict(batch=16, img_size=64, preset="tiny")


def step_flops(config: ModelConfig, batch: int, img_size: int) -> int:
    """FLOPs of one training step (forward + backward) of `batch` pairs; see the module doc."""
    enc, dec = config.encoder, config.decoder
    if config.decoder_variant != "cross-self" or config.past_mask_ratio != 0:
        raise ValueError("the count is written for the cross-self decoder and an unmasked past frame")
    pixels, length = 3 * enc.patch_size**2, (img_size // enc.patch_size) ** 2
    kept = max(1, int(length * (1 - config.mask_ratio)))
    E, D, hE, hD = enc.embed_dim, dec.embed_dim, int(enc.embed_dim * enc.mlp_ratio), dec.mlp_hidden
    n1, n2, N = 1 + length, 1 + kept, 1 + length

    def encoder(n: int) -> int:
        return 2 * (n - 1) * pixels * E + enc.depth * (2 * n * (4 * E * E + 2 * E * hE) + 4 * n * n * E)

    patch_embed = 2 * (n1 - 1 + n2 - 1) * pixels * E  # forward; its backward has the weight gradient only

    cross = 2 * N * D * D + 4 * n1 * D * D + 2 * N * D * D + 4 * N * n1 * D
    self_attention = 2 * N * 3 * D * D + 2 * N * D * D + 4 * N * N * D
    forward = (encoder(n1) + encoder(n2) + 2 * (n1 + n2) * E * D
               + dec.depth * (cross + self_attention + 4 * N * D * hD) + 2 * N * D * pixels)
    return batch * (3 * forward - patch_embed)


def model_and_pairs(shape: dict, device: str):
    """A seeded model of shape["preset"], its AdamW as in training, and a pair of random frames
    f1, f2 (batch, 3, img_size, img_size) on `device`."""
    torch.manual_seed(0)
    model = smae.build_model(shape["preset"]).to(device)
    optimizer = build_optimizer(model, effective_lr(1.5e-4, shape["batch"]), weight_decay=0.05, betas=(0.9, 0.95))
    generator = torch.Generator(device).manual_seed(0)
    frames = [torch.randn(shape["batch"], 3, shape["img_size"], shape["img_size"], device=device, generator=generator)
              for _ in range(2)]
    return model, optimizer, frames


def pair_loss(network, f1, f2, seed: int) -> torch.Tensor:
    """The training loss of a pair, masks drawn from `seed` (bf16 autocast on CUDA)."""
    device = f1.device
    with mask_seed(device, seed), torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        loss, _, _ = network(f1, f2)
    return loss


def _run_case(benchmark, shape: dict, provider: str, device: str, group: str) -> None:
    backend, compiled = PROVIDERS[provider]
    model, optimizer, (f1, f2) = model_and_pairs(shape, device)
    network = torch.compile(model) if compiled else model
    with torch._inductor.config.patch(fallback_random=True), use_backend(backend):
        with torch.no_grad(), use_backend("torch"):
            want = pair_loss(model, f1, f2, seed=0)
        loss = pair_loss(network, f1, f2, seed=0)  # compiles here
        tolerance = 2e-2 if device == "cuda" else 1e-4  # bf16 autocast on CUDA
        torch.testing.assert_close(loss.detach(), want, atol=tolerance, rtol=tolerance)
        seeds = iter(range(1, 10**6))

        def step():
            loss = pair_loss(network, f1, f2, next(seeds))  # a new mask each step, as in training
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        if device == "cuda":
            seconds = time_cuda(benchmark, step, group=group, provider=provider, repeats=1, rounds=10, baselines=("eager",))
        else:
            benchmark.group = group
            benchmark.pedantic(step, rounds=5, warmup_rounds=2, iterations=1)
            seconds = benchmark.stats.stats.median
            benchmark.extra_info.update(provider=provider, device=f"cpu, {torch.get_num_threads()} threads")
    flops = step_flops(model.config, shape["batch"], shape["img_size"])
    benchmark.extra_info.update(pairs_per_s=shape["batch"] / seconds, flops_per_step=flops, flops_per_s=flops / seconds)
    if device == "cuda" and torch.cuda.get_device_name() in PEAK_FLOPS:
        benchmark.extra_info["mfu"] = flops / seconds / PEAK_FLOPS[torch.cuda.get_device_name()]
    torch._dynamo.reset()


@pytest.mark.parametrize("shape_name, provider", CUDA_CASES)
def test_train_step_speed(benchmark, shape_name, provider):
    _run_case(benchmark, TRAINING_SHAPES[shape_name], provider, "cuda", f"train step {shape_name}")


@pytest.mark.cpu_ok
@pytest.mark.parametrize("provider", ["eager", "compile"])
def test_train_step_speed_cpu(benchmark, provider):
    model, _, (f1, f2) = model_and_pairs(CPU_SHAPE, "cpu")
    with FlopCounterMode(display=False) as counter, use_backend("torch"), use_attention_backend("math"):
        pair_loss(model, f1, f2, seed=0).backward()
    written = step_flops(model.config, CPU_SHAPE["batch"], CPU_SHAPE["img_size"])
    assert abs(written / counter.get_total_flops() - 1) < 0.01, (written, counter.get_total_flops())
    _run_case(benchmark, CPU_SHAPE, provider, "cpu", "train step tiny-b16 (cpu)")
