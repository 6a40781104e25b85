"""Binary maps packed 64 pixels to a word, for fast boundary extraction and disk dilation.

A map (..., H, W) of bools becomes (..., H, ceil(W / 64)) little-endian uint64 words: pixel x of a
row is bit x % 64 of word x // 64. Bits past the last column stay zero, which is what the
boundary rule and cv2's dilation assume beyond the image. A vertical shift is a row slice; a
horizontal shift moves bits across neighbouring words. One NumPy call then touches 64 pixels per
element, so a whole frame (all objects at once) costs a few microseconds per operation.
"""
from __future__ import annotations

import functools
import math

import numpy as np

WORD_BITS = 64
_WORD = np.dtype("<u8")
_BYTE_POPCOUNT = np.array([bin(value).count("1") for value in range(256)], dtype=np.uint8)


def popcount_by_table(words: np.ndarray) -> np.ndarray:
    """Set bits per word through a byte table: np.bitwise_count for NumPy < 2.0. Same shape, uint8."""
    as_bytes = np.ascontiguousarray(words, dtype=_WORD).view(np.uint8)
    return _BYTE_POPCOUNT[as_bytes].reshape(*np.shape(words), 8).sum(axis=-1, dtype=np.uint8)


_popcount = getattr(np, "bitwise_count", popcount_by_table)


def _pad_columns(array: np.ndarray) -> np.ndarray:
    """Zero columns appended up to a whole number of words (the array itself if already whole)."""
    width = array.shape[-1]
    padded_width = max(math.ceil(width / WORD_BITS), 1) * WORD_BITS
    if padded_width == width:
        return array
    padded = np.zeros((*array.shape[:-1], padded_width), dtype=array.dtype)
    padded[..., :width] = array
    return padded


def pack(maps: np.ndarray) -> np.ndarray:
    """(..., H, W) bool -> (..., H, ceil(W / 64)) uint64, bits past column W - 1 zero."""
    padded = _pad_columns(np.asarray(maps, dtype=bool))
    return np.packbits(padded, axis=-1, bitorder="little").view(_WORD)


def pack_label_masks(labels: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Packed masks labels == id for each id (ids nonzero: the padding is 0). (..., H, W), (K,) -> (..., K, H, n_words)."""
    padded = _pad_columns(np.asarray(labels))  # padding the labels is K times cheaper than the masks
    return pack(padded[..., None, :, :] == np.asarray(ids).reshape(-1, 1, 1))


def unpack(words: np.ndarray, width: int) -> np.ndarray:
    """Inverse of pack(). (..., H, n_words) uint64 -> (..., H, width) bool."""
    bits = np.unpackbits(np.ascontiguousarray(words, dtype=_WORD).view(np.uint8), axis=-1, bitorder="little")
    return bits[..., :width].astype(bool)


def popcount(words: np.ndarray, axis=(-2, -1)) -> np.ndarray:
    """Number of set pixels, summed over `axis`. int64."""
    return _popcount(words).sum(axis=axis, dtype=np.int64)


@functools.lru_cache(maxsize=16)
def _all_but_last_column(width: int) -> np.ndarray:
    """(n_words,) uint64 with the bits of columns 0..W-2 set. Read-only."""
    selected = np.ones(width, dtype=bool)
    selected[-1] = False
    mask = pack(selected)
    mask.flags.writeable = False
    return mask


def or_shifted(target: np.ndarray, words: np.ndarray, offset: int) -> None:
    """target(x) |= words(x + offset) along each row, in place; bits from outside `words` are 0.

    offset > 0 brings the eastern neighbour in, offset < 0 the western one. (..., n_words) uint64.
    """
    n_words = words.shape[-1]
    whole, bits = divmod(abs(offset), WORD_BITS)
    if whole >= n_words:
        return
    kept = n_words - whole
    if offset >= 0:  # word j <- low bits from word j + whole, the rest from word j + whole + 1
        target[..., :kept] |= words[..., whole:] >> np.uint64(bits)
        if bits:
            target[..., : kept - 1] |= words[..., whole + 1 :] << np.uint64(WORD_BITS - bits)
    else:  # mirrored: word j <- words j - whole and j - whole - 1
        target[..., whole:] |= words[..., :kept] << np.uint64(bits)
        if bits:
            target[..., whole + 1 :] |= words[..., : kept - 1] >> np.uint64(WORD_BITS - bits)


def shift_columns(words: np.ndarray, offset: int) -> np.ndarray:
    """out(x) = words(x + offset) along each row, zero where x + offset is outside the words."""
    out = np.zeros_like(words)
    or_shifted(out, words, offset)
    return out


def occupied_box(words: np.ndarray) -> tuple[slice, slice] | None:
    """(rows, word columns) slices holding every set bit of (..., H, n_words), None if none is set."""
    rows = np.flatnonzero(words.any(axis=tuple(range(words.ndim - 2)) + (-1,)))
    if rows.size == 0:
        return None
    columns = np.flatnonzero(words.any(axis=tuple(range(words.ndim - 1))))
    return slice(int(rows[0]), int(rows[-1]) + 1), slice(int(columns[0]), int(columns[-1]) + 1)


def boundaries(seg: np.ndarray, width: int) -> np.ndarray:
    """seg2bmap on packed masks: a pixel differs from its east, south or south-east neighbour;
    the last row uses only the east neighbour, the last column only the south one, the
    bottom-right pixel is never a boundary. (..., H, n_words) -> same."""
    not_last_column = _all_but_last_column(width)
    east = shift_columns(seg, 1)
    out = (seg ^ east) & not_last_column
    out[..., :-1, :] |= seg[..., :-1, :] ^ seg[..., 1:, :]
    out[..., :-1, :] |= (seg[..., :-1, :] ^ east[..., 1:, :]) & not_last_column
    return out


def dilate_disk(words: np.ndarray, radius: int) -> np.ndarray:
    """Dilation by the disk x^2 + y^2 <= radius^2, nothing outside the map (cv2.dilate with the
    skimage disk). The disk is a stack of horizontal segments, row dy of half-width
    isqrt(r^2 - dy^2): the map is widened one column at a time (always shifting the input map,
    so nothing depends on bits past the image) and each widening is ORed in at the rows +-dy
    whose segment has that half-width.

    words: (..., H, n_words) uint64 with zero padding bits. Padding bits of the result may be set;
    AND it with a zero-padded map before counting.
    """
    half_widths = [math.isqrt(radius * radius - dy * dy) for dy in range(radius + 1)]
    out = np.zeros_like(words)
    grown = words.copy()
    for width in range(radius + 1):
        if width > 0:
            or_shifted(grown, words, width)
            or_shifted(grown, words, -width)
        for dy, half_width in enumerate(half_widths):
            if half_width != width:
                continue
            if dy == 0:
                out |= grown
            else:
                out[..., dy:, :] |= grown[..., :-dy, :]
                out[..., :-dy, :] |= grown[..., dy:, :]
    return out
