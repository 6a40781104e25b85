"""Fused Triton kernels of `propagate_labels` (see kernels/propagation.py for the math).

Two launches, in flash-decoding's pattern (split the key walk over programs, merge after):

1. `_candidates_kernel`, grid (query tiles, splits). A program loads its QI x QJ tile of query
   cells once, for the whole walk (C as two power-of-two parts C_HI + C_LO, so 384 = 256 + 128
   needs no padding), and walks its share of the tile's work list: (frame, KI x KJ key tile)
   pairs, every key tile of a global frame, then the key tiles of each local frame's window box
   (those wholly outside the window skipped). Each pair's scores are one or two `tl.dot`s on
   tensor cores (fp16 / bf16 operands, fp32 accumulation), masked by the window and merged into
   the program's running best CAND = next_pow2(topk + margin) per query. Only these lists,
   (splits, N, CAND) scores and key indices t * N + m, are written: the affinity never reaches
   global memory.
2. `_rescore_kernel`, grid (query blocks): merges a query's split lists by fast score (best
   CAND), re-scores those CAND keys in fp32 from the caller's features, keeps the best `topk`
   by that score, and does the softmax and the gather-and-sum of the chosen keys' labels.

Exactness: the output equals the fp32 reference's whenever each query's true top-k is among its
CAND best fast scores. fp16 / bf16 features are used as given, so both scores are exact products
of the same numbers. fp32 features are rounded once to fp16 after an exact power-of-two scaling
(ranking is scale-free; fp16 keeps 11 significant bits, as TF32 does): a true top-k key can only
drop out if more than `margin` other keys sit within ~2 * 2^-11 * |q| |k| of the k-th score, and
then they are near-ties whose swap moves the output by about their weight difference.

Tiles, splits and warps come from `propagation_plan.plan_propagation` for the GPU in hand
(docs/kernels.md says how they are chosen per target).

Loops over run-time bounds are `while` loops: Triton 3.6's interpreter cannot run `range()`
over a run-time integer under NumPy >= 2.4 (it converts a 1-element array to a Python int).

Imported only when the Triton path runs (Triton is optional).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .backend import interpreter_enabled
from .gpus import device_gpu
from .propagation_plan import KEY_TILE, channel_parts, plan_propagation, window_reach


@triton.jit
def _merge_tile(best_s, best_i, scores, key_index, CAND: tl.constexpr, BLOCK_K: tl.constexpr):
    """Merges scores (Q, BLOCK_K) of keys key_index (BLOCK_K,) into the running best (Q, CAND).

    Each round takes every row's best remaining candidate and puts it in place of the row's
    worst kept score when it beats it. Candidates come out in decreasing order, so a row is done
    at its first loser; only as many rounds run as the row with the most contenders needs (few,
    once the kept scores are high). A bitonic `tl.sort` of kept + tile would do it in one pass on
    a GPU, but the interpreter runs its network op by op, ~100x slower than these rounds.
    """
    worst = tl.min(best_s, axis=1)
    rounds = tl.max(tl.sum((scores > worst[:, None]).to(tl.int32), axis=1), axis=0)
    slots = tl.arange(0, CAND)
    columns = tl.arange(0, BLOCK_K)
    done = 0
    while done < rounds:
        top = tl.max(scores, axis=1)
        top_column = tl.argmax(scores, axis=1)
        worst = tl.min(best_s, axis=1)
        worst_slot = tl.argmin(best_s, axis=1)
        replace = (slots[None, :] == worst_slot[:, None]) & (top > worst)[:, None]
        picked = columns[None, :] == top_column[:, None]
        top_key = tl.sum(tl.where(picked, key_index[None, :], 0), axis=1)
        best_s = tl.where(replace, top[:, None], best_s)
        best_i = tl.where(replace, top_key[:, None], best_i)
        scores = tl.where(picked, float("-inf"), scores)
        done += 1
    return best_s, best_i


@triton.jit
def _candidates_kernel(
    query_ptr, keys_ptr, cand_score_ptr, cand_index_ptr,
    h, w, frames, channels, global_frames, reach, radius, splits,
    stride_qn, stride_kt, stride_kn,
    QI: tl.constexpr, QJ: tl.constexpr, KI: tl.constexpr, KJ: tl.constexpr,
    C_HI: tl.constexpr, C_LO: tl.constexpr, CAND: tl.constexpr, SQUARE: tl.constexpr,
):
    """query (N, C) and keys (T, N, C) fp16 / bf16 with unit channel stride
    -> cand_score, cand_index (splits, N, CAND) fp32 / int32: this split's best fast scores."""
    n = h * w
    tiles_w = tl.cdiv(w, QJ)
    qi0 = (tl.program_id(0) // tiles_w) * QI
    qj0 = (tl.program_id(0) % tiles_w) * QJ
    q_lane = tl.arange(0, QI * QJ)
    qi = qi0 + q_lane // QJ
    qj = qj0 + q_lane % QJ
    q_ok = (qi < h) & (qj < w)
    q_cell = qi * w + qj
    q_last_row = tl.minimum(qi0 + QI, h) - 1
    q_last_col = tl.minimum(qj0 + QJ, w) - 1
    c_hi = tl.arange(0, C_HI)
    c_lo = C_HI + tl.arange(0, C_LO + 16 * (C_LO == 0))  # C_LO = 0: 16 lanes, all masked, never used
    # The query tile stays resident for the whole walk.
    q_hi = tl.load(query_ptr + q_cell[:, None] * stride_qn + c_hi[None, :],
                   mask=q_ok[:, None] & (c_hi[None, :] < channels), other=0.0)
    q_lo = tl.load(query_ptr + q_cell[:, None] * stride_qn + c_lo[None, :],
                   mask=q_ok[:, None] & (c_lo[None, :] < channels), other=0.0)

    # Work list: global frames over the whole grid, then local frames over the window box.
    row_lo = tl.maximum(qi0 - reach, 0)
    row_hi = tl.minimum(q_last_row + reach, h - 1)
    col_lo = tl.maximum(qj0 - reach, 0)
    col_hi = tl.minimum(q_last_col + reach, w - 1)
    grid_cols = tl.cdiv(w, KJ)
    grid_tiles = tl.cdiv(h, KI) * grid_cols
    box_cols = tl.cdiv(col_hi - col_lo + 1, KJ)
    box_tiles = tl.cdiv(row_hi - row_lo + 1, KI) * box_cols
    global_units = global_frames * grid_tiles
    units = global_units + (frames - global_frames) * box_tiles
    share = tl.cdiv(units, splits)
    unit = tl.program_id(1) * share
    last_unit = tl.minimum(unit + share, units)

    k_lane = tl.arange(0, KI * KJ)
    best_s = tl.full((QI * QJ, CAND), float("-inf"), tl.float32)
    best_i = tl.zeros((QI * QJ, CAND), tl.int32)
    while unit < last_unit:
        is_global = unit < global_units
        local = unit - global_units
        t = tl.where(is_global, unit // grid_tiles, global_frames + local // box_tiles)
        tile = tl.where(is_global, unit % grid_tiles, local % box_tiles)
        cols = tl.where(is_global, grid_cols, box_cols)
        ki0 = tl.where(is_global, 0, row_lo) + (tile // cols) * KI
        kj0 = tl.where(is_global, 0, col_lo) + (tile % cols) * KJ
        last_row = tl.where(is_global, h - 1, row_hi)
        last_col = tl.where(is_global, w - 1, col_hi)
        # Nearest offsets between the key tile and the query tile: a local tile none of whose
        # cells any query may reach is skipped (the disk's corners); the exact test is the mask.
        gap_r = tl.maximum(tl.maximum(ki0 - q_last_row, qi0 - (ki0 + KI - 1)), 0).to(tl.float32)
        gap_c = tl.maximum(tl.maximum(kj0 - q_last_col, qj0 - (kj0 + KJ - 1)), 0).to(tl.float32)
        if SQUARE:
            reachable = (gap_r <= radius) & (gap_c <= radius)
        else:
            reachable = gap_r * gap_r + gap_c * gap_c < radius * radius
        if is_global | reachable:
            ki = ki0 + k_lane // KJ
            kj = kj0 + k_lane % KJ
            k_ok = (ki <= last_row) & (kj <= last_col)
            k_cell = ki * w + kj
            k_row = keys_ptr + t * stride_kt + k_cell * stride_kn
            k_hi = tl.load(k_row[None, :] + c_hi[:, None], mask=k_ok[None, :] & (c_hi[:, None] < channels), other=0.0)
            scores = tl.dot(q_hi, k_hi)  # (Q, KI * KJ) fp32
            if C_LO > 0:
                k_lo = tl.load(k_row[None, :] + c_lo[:, None], mask=k_ok[None, :] & (c_lo[:, None] < channels), other=0.0)
                scores = tl.dot(q_lo, k_lo, scores)
            di = (qi[:, None] - ki[None, :]).to(tl.float32)
            dj = (qj[:, None] - kj[None, :]).to(tl.float32)
            if SQUARE:
                near = (tl.abs(di) <= radius) & (tl.abs(dj) <= radius)
            else:
                near = di * di + dj * dj < radius * radius
            allowed = q_ok[:, None] & k_ok[None, :] & (near | is_global)
            scores = tl.where(allowed, scores, float("-inf"))
            best_s, best_i = _merge_tile(best_s, best_i, scores, t * n + k_cell, CAND, KI * KJ)
        unit += 1

    slot = tl.arange(0, CAND)
    out = (tl.program_id(1) * n + q_cell)[:, None] * CAND + slot[None, :]
    tl.store(cand_score_ptr + out, best_s, mask=q_ok[:, None])
    tl.store(cand_index_ptr + out, best_i, mask=q_ok[:, None])


@triton.jit
def _rescore_kernel(
    query_ptr, keys_ptr, labels_ptr, cand_score_ptr, cand_index_ptr, out_ptr,
    n, channels, classes, splits, inv_temperature,
    stride_qn, stride_qc, stride_kt, stride_kn, stride_kc, stride_lt, stride_ln, stride_lk, stride_on,
    BLOCK_Q: tl.constexpr, CAND: tl.constexpr, SPLITS_PAD: tl.constexpr, TOPK: tl.constexpr,
    BLOCK_C: tl.constexpr, CLASSES_PAD: tl.constexpr,
):
    """cand_score, cand_index (splits, N, CAND), query (N, C), keys (T, N, C), labels (T, N, K)
    -> out (N, K) fp32."""
    query = tl.program_id(0) * BLOCK_Q + tl.arange(0, BLOCK_Q)
    q_ok = query < n
    # This query's lists from every split, side by side: (BLOCK_Q, SPLITS_PAD * CAND).
    lane = tl.arange(0, SPLITS_PAD * CAND)
    listed = (lane // CAND) * n * CAND + lane % CAND
    in_split = q_ok[:, None] & (lane // CAND < splits)[None, :]
    all_s = tl.load(cand_score_ptr + query[:, None] * CAND + listed[None, :], mask=in_split, other=float("-inf"))
    all_i = tl.load(cand_index_ptr + query[:, None] * CAND + listed[None, :], mask=in_split, other=0)

    # Best CAND of the union by fast score (a split's list is already its best CAND).
    slot = tl.arange(0, CAND)
    if SPLITS_PAD == 1:
        fast_s, fast_i = all_s, all_i
    else:
        fast_s = tl.full((BLOCK_Q, CAND), float("-inf"), tl.float32)
        fast_i = tl.zeros((BLOCK_Q, CAND), tl.int32)
        for r in range(CAND):
            top = tl.max(all_s, axis=1)
            picked = lane[None, :] == tl.argmax(all_s, axis=1)[:, None]
            fast_s = tl.where(slot[None, :] == r, top[:, None], fast_s)
            fast_i = tl.where(slot[None, :] == r, tl.sum(tl.where(picked, all_i, 0), axis=1)[:, None], fast_i)
            all_s = tl.where(picked, float("-inf"), all_s)

    # Re-score those keys in fp32 from the caller's features.
    real = fast_s > float("-inf")  # slots with no allowed key stay out
    key_row = (fast_i // n) * stride_kt + (fast_i % n) * stride_kn  # (BLOCK_Q, CAND)
    exact = tl.zeros((BLOCK_Q, CAND), tl.float32)
    c0 = 0
    while c0 < channels:
        c = c0 + tl.arange(0, BLOCK_C)
        c_ok = c < channels
        q = tl.load(query_ptr + query[:, None] * stride_qn + c[None, :] * stride_qc, mask=q_ok[:, None] & c_ok[None, :], other=0.0)
        k = tl.load(keys_ptr + key_row[:, :, None] + c[None, None, :] * stride_kc,
                    mask=real[:, :, None] & c_ok[None, None, :], other=0.0)
        exact += tl.sum(q.to(tl.float32)[:, None, :] * k.to(tl.float32), axis=2)
        c0 += BLOCK_C
    exact = tl.where(real, exact, float("-inf"))

    # The best TOPK by the fp32 score: softmax weights and their labels, best first.
    top = tl.max(exact, axis=1)
    top = tl.where(top == float("-inf"), 0.0, top)  # padding query lanes: no key at all
    class_lane = tl.arange(0, CLASSES_PAD)
    class_ok = class_lane < classes
    out = tl.zeros((BLOCK_Q, CLASSES_PAD), tl.float32)
    total = tl.zeros((BLOCK_Q,), tl.float32)
    for r in range(TOPK):
        score = tl.max(exact, axis=1)
        picked = slot[None, :] == tl.argmax(exact, axis=1)[:, None]
        key = tl.sum(tl.where(picked, fast_i, 0), axis=1)
        weight = tl.where(score > float("-inf"), tl.exp((score - top) * inv_temperature), 0.0)  # fewer keys than topk
        label = tl.load(labels_ptr + ((key // n) * stride_lt + (key % n) * stride_ln)[:, None] + class_lane[None, :] * stride_lk,
                        mask=(q_ok & (weight > 0))[:, None] & class_ok[None, :], other=0.0)
        out += weight[:, None] * label.to(tl.float32)
        total += weight
        exact = tl.where(picked, float("-inf"), exact)
    out = out / tl.where(total > 0, total, 1.0)[:, None]
    tl.store(out_ptr + query[:, None] * stride_on + class_lane[None, :], out, mask=q_ok[:, None] & class_ok[None, :])


INTERPRETER_BLOCK_Q = 64  # the interpreter pays per op, not per element: fewest programs is fastest
RESCORE_CHANNELS = 16


def fast_features(features: torch.Tensor) -> torch.Tensor:
    """The tensor-core operand, contiguous: fp16 / bf16 as given, fp32 scaled by a power
    of two (exact, and no reordering: every score of a query scales alike) so that max|x| is in
    [0.5, 1), then rounded to fp16 (11 significant bits)."""
    if features.dtype != torch.float32:
        return features.contiguous()
    exponent = torch.frexp(features.abs().amax()).exponent
    return torch.ldexp(features, -exponent).to(torch.float16).contiguous()


def propagate_labels_triton(query, keys, labels, *, grid, topk, temperature, radius, window, global_frames,
                            splits=None, query_tile=None):
    """Launcher; inputs already checked (kernels/propagation.py). Returns (N, K) float32.

    The launch follows `plan_propagation` for the device in hand (the interpreter: one program
    per query tile); `splits` and `query_tile` override the plan (tests cover every tile and
    uneven splits on the CPU).
    """
    h, w = grid
    frames, n, channels = keys.shape
    classes = labels.shape[-1]
    if radius is None:  # every frame searched everywhere
        global_frames, radius, reach = frames, float(h + w), max(h, w)
    else:
        reach = window_reach(radius, window)
    global_frames = min(global_frames, frames)
    plan = plan_propagation(device_gpu(query.device), grid, frames, global_frames, reach, channels, topk)
    splits = splits or plan.splits
    qi, qj = query_tile or plan.query_tile
    cand = plan.candidates
    c_hi, c_lo = channel_parts(channels)
    fast_query, fast_keys = fast_features(query), fast_features(keys)
    cand_score = torch.empty(splits, n, cand, dtype=torch.float32, device=query.device)
    cand_index = torch.empty(splits, n, cand, dtype=torch.int32, device=query.device)
    _candidates_kernel[(triton.cdiv(h, qi) * triton.cdiv(w, qj), splits)](
        fast_query, fast_keys, cand_score, cand_index,
        h, w, frames, channels, global_frames, reach, float(radius), splits,
        fast_query.stride(0), fast_keys.stride(0), fast_keys.stride(1),
        QI=qi, QJ=qj, KI=KEY_TILE[0], KJ=KEY_TILE[1],
        C_HI=c_hi, C_LO=c_lo, CAND=cand, SQUARE=window == "square",
        num_warps=plan.candidates_warps,
    )
    out = torch.empty(n, classes, dtype=torch.float32, device=query.device)
    block_q = INTERPRETER_BLOCK_Q if interpreter_enabled() else plan.rescore_queries
    _rescore_kernel[(triton.cdiv(n, block_q),)](
        query, keys, labels, cand_score, cand_index, out,
        n, channels, classes, splits, 1.0 / temperature,
        *query.stride(), *keys.stride(), *labels.stride(), out.stride(0),
        BLOCK_Q=block_q, CAND=cand, SPLITS_PAD=triton.next_power_of_2(splits), TOPK=topk,
        BLOCK_C=RESCORE_CHANNELS, CLASSES_PAD=max(2, triton.next_power_of_2(classes)),
        num_warps=4,
    )
    return out
