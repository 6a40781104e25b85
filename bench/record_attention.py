"""Section 4 of the device record: attention backends at smae's shapes.

Backends, each through `smae.kernels.attention` (the model's entry point, BMHK layout):
- xformers: `backend="xformers"` (memory_efficient_attention; its dispatcher picks the operator,
  recorded in the environment section), when xformers imports;
- sdpa-flash, sdpa-cudnn, sdpa-efficient, sdpa-math: `backend="sdpa"` with PyTorch's SDPA held to
  one implementation by `torch.nn.attention.sdpa_kernel`;
- sdpa-auto: `backend="sdpa"`, PyTorch's own choice.
Passes: forward, and forward + backward (gradients of q, k, v for a fixed output gradient).
Every backend is checked first against the float64 `attention_reference` on the first two batch
elements (flash-attention's rule; PyTorch's error in the same precision is that of the plain
formula computed in the dtype, `naive_attention`, as flash-attention's tests take it); the winner of a case is the fastest backend that passed. The cases and winners are also written to
their own JSON (`attention.json`), keyed by case then pass, for the attention `auto` table.
"""
from __future__ import annotations

import contextlib
import time
import traceback

import torch

from bench.record_measure import DTYPES, compare, median_seconds
from bench.record_plan import AttentionCase, Plan
from smae.kernels import attention, attention_reference

SDPA_BACKENDS = {"sdpa-flash": "FLASH_ATTENTION", "sdpa-cudnn": "CUDNN_ATTENTION",
                 "sdpa-efficient": "EFFICIENT_ATTENTION", "sdpa-math": "MATH"}
BACKENDS = ("xformers", *SDPA_BACKENDS, "sdpa-auto")
PASSES = ("forward", "forward+backward")
TRUTH_BATCH = 2  # batch elements checked against float64


def _context(backend: str):
    """The context that holds smae's attention to `backend`; the `backend=` argument it takes."""
    if backend in SDPA_BACKENDS:
        from torch.nn.attention import SDPBackend, sdpa_kernel

        return sdpa_kernel([getattr(SDPBackend, SDPA_BACKENDS[backend])]), "sdpa"
    if backend == "sdpa-auto":
        return contextlib.nullcontext(), "sdpa"
    return contextlib.nullcontext(), "xformers"


def _inputs(case: AttentionCase, dtype: torch.dtype, device: str, seed: int):
    generator = torch.Generator(device).manual_seed(seed)
    q = torch.randn(case.batch, case.queries, case.heads, case.head_dim, device=device, generator=generator).to(dtype)
    k, v = (torch.randn(case.batch, case.keys, case.heads, case.head_dim, device=device, generator=generator).to(dtype) for _ in range(2))
    return q, k, v


def naive_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """softmax(QK^T / sqrt(Dh)) V with every op in the inputs' dtype; BMHK in and out."""
    scores = torch.einsum("bihd,bjhd->bhij", q, k) * q.shape[-1] ** -0.5
    return torch.einsum("bhij,bjhd->bihd", scores.softmax(dim=-1), v)


def xformers_dispatch(plan: Plan) -> dict:
    """The operator xformers' dispatcher picks for each attention case, forward (with and without
    gradient) and backward, or why there is none. Uses xformers' private dispatch functions."""
    try:
        from xformers.ops import fmha
        from xformers.ops.fmha import dispatch
    except Exception as error:  # a broken build raises more than ImportError
        return {"unavailable": f"xformers does not import ({type(error).__name__}: {error})"}
    picked = {}
    for name, case in plan.attention_cases.items():
        q, k, v = _inputs(case, DTYPES[plan.attention_dtype], plan.device, 0)
        entry = {}
        for label, pick in (("forward_inference", lambda i: dispatch._dispatch_fw(i, False)),
                            ("forward_training", lambda i: dispatch._dispatch_fw(i, True)),
                            ("backward", lambda i: dispatch._dispatch_bw(i, None))):
            try:
                entry[label] = pick(fmha.Inputs(query=q, key=k, value=v)).NAME
            except Exception as error:
                entry[label] = f"none ({type(error).__name__}: {str(error).splitlines()[0][:200]})"
        picked[name] = entry
    return picked


def _measure_backend(case: AttentionCase, backend: str, plan: Plan) -> dict:
    """Median ms of both passes, and the first TRUTH_BATCH elements of the output and gradients."""
    dtype, device = DTYPES[plan.attention_dtype], plan.device
    context, smae_backend = _context(backend)
    q, k, v = (t.requires_grad_() for t in _inputs(case, dtype, device, 1))
    grad_out = torch.randn(q.shape, device=device, generator=torch.Generator(device).manual_seed(2)).to(dtype)
    with context:
        out = attention(q, k, v, backend=smae_backend)
        grads = torch.autograd.grad(out, (q, k, v), grad_out)
        got = [out[:TRUTH_BATCH], *(g[:TRUTH_BATCH] for g in grads)]
        frozen = [t.detach() for t in (q, k, v)]
        seconds = {
            "forward": median_seconds(lambda: attention(*frozen, backend=smae_backend), device, plan.timing_rounds, plan.timing_reps),
            "forward+backward": median_seconds(
                lambda: torch.autograd.grad(attention(q, k, v, backend=smae_backend), (q, k, v), grad_out),
                device, plan.timing_rounds, plan.timing_reps),
        }
    return {"ms": {p: s * 1e3 for p, s in seconds.items()}, "outputs": got}


