"""Label propagation by top-k affinity (video object segmentation / pose / parts evaluation).

For each query position n of the target frame (grid (h, w), n = i * w + j):
    allowed(n, t, m) = radius is None  or  t < global_frames  or  near(n, m)
        near, window "circle" (CRW):  (i_n - i_m)^2 + (j_n - j_m)^2 < radius^2
        near, window "square" (DINO): |i_n - i_m| <= radius  and  |j_n - j_m| <= radius
    s(n, t, m) = <query[n], keys[t, m]>
    S(n)       = the `topk` allowed (t, m) with the largest s, chosen jointly over all T frames
                 (all allowed keys when fewer than `topk` are allowed)
    out[n]     = sum over (t, m) in S(n) of softmax(s / temperature)[t, m] * labels[t, m]

Shapes: query (N, C), keys (T, N, C), labels (T, N, K) -> out (N, K) float32, N = h * w.
Features are used as given (callers L2-normalise them); labels may be fp32 / fp16 / bf16.
A radius > 0 always allows a query's own cell, so every query has at least one allowed key.

Cost (DAVIS at ViT-S/8: grid 60x110, T = 21, C = 384): the dense affinity is N * T * N =
0.9 G scores (3.7 GB in fp32, 0.7 TFLOP). With radius 20 a local frame holds at most the
~1.2 k cells of a disk per query instead of 6.6 k. Both paths therefore work on square tiles
of query cells and multiply a local frame only over the box of key cells within reach of the
tile (~0.3 of the grid at this size), never holding more than one tile's affinity:
- `propagate_labels_reference` (here): tile x group-of-frames chunks within a memory budget,
  a masked matmul and `topk` per chunk, merged into a running top-k per query;
- the fused Triton kernels (propagation_triton.py): the same walk with the query tile resident,
  split over programs, candidates scored on tensor cores and re-scored in fp32; only per-query
  candidate lists are written, never the affinity; key tiles outside the disk skipped as well.
Labels move at most T * N * K elements, the output N * K.
"""
from __future__ import annotations

import itertools

import torch

from .backend import interpreter_enabled, triton_device_reasons, use_triton
from .gpus import gpu_limits
from .propagation_plan import propagation_gpu_reasons, window_reach

WINDOWS = ("circle", "square")

# Working memory of one chunk of the reference: its affinity plus the key box it copies.
DEFAULT_CHUNK_BYTES = 128 * 2**20
# Side of the square query tile the reference starts from (shrunk only to fit the chunk budget):
# smaller tiles waste less of each key box but give the matmul fewer rows and mean more,
# smaller ops (each a parallel region: costly when the CPU is shared).
PREFERRED_TILE = 16


def window_mask(query_rows: torch.Tensor, query_cols: torch.Tensor, key_rows: torch.Tensor, key_cols: torch.Tensor,
                radius: float, window: str) -> torch.Tensor:
    """Which (query cell, key cell) pairs the window allows.

    query_rows (a,), query_cols (b,), key_rows (c,), key_cols (d,) grid coordinates
    -> bool (a * b, c * d), query cells and key cells each in row-major order.
    """
    di = query_rows[:, None, None, None] - key_rows[None, None, :, None]  # (a, 1, c, 1)
    dj = query_cols[None, :, None, None] - key_cols[None, None, None, :]  # (1, b, 1, d)
    if window == "circle":
        allowed = di * di + dj * dj < radius * radius
    else:
        allowed = (di.abs() <= radius) & (dj.abs() <= radius)
    return allowed.reshape(len(query_rows) * len(query_cols), len(key_rows) * len(key_cols))


def _chunk_bytes(queries: int, box: int, channels: int, frames: int) -> int:
    """fp32 working memory of `frames` frames of one chunk: affinity (Q, G * B) + key box (G * B, C)."""
    return 4 * frames * box * (queries + channels)


def _tile_side(h: int, w: int, reach: int | None, has_global: bool, channels: int, chunk_bytes: int) -> int:
    """The largest square query tile (at most PREFERRED_TILE) whose chunk of one frame fits:
    one global frame (the whole grid), or one local frame (the tile's key box)."""
    for side in range(PREFERRED_TILE, 1, -1):
        rows, cols = min(side, h), min(side, w)
        box = h * w if reach is None or has_global else min(rows + 2 * reach, h) * min(cols + 2 * reach, w)
        if _chunk_bytes(rows * cols, box, channels, 1) <= chunk_bytes:
            return side
    return 1


