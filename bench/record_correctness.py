"""Section 3 of the device record: every Triton kernel against its reference on the device.

For each kernel, shape (plan.kernel_shapes, bench/shapes.py's) and dtype: random inputs in that
dtype; the float64 truth is the reference on the same values upcast; "torch" is the reference in
the dtype; "kernel" the public op under `use_backend("triton")`, its forward output and every
gradient allocated into NaN-poisoned memory. Each output passes flash-attention's rule
(bench/record_measure.py). Propagation: the fused kernel and `propagate_labels_reference` on the
DAVIS grids against a float64 dense top-k written here. Model: one SiamMAE step with kernels off
and on, both in the training precision, against the same step in float64.

The calls into smae's public API sit in KERNEL_OPS, `_propagation_ops` and `_model_step`.
"""
from __future__ import annotations

import copy
import time
import traceback
from typing import Callable

import torch
import torch.nn.functional as F

import smae
from bench.record_measure import DTYPES, Poison, compare
from bench.record_plan import Plan
from smae.kernels import (
    gather_patches,
    gather_patches_reference,
    gather_visible,
    gather_visible_reference,
    masked_patch_loss,
    masked_patch_loss_reference,
    propagate_labels,
    propagate_labels_reference,
    scatter_visible,
    scatter_visible_reference,
    use_backend,
)
from smae.models.masking import random_masking


def _masking(shape: dict, device: str, seed: int):
    ratio = 1 - (shape["visible"] + 0.5) / shape["tokens"]  # MAE keeps int(L * (1 - ratio)) = visible
    masking = random_masking(shape["batch"], shape["tokens"], ratio, device, torch.Generator(device).manual_seed(seed))
    assert masking.ids_keep.shape[1] == shape["visible"]
    return masking


def _gather_inputs(shape, dtype, device, rand):
    tokens = rand(shape["batch"], shape["tokens"], shape["encoder_dim"])
    return dict(tokens=tokens, ids_keep=_masking(shape, device, 0).ids_keep, pos_embed=rand(shape["tokens"], shape["encoder_dim"])), ("tokens", "pos_embed")


def _patches_inputs(shape, dtype, device, rand):
    imgs = rand(shape["batch"], 3, shape["img_size"], shape["img_size"])
    return dict(imgs=imgs, ids_keep=_masking(shape, device, 1).ids_keep, patch_size=shape["patch"]), ("imgs",)


def _scatter_inputs(shape, dtype, device, rand):
    dim = shape["decoder_dim"]
    visible = rand(shape["batch"], 1 + shape["visible"], dim)
    return dict(visible=visible, ids_restore=_masking(shape, device, 2).ids_restore, mask_token=rand(dim),
                pos_embed=rand(1 + shape["tokens"], dim), num_prefix=1), ("visible", "mask_token", "pos_embed")


def _loss_inputs(shape, dtype, device, rand):
    patch = shape["patch"]
    pred = rand(shape["batch"], shape["tokens"], patch * patch * 3)
    imgs = rand(shape["batch"], 3, shape["img_size"], shape["img_size"])
    return dict(pred=pred, imgs=imgs, mask=_masking(shape, device, 3).mask, patch_size=patch), ("pred",)


# op -> (inputs for a shape, the public (dispatching) op, its reference)
KERNEL_OPS: dict[str, tuple[Callable, Callable, Callable]] = {
    "gather_visible": (_gather_inputs, gather_visible, gather_visible_reference),
    "gather_patches": (_patches_inputs, gather_patches, gather_patches_reference),
    "scatter_visible": (_scatter_inputs, scatter_visible, scatter_visible_reference),
    "masked_patch_loss": (_loss_inputs, masked_patch_loss, masked_patch_loss_reference),
}


