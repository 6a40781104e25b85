"""The masking ops of SiamMAE training: eager reference, torch.compile of it, and the Triton kernels.

    python -m pytest bench/bench_masking.py --benchmark-only -s

Shapes: bench/shapes.py (ViT-S/16: 196 tokens, 9 visible; ViT-S/8: 784 and 39; batch 64 and 256).
Ops, each forward and forward+backward, in the dtypes of bf16-autocast training:
- gather_visible: bf16 tokens (B, L, 384) and frozen bf16 pos table -> (B, K, 384); grad to tokens.
- scatter_visible: bf16 visible (B, 1 + K, 256), float32 mask token and frozen pos table ->
  (B, 1 + L, 256) float32 (as in the model: the float32 table promotes); grads to visible and
  the mask token.
- patch_embed: the encoder's input. eager / compile: MAE's way, the stride-p convolution on the
  whole frame, then the gather; triton: `gather_patches` of the kept pixels, then a Linear on
  those only (1/20 of the FLOPs at 95% masking); grads to the patch-embedding weights.
Bytes moved (extra_info) are what the op must move at least: the gathered rows, the position
table once, the indices and the outputs (plus, for forward+backward, the incoming and outgoing
gradients), the same figure for every provider so GB/s compares them. Peak memory beyond the inputs is recorded
too (`memory_beyond_outputs`: peak allocation minus the outputs and gradients returned).
Every provider's output and gradients are checked against eager's before it is timed.
Targets (H200): triton >= 3x eager, no memory beyond its outputs.
"""
from __future__ import annotations

import functools

import pytest
import torch
import torch.nn.functional as F

from bench.cuda_measure import assert_close_to_eager, nbytes, peak_extra_bytes, time_cuda
from bench.shapes import TRAINING_SHAPES
from smae.kernels import (
    gather_patches,
    gather_visible,
    gather_visible_reference,
    scatter_visible,
    scatter_visible_reference,
    use_backend,
)
from smae.models.masking import random_masking

PROVIDERS = ["eager", "compile", "triton"]  # eager first: the others report their speed-up on it
PASSES = ["forward", "forward+backward"]
MASK_RATIO = 0.95


def _masking(shape: dict, seed: int):
    masking = random_masking(shape["batch"], shape["tokens"], MASK_RATIO, "cuda", torch.Generator("cuda").manual_seed(seed))
    assert masking.ids_keep.shape[1] == shape["visible"], "bench/shapes.py disagrees with MAE's keep count"
    return masking


