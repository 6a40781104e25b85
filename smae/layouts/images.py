"""Reading and writing the images every layout holds: frames, label PNGs, their palettes, and
list files. One reader for every image smae opens (frames of data sets, frame folders, masks):
a file is decoded whole, so a truncated one fails here, naming it.
"""
from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image

from smae.errors import UserError

JPEG_QUALITY = 90


def read_image(path: str | os.PathLike, what: str, convert: str | None = None, modes: tuple[str, ...] | None = None) -> np.ndarray:
    """The pixels of an image file, decoded whole.

    what: the file's role in messages ("label PNG", "frame"); convert: a Pillow mode to convert
    to ("RGB" -> (H, W, 3) uint8); modes: the modes accepted before conversion. Raises
    FileNotFoundError or UserError (also for an image over Pillow's decompression-bomb limit: a
    20000x10000 PNG would take 600 MB).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    try:
        with Image.open(path) as image:
            if modes is not None and image.mode not in modes:
                raise UserError(f"{path}: expected {what} of mode {' or '.join(modes)}, got mode {image.mode}")
            return np.asarray(image.convert(convert) if convert else image)
    except UserError:
        raise
    except Exception as error:  # Pillow raises many types for broken files (OSError, SyntaxError, zlib.error...)
        raise UserError(f"{path}: not a readable {what} ({type(error).__name__}: {error}); "
                        f"replace or re-extract the file") from None


def image_size(path: str | os.PathLike, what: str) -> tuple[int, int]:
    """(H, W) of an image, read from its header only; UserError naming the file if it has none."""
    try:
        with Image.open(path) as image:
            return image.height, image.width
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} not found: {path}") from None
    except Exception as error:
        raise UserError(f"{path}: not a readable {what} ({type(error).__name__}: {error}); "
                        f"replace or re-extract the file") from None


def read_label_png(path: str | os.PathLike) -> np.ndarray:
    """Label map of an indexed ('P') or grey ('L') PNG: the indices, not the colours.
    -> (H, W) uint8, read-only (copy it to modify it)."""
    return read_image(path, "label PNG", modes=("P", "L"))


def read_result_png(annotation_path: Path, results_folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """(ground truth, result) label maps of one frame; the result has the annotation's file name.

    A missing result frame or a size mismatch is an error naming both files.
    """
    gt = read_label_png(annotation_path)
    result_path = Path(results_folder) / annotation_path.name
    if not result_path.is_file():
        raise FileNotFoundError(f"result frame missing: {result_path} (needed for {annotation_path})")
    pred = read_label_png(result_path)
    if pred.shape != gt.shape:
        raise UserError(f"{result_path}: size {pred.shape} differs from the annotation {annotation_path}: {gt.shape}")
    return gt, pred


def davis_palette() -> np.ndarray:
    """The 256-colour palette of DAVIS annotations (the PASCAL VOC colour map) -> (256, 3) uint8.

    Colour of index i: the bits of i, three at a time, spread over the high bits of R, G, B
    (1 -> (128, 0, 0), 2 -> (0, 128, 0), 8 -> (64, 0, 0), 255 -> (224, 224, 192)).
    """
    palette = np.zeros((256, 3), np.uint8)
    for index in range(256):
        bits, colour = index, [0, 0, 0]
        for shift in range(7, -1, -1):
            for channel in range(3):
                colour[channel] |= ((bits >> channel) & 1) << shift
            bits >>= 3
        palette[index] = colour
    return palette


DAVIS_PALETTE = davis_palette()


def read_palette(path: str | os.PathLike) -> np.ndarray:
    """The palette of an indexed PNG as (256, 3) uint8 (missing entries black); the DAVIS palette
    for a grey PNG, so its ids get the colours DAVIS tools show."""
    with Image.open(path) as image:
        colours = image.getpalette() if image.mode == "P" else None
    if not colours:
        return DAVIS_PALETTE
    palette = np.zeros((256, 3), np.uint8)
    entries = np.asarray(colours, np.uint8).reshape(-1, 3)[:256]
    palette[: len(entries)] = entries
    return palette


def write_jpeg(path: Path, rgb: np.ndarray) -> None:
    Image.fromarray(rgb).save(path, quality=JPEG_QUALITY)


def write_indexed_png(path: Path, labels: np.ndarray, palette: np.ndarray = DAVIS_PALETTE) -> None:
    """labels (H, W) uint8 -> a "P" PNG carrying `palette` (256, 3)."""
    height, width = labels.shape
    image = Image.frombytes("P", (width, height), np.ascontiguousarray(labels, np.uint8).tobytes())
    image.putpalette(palette.astype(np.uint8).ravel().tolist())
    image.save(path)


def annotation_pngs(folder: Path) -> list[Path]:
    """The PNGs of one video's annotation folder, in name (frame) order; at least one."""
    paths = sorted(folder.glob("*.png"))
    if not paths:
        raise FileNotFoundError(f"no annotation PNGs in {folder}")
    return paths


def read_name_list(path: Path) -> list[str]:
    """Non-empty stripped lines of a list file."""
    if not path.is_file():
        raise FileNotFoundError(f"list file not found: {path}")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def write_lines(path: Path, lines: Iterable[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in lines))