def _forward_backward(fn, inputs: dict, grad_names, grad_out_seed: int, device: str, poison_bytes: int | None):
    """fn(**inputs) and the gradients of `grad_names` for a fixed random output gradient; with
    poison_bytes, each pass runs on NaN-poisoned memory -> (out, grads, poisoned flags)."""
    leaves = {name: inputs[name].detach().requires_grad_() for name in grad_names}
    args = dict(inputs, **leaves)
    poison = Poison(device, poison_bytes) if poison_bytes else None
    out = fn(**args)
    generator = torch.Generator(device).manual_seed(grad_out_seed)
    grad_out = torch.randn(out.shape, device=device, generator=generator, dtype=torch.float32).to(out.dtype)
    covered = [poison.covered(out)] if poison else []
    poison = Poison(device, poison_bytes) if poison_bytes else None
    grads = torch.autograd.grad(out, list(leaves.values()), grad_out)
    if poison:
        covered += [poison.covered(g) for g in grads]
    return out.detach(), dict(zip(grad_names, grads)), covered


def check_kernel(op: str, shape: dict, dtype_name: str, device: str) -> dict:
    make_inputs, public_op, reference = KERNEL_OPS[op]
    dtype = DTYPES[dtype_name]
    generator = torch.Generator(device).manual_seed(list(KERNEL_OPS).index(op))

    def rand(*size):
        return torch.randn(*size, device=device, generator=generator).to(dtype)

    inputs, grad_names = make_inputs(shape, dtype, device, rand)
    upcast = {k: v.double() if isinstance(v, torch.Tensor) and v.is_floating_point() else v for k, v in inputs.items()}
    truth, truth_grads, _ = _forward_backward(reference, upcast, grad_names, 7, device, None)
    same, same_grads, _ = _forward_backward(reference, inputs, grad_names, 7, device, None)
    poison_bytes = 2 * sum(t.numel() * t.element_size() for t in inputs.values() if isinstance(t, torch.Tensor)) + 2**22

    def kernel(**args):
        with use_backend("triton"):
            return public_op(**args)

    out, grads, covered = _forward_backward(kernel, inputs, grad_names, 7, device, poison_bytes)
    outputs = {"forward": compare(out, same, truth)}
    for name in grad_names:
        outputs[f"grad_{name}"] = compare(grads[name], same_grads[name], truth_grads[name])
    return {"outputs": outputs, "poisoned": covered, "ok": all(o["ok"] for o in outputs.values())}


def propagation_truth(query, keys, labels, *, grid, topk, temperature, radius, window, global_frames, chunk=512):
    """Dense float64 top-k propagation, query chunk by chunk: (N, C), (T, N, C), (T, N, K) -> (N, K)."""
    frames, n, _ = keys.shape
    rows = torch.arange(grid[0], device=query.device).repeat_interleave(grid[1])  # (N,) row of each cell
    cols = torch.arange(grid[1], device=query.device).repeat(grid[0])
    out = torch.empty(n, labels.shape[-1], dtype=torch.float64, device=query.device)
    for q0 in range(0, n, chunk):
        q1 = min(q0 + chunk, n)
        scores = torch.einsum("qc,tnc->qtn", query[q0:q1], keys)  # (Q, T, N)
        di, dj = rows[q0:q1, None] - rows[None], cols[q0:q1, None] - cols[None]  # (Q, N)
        near = di * di + dj * dj < radius * radius if window == "circle" else (di.abs() <= radius) & (dj.abs() <= radius)
        scores[:, global_frames:].masked_fill_(~near[:, None], float("-inf"))
        values, index = scores.flatten(1).topk(topk, dim=1)  # (Q, k) over all T * N keys jointly
        weights = (values / temperature).softmax(dim=1)
        out[q0:q1] = torch.einsum("qk,qkc->qc", weights, labels.flatten(0, 1)[index])
    return out


def _propagation_ops(query, keys, labels, args: dict):
    """(kernel output, reference output) of smae's propagate_labels on the same inputs."""
    with use_backend("triton"):
        kernel = propagate_labels(query, keys, labels, **args)
    return kernel, propagate_labels_reference(query, keys, labels, **args)


