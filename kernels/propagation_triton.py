"""Fused Triton kernel of `propagate_labels` (see kernels/propagation.py for the math).

One program takes a QI x QJ tile of query cells and walks the context frames in KI x KJ tiles
of key cells. The affinity of a (query tile, key tile) pair is one `tl.dot` (chunked over C);
it is masked by the window and merged into a running top-k held in registers, then dropped:
the affinity never reaches global memory. For a local frame only the key tiles that can reach
the query tile are visited: key rows within `reach` of the tile, and in each key-row group only
the columns the window still allows at that row distance (the disk's corners are skipped).
At the end, softmax over the kept scores and a gather-and-sum of the chosen keys' labels.

Running top-k: best scores (Q, TOPK_PAD) with their key indices t * N + m; unused slots
(>= TOPK) hold +inf so they are never the worst. A key tile's candidates are merged by
repeatedly taking each row's best remaining candidate and replacing the row's worst kept
score when the candidate beats it; candidates come out in decreasing order, so the first one
that loses ends that row, and no row needs more than TOPK rounds.

Imported only when the Triton path runs (Triton is optional).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .propagation import window_reach


@triton.jit
def _merge_tile(best_s, best_i, scores, key_index, TOPK: tl.constexpr, TOPK_PAD: tl.constexpr, BLOCK_K: tl.constexpr):
    """Merges scores (Q, BLOCK_K) of keys key_index (BLOCK_K,) into the running top-k."""
    worst = tl.min(best_s, axis=1)
    contenders = tl.sum((scores > worst[:, None]).to(tl.int32), axis=1)
    rounds = tl.minimum(tl.max(contenders, axis=0), TOPK)
    slots = tl.arange(0, TOPK_PAD)
    columns = tl.arange(0, BLOCK_K)
    for _ in range(rounds):
        top = tl.max(scores, axis=1)
        top_column = tl.argmax(scores, axis=1)
        worst = tl.min(best_s, axis=1)
        worst_slot = tl.argmin(best_s, axis=1)
        replace = (slots[None, :] == worst_slot[:, None]) & (top > worst)[:, None]
        top_key = tl.sum(tl.where(columns[None, :] == top_column[:, None], key_index[None, :], 0), axis=1)
        best_s = tl.where(replace, top[:, None], best_s)
        best_i = tl.where(replace, top_key[:, None], best_i)
        scores = tl.where(columns[None, :] == top_column[:, None], float("-inf"), scores)
    return best_s, best_i


@triton.jit
def _propagate_labels_kernel(
    query_ptr, keys_ptr, labels_ptr, out_ptr,
    h, w, frames, channels, classes, global_frames, reach, radius, inv_temperature,
    stride_qn, stride_qc, stride_kt, stride_kn, stride_kc, stride_lt, stride_ln, stride_lk, stride_on,
    QI: tl.constexpr, QJ: tl.constexpr, KI: tl.constexpr, KJ: tl.constexpr, BLOCK_C: tl.constexpr,
    TOPK: tl.constexpr, TOPK_PAD: tl.constexpr, CLASSES_PAD: tl.constexpr,
    SQUARE: tl.constexpr, INPUT_PRECISION: tl.constexpr,
):
    n = h * w
    tiles_w = tl.cdiv(w, QJ)
    qi0 = (tl.program_id(0) // tiles_w) * QI
    qj0 = (tl.program_id(0) % tiles_w) * QJ
    q_lane = tl.arange(0, QI * QJ)
    qi = qi0 + q_lane // QJ
    qj = qj0 + q_lane % QJ
    q_ok = (qi < h) & (qj < w)
    q_cell = qi * w + qj
    k_lane = tl.arange(0, KI * KJ)
    c_lane = tl.arange(0, BLOCK_C)
    slots = tl.arange(0, TOPK_PAD)
    best_s = tl.where(slots[None, :] < TOPK, float("-inf"), float("inf")) + tl.zeros((QI * QJ, TOPK_PAD), tl.float32)
    best_i = tl.zeros((QI * QJ, TOPK_PAD), tl.int32)
    q_last_row = tl.minimum(qi0 + QI, h) - 1
    q_last_col = tl.minimum(qj0 + QJ, w) - 1

    for t in range(frames):
        is_global = t < global_frames
        row_lo = tl.where(is_global, 0, tl.maximum(qi0 - reach, 0))
        row_hi = tl.where(is_global, h - 1, tl.minimum(q_last_row + reach, h - 1))
        for ki0 in range(row_lo, row_hi + 1, KI):
            # Nearest row distance between this key-row group and the query tile, and the
            # widest column offset the window allows at that distance (an upper bound is
            # enough: the exact test is the element-wise mask below).
            gap = tl.maximum(tl.maximum(ki0 - q_last_row, qi0 - (ki0 + KI - 1)), 0).to(tl.float32)
            if SQUARE:
                half = tl.where(gap <= radius, tl.floor(radius), -1.0).to(tl.int32)
            else:
                half = tl.where(gap < radius, tl.floor(tl.sqrt(tl.maximum(radius * radius - gap * gap, 0.0))), -1.0).to(tl.int32)
            half = tl.where(is_global, w, half)
            col_lo = tl.maximum(qj0 - half, 0)
            col_hi = tl.where(half < 0, col_lo - 1, tl.minimum(q_last_col + half, w - 1))
            for kj0 in range(col_lo, col_hi + 1, KJ):
                ki = ki0 + k_lane // KJ
                kj = kj0 + k_lane % KJ
                k_ok = (ki <= row_hi) & (kj <= col_hi)
                k_cell = ki * w + kj
                scores = tl.zeros((QI * QJ, KI * KJ), tl.float32)
                for c0 in range(0, channels, BLOCK_C):
                    c = c0 + c_lane
                    q = tl.load(query_ptr + q_cell[:, None] * stride_qn + c[None, :] * stride_qc,
                                mask=q_ok[:, None] & (c[None, :] < channels), other=0.0)
                    k = tl.load(keys_ptr + t * stride_kt + k_cell[None, :] * stride_kn + c[:, None] * stride_kc,
                                mask=k_ok[None, :] & (c[:, None] < channels), other=0.0)
                    scores = tl.dot(q, k, scores, input_precision=INPUT_PRECISION)
                di = (qi[:, None] - ki[None, :]).to(tl.float32)
                dj = (qj[:, None] - kj[None, :]).to(tl.float32)
                if SQUARE:
                    near = (tl.abs(di) <= radius) & (tl.abs(dj) <= radius)
                else:
                    near = di * di + dj * dj < radius * radius
                allowed = q_ok[:, None] & k_ok[None, :] & (near | is_global)
                scores = tl.where(allowed, scores, float("-inf"))
                best_s, best_i = _merge_tile(best_s, best_i, scores, t * n + k_cell, TOPK, TOPK_PAD, KI * KJ)

    # Softmax over the kept scores; picks that stayed -inf (fewer allowed keys than topk) get 0.
    kept = tl.where(slots[None, :] < TOPK, best_s, float("-inf"))
    top = tl.max(kept, axis=1)
    top = tl.where(top == float("-inf"), 0.0, top)  # padding query lanes: no key at all
    weights = tl.exp((kept - top[:, None]) * inv_temperature)
    total = tl.sum(weights, axis=1)
    weights = weights / tl.where(total > 0, total, 1.0)[:, None]
    class_lane = tl.arange(0, CLASSES_PAD)
    class_ok = class_lane < classes
    out = tl.zeros((QI * QJ, CLASSES_PAD), tl.float32)
    for slot in range(TOPK):
        weight = tl.sum(tl.where(slots[None, :] == slot, weights, 0.0), axis=1)
        key = tl.sum(tl.where(slots[None, :] == slot, best_i, 0), axis=1)
        label = tl.load(labels_ptr + ((key // n) * stride_lt + (key % n) * stride_ln)[:, None]
                        + class_lane[None, :] * stride_lk, mask=q_ok[:, None] & class_ok[None, :], other=0.0)
        out += weight[:, None] * label.to(tl.float32)
    tl.store(out_ptr + q_cell[:, None] * stride_on + class_lane[None, :], out, mask=q_ok[:, None] & class_ok[None, :])


# Query tiles (rows, cols), largest first: a larger tile re-reads each key tile for more queries,
# a smaller one gives more programs. One program per tile and no split over frames, so small
# grids (ViT-S/16 DAVIS: 30x55) need small tiles to fill the GPU.
QUERY_TILES = ((8, 8), (4, 8), (4, 4))
KEY_TILE = (4, 16)  # 64 key cells: 4 grid rows, 16 columns (a window row is ~2 * radius wide)


def _query_tile(h: int, w: int, device: torch.device) -> tuple[int, int]:
    """The largest query tile that still gives one program per streaming multiprocessor."""
    if device.type != "cuda":  # the interpreter: fewest programs is fastest
        return QUERY_TILES[0]
    processors = torch.cuda.get_device_properties(device).multi_processor_count
    for rows, cols in QUERY_TILES:
        if triton.cdiv(h, rows) * triton.cdiv(w, cols) >= processors:
            return rows, cols
    return QUERY_TILES[-1]


def propagate_labels_triton(query, keys, labels, *, grid, topk, temperature, radius, window, global_frames, allow_tf32,
                            query_tile=None):
    """Launcher; inputs already checked (kernels/propagation.py). Returns (N, K) float32.

    query_tile: (rows, cols) of the query tile, one of QUERY_TILES; None picks by grid size.
    """
    h, w = grid
    frames, n, channels = keys.shape
    classes = labels.shape[-1]
    if radius is None:  # every frame searched everywhere
        global_frames, radius, reach = frames, float(h + w), h
    else:
        reach = window_reach(radius, window)
    out = torch.empty(n, classes, dtype=torch.float32, device=query.device)
    qi, qj = query_tile or _query_tile(h, w, query.device)
    ki, kj = KEY_TILE
    block_c = max(16, min(64, triton.next_power_of_2(channels)))
    _propagate_labels_kernel[(triton.cdiv(h, qi) * triton.cdiv(w, qj),)](
        query, keys, labels, out,
        h, w, frames, channels, classes, global_frames, reach, float(radius), 1.0 / temperature,
        *query.stride(), *keys.stride(), *labels.stride(), out.stride(0),
        QI=qi, QJ=qj, KI=ki, KJ=kj, BLOCK_C=block_c,
        TOPK=topk, TOPK_PAD=max(2, triton.next_power_of_2(topk)), CLASSES_PAD=max(2, triton.next_power_of_2(classes)),
        SQUARE=window == "square", INPUT_PRECISION="tf32" if allow_tf32 else "ieee",
        # 8 warps for the 64 x 64 score tile: with 4, ptxas (sm_90) spills at 255 registers.
        num_warps=8 if qi * qj * ki * kj >= 4096 else 4,
    )
    return out