def attention_case(name: str, case: AttentionCase, plan: Plan, deadline: float) -> dict:
    dtype, device = DTYPES[plan.attention_dtype], plan.device
    inputs = [t[:TRUTH_BATCH] for t in _inputs(case, dtype, device, 1)]
    grad_out = torch.randn((case.batch, *inputs[0].shape[1:]), device=device, generator=torch.Generator(device).manual_seed(2)).to(dtype)
    grad_out = grad_out[:TRUTH_BATCH]
    q, k, v = (t.double().requires_grad_() for t in inputs)
    truth_out = attention_reference(q, k, v)
    truth = [truth_out.detach(), *torch.autograd.grad(truth_out, (q, k, v), grad_out.double())]
    q, k, v = (t.clone().requires_grad_() for t in inputs)
    naive_out = naive_attention(q, k, v)
    naive = [naive_out.detach(), *torch.autograd.grad(naive_out, (q, k, v), grad_out)]
    measured, errors = {}, {}
    for backend in BACKENDS:
        if time.monotonic() > deadline:
            errors[backend] = "not run: section time cap"
            continue
        try:
            measured[backend] = _measure_backend(case, backend, plan)
        except Exception as error:
            errors[backend] = f"{type(error).__name__}: {' '.join(str(error).split())[:400]}"
            if not isinstance(error, (RuntimeError, NotImplementedError)):
                errors[backend] += "\n" + traceback.format_exc(limit=4)
        finally:
            if device == "cuda":
                torch.cuda.empty_cache()
    names = ("out", "grad_q", "grad_k", "grad_v")
    result = {"q_shape": [case.batch, case.queries, case.heads, case.head_dim], "kv_shape": [case.batch, case.keys, case.heads, case.head_dim],
              "dtype": plan.attention_dtype, "unavailable": errors, "checks": {}}
    for backend, entry in measured.items():
        checks = {n: compare(got, ref, want) for n, got, ref, want in zip(names, entry["outputs"], naive, truth)}
        result["checks"][backend] = {"ok": all(c["ok"] for c in checks.values()),
                                     "worst_error": max(c["kernel_error"] for c in checks.values())}
    for pass_ in PASSES:
        times = {backend: entry["ms"][pass_] for backend, entry in measured.items()}
        passing = {backend: ms for backend, ms in times.items() if result["checks"][backend]["ok"]}
        result[pass_] = {"ms": times, "winner": min(passing, key=passing.get) if passing else None}
    return result


def attention_section(plan: Plan, deadline: float) -> dict:
    cases = {}
    for name, case in plan.attention_cases.items():
        try:
            cases[name] = attention_case(name, case, plan, deadline)
        except Exception:
            cases[name] = {"error": traceback.format_exc(limit=8)}
    ok = all("error" not in case and all(case[p]["winner"] for p in PASSES) for case in cases.values())
    return {"backends": list(BACKENDS), "cases": cases, "ok": ok}


# What `auto` chooses between (smae.kernels.attention_table.MEASURED_BACKENDS), and the measured
# backend that stands for each: `backend="sdpa"` runs PyTorch's own SDPA choice.
AUTO_CANDIDATES = {"sdpa": "sdpa-auto", "xformers": "xformers"}
AUTO_PASS = "forward+backward"  # training dominates attention time; the table has no pass axis


def auto_table(section: dict, environment: dict) -> dict:
    """`attention.json`: per case and pass, the shapes and each backend's median milliseconds and
    winner; under "table", the rows of `smae.kernels.attention_table` for this device (each
    candidate's forward+backward seconds, where it passed its check), which
    `bench/render_record.py --attention` installs as kernels/attention_table.json."""
    from smae.kernels.attention_table import record_timings

    cases = {name: {key: value for key, value in case.items() if key in ("q_shape", "kv_shape", "dtype", *PASSES)}
             for name, case in section["cases"].items() if "error" not in case}
    table, device = {}, environment.get("gpu") or "unknown device"
    for name, case in section["cases"].items():
        if "error" in case:
            continue
        seconds = {candidate: case[AUTO_PASS]["ms"][measured] / 1e3 for candidate, measured in AUTO_CANDIDATES.items()
                   if measured in case[AUTO_PASS]["ms"] and case["checks"][measured]["ok"]}
        if seconds:
            batch, queries, heads, head_dim = case["q_shape"]
            table = record_timings(table, device, case["dtype"], head_dim, queries, case["kv_shape"][1], seconds)
    return {"device": environment.get("gpu"), "torch": environment.get("torch"),
            "xformers": environment.get("xformers"), "cases": cases, "table": table}