def check_propagation(shape: dict, dtype_name: str, device: str) -> dict:
    dtype = DTYPES[dtype_name]
    generator = torch.Generator(device).manual_seed(5)
    n = shape["grid"][0] * shape["grid"][1]
    query = F.normalize(torch.randn(n, shape["channels"], device=device, generator=generator), dim=-1).to(dtype)
    keys = F.normalize(torch.randn(shape["frames"], n, shape["channels"], device=device, generator=generator), dim=-1).to(dtype)
    labels = torch.rand(shape["frames"], n, shape["classes"], device=device, generator=generator).softmax(-1).to(dtype)
    args = {key: shape[key] for key in ("grid", "topk", "temperature", "radius", "window", "global_frames")}
    truth = propagation_truth(query.double(), keys.double(), labels.double(), **args)
    poison = Poison(device, 4 * n * shape["classes"] + 2**22)
    kernel, reference = _propagation_ops(query, keys, labels, args)
    result = compare(kernel, reference, truth)
    return {"outputs": {"forward": result}, "poisoned": [poison.covered(kernel)], "ok": result["ok"]}


def _model_step(model, f1, f2, backend: str, autocast: str | None):
    """One SiamMAE forward + backward with a fixed mask -> (loss, {parameter: gradient})."""
    model.zero_grad(set_to_none=True)
    device = f1.device.type
    with use_backend(backend), torch.autocast(device, dtype=DTYPES[autocast or "float32"], enabled=autocast is not None):
        loss, _, _ = model(f1, f2, generator=torch.Generator(device).manual_seed(0))
    loss.backward()
    return loss.detach(), {name: p.grad.detach().clone() for name, p in model.named_parameters() if p.grad is not None}


def check_model_parity(plan: Plan) -> dict:
    device = plan.device
    torch.manual_seed(0)
    model = smae.build_model(plan.parity_preset).to(device)
    generator = torch.Generator(device).manual_seed(9)
    f1, f2 = (torch.randn(plan.parity_batch, 3, plan.parity_img, plan.parity_img, device=device, generator=generator) for _ in range(2))
    truth_loss, truth_grads = _model_step(copy.deepcopy(model).double(), f1.double(), f2.double(), "torch", None)
    same_loss, same_grads = _model_step(model, f1, f2, "torch", plan.parity_autocast)
    loss, grads = _model_step(model, f1, f2, "triton", plan.parity_autocast)
    per_parameter = {name: compare(grads[name], same_grads[name], truth_grads[name]) for name in truth_grads}
    failing = sorted(name for name, result in per_parameter.items() if not result["ok"])
    loss_check = compare(loss, same_loss, truth_loss)
    worst = max(per_parameter, key=lambda name: per_parameter[name]["kernel_error"] / max(per_parameter[name]["limit"], 1e-30))
    return {"preset": plan.parity_preset, "batch": plan.parity_batch, "autocast": plan.parity_autocast,
            "loss": loss_check, "parameters": len(per_parameter), "failing": failing,
            "worst": dict(per_parameter[worst], name=worst), "ok": loss_check["ok"] and not failing}


def _guarded(fn, *args) -> dict:
    try:
        return fn(*args)
    except Exception:  # one failing check is recorded; the others still run
        return {"ok": False, "error": traceback.format_exc(limit=8)}


def correctness(plan: Plan, deadline: float) -> dict:
    """Runs every check until `deadline` (time.monotonic()); those left are listed as not run."""
    results: dict = {"kernels": {}, "propagation": {}, "not_run": []}
    jobs = [("kernels", f"{op}/{shape_name}/{dtype}", check_kernel, (op, shape, dtype, plan.device))
            for shape_name, shape in plan.kernel_shapes.items() for dtype in plan.kernel_dtypes for op in KERNEL_OPS]
    jobs += [("propagation", f"{shape_name}/{dtype}", check_propagation, (shape, dtype, plan.device))
             for shape_name, shape in plan.propagation_shapes.items() for dtype in plan.kernel_dtypes]
    jobs.append(("model_parity", None, check_model_parity, (plan,)))
    for group, key, fn, args in jobs:
        if time.monotonic() > deadline:
            results["not_run"].append(f"{group}/{key}" if key else group)
            continue
        result = _guarded(fn, *args)
        if key is None:
            results[group] = result
        else:
            results[group][key] = result
    checks = list(results["kernels"].values()) + list(results["propagation"].values()) + [results.get("model_parity", {"ok": False})]
    results["ok"] = all(check["ok"] for check in checks) and not results["not_run"]
    return results
