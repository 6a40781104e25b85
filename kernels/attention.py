"""Multi-head attention: one entry point for encoder self-attention and decoder self- and
cross-attention.

    out[b, i, h] = sum_j softmax_j(<q[b, i, h], k[b, j, h]> / sqrt(Dh)) v[b, j, h]

`dropout_p` > 0 zeroes attention probabilities at random (kept ones scaled by 1 / (1 - p)), as
nn.MultiheadAttention's dropout in training; every backend takes it.

Layout (xformers' "BMHK"): q (B, Nq, H, Dh), k and v (B, Nk, H, Dh), out (B, Nq, H, Dh);
Nq may differ from Nk (cross-attention). The layout is the one a fused qkv projection produces
with a plain `.view`, so no transpose is needed before xformers.

Backends (switch `SMAE_ATTENTION=auto|xformers|sdpa|math`, `set_attention_backend`,
`use_attention_backend`, or the `backend=` argument of one call):
- xformers: `xformers.ops.memory_efficient_attention` (CUDA only);
- sdpa: `torch.nn.functional.scaled_dot_product_attention` (any device);
- math: `attention_reference`, float64 softmax(QK^T/sqrt(d))V, the specification;
- auto: sdpa. PyTorch's SDPA dispatches to its flash, memory-efficient and cuDNN kernels, the
  ones xformers itself dispatches to on Hopper without FlashAttention-3; xformers runs when
  asked for (`python bench/record.py` times both on a GPU).
`last_attention_backend()` says which backend the latest call ran.

Decided once: xformers is imported when first asked for (never by `auto`), and the outcome is
kept. The per-call choice reads only the switch, so `torch.compile` traces
it without a graph break.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .backend import ATTENTION, BackendUnavailable

_last_backend: str | None = None
_xformers: tuple | None = None  # (memory_efficient_attention or None, why not or None), once imported


def set_attention_backend(name: str) -> None:
    ATTENTION.set(name)


def use_attention_backend(name: str):
    """Context manager: attention backend `name` inside the block."""
    return ATTENTION.use(name)


def last_attention_backend() -> str | None:
    """The backend ('xformers', 'sdpa' or 'math') the latest `attention` call ran, None before any."""
    return _last_backend


def attention_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, dropout_p: float = 0.0) -> torch.Tensor:
    """softmax(QK^T / sqrt(Dh)) V in float64; q (B, Nq, H, Dh), k/v (B, Nk, H, Dh) -> q's dtype."""
    q64, k64, v64 = (t.double() for t in (q, k, v))
    scores = torch.einsum("bihd,bjhd->bhij", q64, k64) / q.shape[-1] ** 0.5  # (B, H, Nq, Nk)
    probs = F.dropout(scores.softmax(dim=-1), dropout_p) if dropout_p > 0 else scores.softmax(dim=-1)
    out = torch.einsum("bhij,bjhd->bihd", probs, v64)
    return out.to(q.dtype)


def _import_xformers():
    """(memory_efficient_attention, None) or (None, why it is unavailable); imported once."""
    global _xformers
    if _xformers is None:
        try:
            from xformers.ops import memory_efficient_attention
        except Exception as error:  # a broken build raises more than ImportError
            _xformers = None, f"xformers does not import ({type(error).__name__}: {error})"
        else:
            _xformers = memory_efficient_attention, None
    return _xformers


def xformers_reasons(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> list[str]:
    """Why xformers cannot take these inputs; [] when it may (its own dispatcher has the last word)."""
    reasons = []
    _, import_error = _import_xformers()
    if import_error:
        reasons.append(import_error)
    if q.device.type != "cuda":
        reasons.append(f"inputs are on {q.device}, xformers runs on CUDA only")
    if q.dtype not in (torch.float16, torch.bfloat16, torch.float32):
        reasons.append(f"dtype {q.dtype} is not float16, bfloat16 or float32")
    return reasons


def _check_shapes(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        raise ValueError(f"attention expects (B, N, H, Dh) tensors, got q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}")
    if k.shape != v.shape or q.shape[0] != k.shape[0] or q.shape[2:] != k.shape[2:]:
        raise ValueError(f"attention shapes do not match: q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}")


def _sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, dropout_p: float) -> torch.Tensor:
    # SDPA wants (B, H, N, Dh); transposes are views, SDPA handles the strides.
    out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), dropout_p=dropout_p)
    return out.transpose(1, 2)


def _resolve(chosen: str, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> str:
    """The backend that runs: 'math', 'sdpa' or 'xformers' (raises when xformers is asked for but cannot run)."""
    if chosen == "auto":
        return "sdpa"
    if chosen == "xformers":
        reasons = xformers_reasons(q, k, v)
        if reasons:
            raise BackendUnavailable("attention: xformers was asked for but cannot run:\n" + "\n".join(f"  - {r}" for r in reasons))
    return chosen


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, backend: str | None = None, dropout_p: float = 0.0) -> torch.Tensor:
    """Scaled dot-product attention; q (B, Nq, H, Dh), k/v (B, Nk, H, Dh) -> (B, Nq, H, Dh);
    dropout_p: probability of dropping each attention weight (0: none)."""
    global _last_backend
    _check_shapes(q, k, v)
    if not 0.0 <= dropout_p < 1.0:
        raise ValueError(f"attention dropout_p must be in [0, 1), got {dropout_p}")
    requested = backend or ATTENTION.get()
    if requested not in ATTENTION.choices:
        raise ValueError(f"attention backend {requested!r} is not one of {', '.join(ATTENTION.choices)}")
    chosen = _resolve(requested, q, k, v)
    if chosen == "xformers":
        memory_efficient_attention, _ = _import_xformers()
        _last_backend = "xformers"
        return memory_efficient_attention(q, k, v, p=dropout_p)
    if chosen == "math":
        _last_backend = "math"
        return attention_reference(q, k, v, dropout_p)
    _last_backend = "sdpa"
    return _sdpa(q, k, v, dropout_p)