def _gather_inputs(shape):
    batch, length, dim = shape["batch"], shape["tokens"], shape["encoder_dim"]
    tokens = torch.randn(batch, length, dim, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    pos = torch.randn(length, dim, device="cuda", dtype=torch.bfloat16)
    return dict(tokens=tokens, ids_keep=_masking(shape, 0).ids_keep, pos_embed=pos), ("tokens",)


def _scatter_inputs(shape):
    batch, length, dim = shape["batch"], shape["tokens"], shape["decoder_dim"]
    visible = torch.randn(batch, 1 + shape["visible"], dim, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    mask_token = torch.randn(dim, device="cuda", requires_grad=True)
    pos = torch.randn(1 + length, dim, device="cuda")
    return dict(visible=visible, ids_restore=_masking(shape, 1).ids_restore, mask_token=mask_token, pos_embed=pos, num_prefix=1), ("visible", "mask_token")


def _patch_embed_inputs(shape):
    patch = shape["patch"]
    conv = torch.nn.Conv2d(3, shape["encoder_dim"], patch, stride=patch, device="cuda")
    imgs = torch.randn(shape["batch"], 3, shape["img_size"], shape["img_size"], device="cuda")
    pos = torch.randn(shape["tokens"], shape["encoder_dim"], device="cuda")
    return dict(imgs=imgs, ids_keep=_masking(shape, 2).ids_keep, weight=conv.weight, bias=conv.bias, pos_embed=pos), ("weight", "bias")


def conv_then_gather(imgs, ids_keep, weight, bias, pos_embed):
    """MAE: embed every patch, then keep the visible ones -> (B, K, D)."""
    with torch.autocast("cuda", dtype=torch.bfloat16):
        tokens = F.conv2d(imgs, weight, bias, stride=weight.shape[-1]).flatten(2).transpose(1, 2)  # (B, L, D)
        return gather_visible_reference(tokens, ids_keep, pos_embed)


def gather_then_linear(imgs, ids_keep, weight, bias, pos_embed):
    """smae's encoder: gather the kept patches' pixels, embed only those -> (B, K, D)."""
    with torch.autocast("cuda", dtype=torch.bfloat16):
        patches = gather_patches(imgs, ids_keep, weight.shape[-1])  # (B, K, 3*p*p)
        return F.linear(patches, weight.flatten(1), bias) + pos_embed[ids_keep]


def _gather_bytes(inputs, out, backward):
    tokens, ids = inputs["tokens"], inputs["ids_keep"]
    moved = out.numel() * tokens.element_size() + nbytes(inputs["pos_embed"], ids, out)  # kept rows in, out
    if backward:  # grad_out in, the whole (B, L, D) gradient out, zeros included
        moved += nbytes(out, ids, tokens)
    return moved


def _scatter_bytes(inputs, out, backward):
    visible, ids, mask_token = inputs["visible"], inputs["ids_restore"], inputs["mask_token"]
    moved = nbytes(visible, mask_token, inputs["pos_embed"], ids, out)
    if backward:  # grad_out in, the visible rows' and the mask token's gradients out
        moved += nbytes(out, ids, visible, mask_token)
    return moved


# op -> (inputs for a shape, eager reference, fused path, bytes it must move or None if compute-bound)
OPS = {
    "gather_visible": (_gather_inputs, gather_visible_reference, gather_visible, _gather_bytes),
    "scatter_visible": (_scatter_inputs, scatter_visible_reference, scatter_visible, _scatter_bytes),
    "patch_embed": (_patch_embed_inputs, conv_then_gather, gather_then_linear, None),
}


@functools.lru_cache(maxsize=None)
def _compiled(op: str):
    return torch.compile(OPS[op][1], dynamic=False)


def _provider_fn(op: str, provider: str):
    _, reference, fused, _ = OPS[op]
    if provider == "eager":
        return reference
    if provider == "compile":
        return _compiled(op)

    def triton_fn(**inputs):
        with use_backend("triton"):
            return fused(**inputs)

    return triton_fn


@functools.lru_cache(maxsize=None)
def _case(shape_name: str, op: str):
    """Inputs, the names needing gradients, a fixed output gradient, eager's output and gradients."""
    inputs, grad_names = OPS[op][0](TRAINING_SHAPES[shape_name])
    out = OPS[op][1](**inputs)
    grad_out = torch.randn_like(out)
    grads = torch.autograd.grad(out, [inputs[n] for n in grad_names], grad_out)
    return inputs, grad_names, grad_out, out.detach(), [g.detach() for g in grads]


def _cases():
    for shape_name in TRAINING_SHAPES:
        for op in OPS:
            for pass_ in PASSES:
                for provider in PROVIDERS:
                    yield pytest.param(shape_name, op, pass_, provider, id=f"{op}-{pass_}-{shape_name}-{provider}")


@pytest.mark.parametrize("shape_name,op,pass_,provider", list(_cases()))
def test_masking_speed(benchmark, shape_name, op, pass_, provider):
    inputs, grad_names, grad_out, want_out, want_grads = _case(shape_name, op)
    fn = _provider_fn(op, provider)
    backward = pass_ == "forward+backward"
    leaves = [inputs[n] for n in grad_names]

    def run():
        out = fn(**inputs)
        return torch.autograd.grad(out, leaves, grad_out) if backward else out

    out = fn(**inputs)
    assert_close_to_eager(out, want_out)
    for got, want in zip(torch.autograd.grad(out, leaves, grad_out), want_grads):
        assert_close_to_eager(got, want)
    returned = nbytes(want_out, *(want_grads if backward else ()))
    peak = peak_extra_bytes(run)
    bytes_fn = OPS[op][3]
    moved = bytes_fn(inputs, want_out, backward) if bytes_fn else None
    time_cuda(benchmark, run, group=f"{op} {pass_} {shape_name}", provider=provider, bytes_moved=moved)
    benchmark.extra_info["memory_beyond_outputs"] = peak - returned
    if op == "patch_embed":
        shape = TRAINING_SHAPES[shape_name]
        embedded = shape["visible"] if provider == "triton" else shape["tokens"]
        flops = 2 * shape["batch"] * embedded * shape["encoder_dim"] * 3 * shape["patch"] ** 2 * (3 if backward else 1)
        benchmark.extra_info["patch_embed_gflop"] = flops / 1e9