class _RunningTopk:
    """The best `topk` scores per query seen so far and their key indices t * N + m."""

    def __init__(self, topk: int):
        self.topk = topk
        self.values: torch.Tensor | None = None  # (Q, k) fp32
        self.index: torch.Tensor | None = None  # (Q, k) int64

    def add(self, scores: torch.Tensor, key_index: torch.Tensor) -> None:
        """scores (Q, M) of the keys key_index (M,)."""
        values, columns = scores.topk(min(self.topk, scores.shape[1]), dim=1)
        index = key_index[columns]
        if self.values is not None:
            values, index = torch.cat([self.values, values], dim=1), torch.cat([self.index, index], dim=1)
            values, columns = values.topk(min(self.topk, values.shape[1]), dim=1)
            index = index.gather(1, columns)
        self.values, self.index = values, index


def propagate_labels_reference(
    query: torch.Tensor,
    keys: torch.Tensor,
    labels: torch.Tensor,
    *,
    grid: tuple[int, int],
    topk: int,
    temperature: float,
    radius: float | None = None,
    window: str = "circle",
    global_frames: int = 1,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
) -> torch.Tensor:
    """Top-k label propagation in plain PyTorch (fp32 compute), the specification.

    query (N, C), keys (T, N, C), labels (T, N, K) -> (N, K) float32; see the module docstring.
    Works on one chunk at a time: a square tile of query cells against a group of frames,
    within `chunk_bytes` of working memory (at least one query against one frame). For a
    windowed (local) frame only the box of key cells that can reach the tile is multiplied.
    """
    _check_inputs(query, keys, labels, grid, topk, temperature, radius, window, global_frames)
    h, w = grid
    frames, n, channels = keys.shape
    num_global = frames if radius is None else min(global_frames, frames)
    reach = None if radius is None else window_reach(radius, window)
    device = query.device

    query_grid = query.float().reshape(h, w, channels)
    keys_grid = keys.reshape(frames, h, w, channels)
    flat_labels = labels.reshape(frames * n, labels.shape[-1])
    coords_h, coords_w = torch.arange(h, device=device), torch.arange(w, device=device)
    out = torch.empty(h, w, labels.shape[-1], dtype=torch.float32, device=device)

    side = _tile_side(h, w, reach, num_global > 0, channels, chunk_bytes)
    for i0, j0 in itertools.product(range(0, h, side), range(0, w, side)):
        rows, cols = slice(i0, min(i0 + side, h)), slice(j0, min(j0 + side, w))
        q = query_grid[rows, cols].reshape(-1, channels)  # (Q, C)
        best = _RunningTopk(topk)
        local_rows = slice(0, h) if reach is None else slice(max(i0 - reach, 0), min(rows.stop + reach, h))
        local_cols = slice(0, w) if reach is None else slice(max(j0 - reach, 0), min(cols.stop + reach, w))
        blocked = None if reach is None else ~window_mask(
            coords_h[rows], coords_w[cols], coords_h[local_rows], coords_w[local_cols], radius, window)  # (Q, B)
        for first, last, key_rows, key_cols in (
            (0, num_global, slice(0, h), slice(0, w)),  # searched everywhere
            (num_global, frames, local_rows, local_cols),  # searched in the window only
        ):
            box_cells = (coords_h[key_rows, None] * w + coords_w[None, key_cols]).reshape(-1)  # (B,)
            group = max(1, chunk_bytes // _chunk_bytes(q.shape[0], len(box_cells), channels, 1))
            for t0 in range(first, last, group):
                t1 = min(t0 + group, last)
                box = keys_grid[t0:t1, key_rows, key_cols].reshape(-1, channels).float()  # (G * B, C)
                scores = q @ box.T  # (Q, G * B)
                if t0 >= num_global:
                    scores.view(q.shape[0], t1 - t0, -1).masked_fill_(blocked[:, None, :], float("-inf"))
                frame_offsets = torch.arange(t0, t1, device=device) * n
                best.add(scores, (frame_offsets[:, None] + box_cells[None, :]).reshape(-1))
        weights = (best.values / temperature).softmax(dim=1)  # (Q, k); disallowed picks (-inf) get 0
        chosen = flat_labels[best.index].float()  # (Q, k, K)
        out[rows, cols] = torch.bmm(weights.unsqueeze(1), chosen).view(rows.stop - i0, cols.stop - j0, -1)
    return out.reshape(n, labels.shape[-1])


def _check_inputs(query, keys, labels, grid, topk, temperature, radius, window, global_frames) -> None:
    for name, tensor, dims in (("query", query, "(N, C)"), ("keys", keys, "(T, N, C)"), ("labels", labels, "(T, N, K)")):
        if not isinstance(tensor, torch.Tensor) or tensor.dim() != len(dims.split(",")):
            raise ValueError(f"propagate_labels: {name} must be a {dims} tensor, got {getattr(tensor, 'shape', type(tensor))}")
        if not tensor.is_floating_point():
            raise ValueError(f"propagate_labels: {name} must be floating point, got {tensor.dtype}")
        if tensor.device != query.device:
            raise ValueError(f"propagate_labels: {name} is on {tensor.device}, query on {query.device}")
    n, channels = query.shape
    if len(grid) != 2 or any(not isinstance(side, int) or side < 1 for side in grid) or grid[0] * grid[1] != n:
        raise ValueError(f"propagate_labels: grid must be (h, w) positive ints with h * w = N = {n}, got {grid}")
    if keys.shape[0] < 1 or keys.shape[1:] != (n, channels):
        raise ValueError(f"propagate_labels: keys must be (T, N, C) = (T >= 1, {n}, {channels}), got {tuple(keys.shape)}")
    if labels.shape[:2] != keys.shape[:2] or labels.shape[2] < 1:
        raise ValueError(f"propagate_labels: labels must be (T, N, K) = ({keys.shape[0]}, {n}, K >= 1), got {tuple(labels.shape)}")
    if not isinstance(topk, int) or topk < 1:
        raise ValueError(f"propagate_labels: topk must be an int >= 1, got {topk!r}")
    if not temperature > 0:
        raise ValueError(f"propagate_labels: temperature must be > 0, got {temperature!r}")
    if radius is not None and not radius > 0:
        raise ValueError(f"propagate_labels: radius must be None or > 0, got {radius!r}")
    if window not in WINDOWS:
        raise ValueError(f"propagate_labels: window must be one of {WINDOWS}, got {window!r}")
    if not isinstance(global_frames, int) or global_frames < 0:
        raise ValueError(f"propagate_labels: global_frames must be an int >= 0, got {global_frames!r}")


FEATURE_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
# What the fused kernels are built and tested for: the running candidates are a (Q, CAND)
# register tile, CAND = next_pow2(topk + 8) <= 64, and the output a (Q, K) one. The query tile
# (Q x C, fp16) stays resident in shared memory; propagation_plan.py picks Q per GPU so that
# two programs fit an SM (tests/gpu_budget.py compiles C = 384 for every target).
MAX_TOPK = 32
MAX_CHANNELS = 768
MAX_CLASSES = 64


def _triton_reasons(query: torch.Tensor, keys: torch.Tensor, labels: torch.Tensor, topk: int) -> list[str]:
    """Why the fused kernel cannot take these (already checked) inputs; [] when it can."""
    reasons = triton_device_reasons(query, keys, labels)
    if topk > MAX_TOPK:
        reasons.append(f"topk = {topk} > {MAX_TOPK} (the running top-k lives in registers)")
    if query.shape[1] > MAX_CHANNELS:
        reasons.append(f"C = {query.shape[1]} > {MAX_CHANNELS} channels")
    if labels.shape[2] > MAX_CLASSES:
        reasons.append(f"K = {labels.shape[2]} > {MAX_CLASSES} label channels")
    if query.dtype != keys.dtype:
        reasons.append(f"query is {query.dtype} but keys are {keys.dtype}")
    for name, tensor in (("query", query), ("keys", keys), ("labels", labels)):
        if tensor.dtype not in FEATURE_DTYPES:
            reasons.append(f"{name} is {tensor.dtype}, not fp32 / fp16 / bf16")
    if interpreter_enabled() and query.dtype == torch.bfloat16:
        reasons.append("bf16 features under TRITON_INTERPRET=1 (the interpreter computes bf16 tl.dot wrongly)")
    if query.device.type == "cuda":
        reasons += propagation_gpu_reasons(gpu_limits(query.device), query.shape[1])
    if max(query.numel(), keys.numel(), labels.numel()) >= 2**31:
        reasons.append("an input has >= 2**31 elements (the kernel's offsets are int32)")
    if any(t.requires_grad for t in (query, keys, labels)):
        reasons.append("an input requires grad (the kernel has no backward: propagation is an evaluation op)")
    return reasons


def propagate_labels(
    query: torch.Tensor,
    keys: torch.Tensor,
    labels: torch.Tensor,
    *,
    grid: tuple[int, int],
    topk: int,
    temperature: float,
    radius: float | None = None,
    window: str = "circle",
    global_frames: int = 1,
) -> torch.Tensor:
    """Top-k label propagation; query (N, C), keys (T, N, C), labels (T, N, K) -> (N, K) float32.

    The Triton path picks candidates with tensor-core products and re-scores them in fp32
    (propagation_triton.py says when that equals the reference). Not differentiable: an
    evaluation op.
    """
    _check_inputs(query, keys, labels, grid, topk, temperature, radius, window, global_frames)
    if use_triton("propagate_labels", _triton_reasons(query, keys, labels, topk)):
        from .propagation_triton import propagate_labels_triton

        return propagate_labels_triton(query, keys, labels, grid=grid, topk=topk, temperature=temperature, radius=radius,
                                       window=window, global_frames=global_frames)
    return propagate_labels_reference(query, keys, labels, grid=grid, topk=topk, temperature=temperature,
                                      radius=radius, window=window, global_frames=global_frames)
