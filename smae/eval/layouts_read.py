"""Readers for the on-disk layouts of the evaluation data sets (written by smae.data.layouts).

DAVIS-2017:  ROOT/ImageSets/2017/<split>.txt (one sequence per line),
             ROOT/Annotations/480p/<seq>/<frame>.png (indexed PNG: 0 background, 1..K objects,
             255 void).
JHMDB (as ajabri/videowalk reads it):
             ROOT/jhmdb_<split>list.txt, one video per line: "<frames folder> <joint_positions.mat>",
             paths relative to ROOT (or absolute); frames folders are <action>/<video>; the .mat
             holds `pos_img` (2, 15, T): x, y of 15 joints in 1-based pixel coordinates.
VIP (as videowalk reads it):
             ROOT/lists/<split>_videos.txt names the videos, one per line;
             ROOT/Annotations/Category_ids/<video>/<frame>.png holds class ids 0..19.
Predictions mirror the annotation folders: DIR/<seq or video>/<frame>.png for DAVIS and VIP;
for JHMDB, DIR/<action>/<video>.npz (see smae.eval.jhmdb_metrics).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from smae.errors import UserError

DAVIS_RESOLUTION = "480p"
VIP_ANNOTATIONS = Path("Annotations") / "Category_ids"


def read_image(path: str | os.PathLike, what: str, convert: str | None = None, modes: tuple[str, ...] | None = None) -> np.ndarray:
    """The pixels of an image file, decoded whole (so a truncated file fails here, naming it).

    what: the file's role in messages ("label PNG", "frame"); convert: a Pillow mode to convert
    to; modes: the modes accepted before conversion. Raises FileNotFoundError or UserError.
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


def read_name_list(path: Path) -> list[str]:
    """Non-empty stripped lines of a list file."""
    if not path.is_file():
        raise FileNotFoundError(f"list file not found: {path}")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def davis_sequences(root: str | os.PathLike, split: str) -> list[str]:
    """Sequence names of a DAVIS-2017 split, in list-file order."""
    return read_name_list(Path(root) / "ImageSets" / "2017" / f"{split}.txt")


def davis_annotation_paths(root: str | os.PathLike, sequence: str) -> list[Path]:
    """Sorted annotation PNGs of one sequence (every frame of a train/val sequence is annotated)."""
    folder = Path(root) / "Annotations" / DAVIS_RESOLUTION / sequence
    paths = sorted(folder.glob("*.png"))
    if not paths:
        raise FileNotFoundError(f"no annotation PNGs in {folder}")
    return paths


def vip_videos(root: str | os.PathLike, split: str) -> list[str]:
    """Video names of a VIP split, in list-file order."""
    return read_name_list(Path(root) / "lists" / f"{split}_videos.txt")


def vip_annotation_paths(root: str | os.PathLike, video: str) -> list[Path]:
    """Sorted category-id PNGs of one VIP video."""
    folder = Path(root) / VIP_ANNOTATIONS / video
    paths = sorted(folder.glob("*.png"))
    if not paths:
        raise FileNotFoundError(f"no annotation PNGs in {folder}")
    return paths


def jhmdb_videos(root: str | os.PathLike, split: str) -> list[tuple[Path, Path]]:
    """(frames folder, joint_positions.mat) of each video of a JHMDB split list."""
    root = Path(root)
    list_path = root / f"jhmdb_{split}list.txt"
    videos = []
    for line_number, line in enumerate(read_name_list(list_path), start=1):
        fields = line.split()
        if len(fields) != 2:
            raise ValueError(f"{list_path}:{line_number}: expected '<frames folder> <joint_positions.mat>', got {line!r}")
        videos.append((root / fields[0], root / fields[1]))  # an absolute field replaces root
    return videos


def jhmdb_video_key(frames_folder: Path) -> str:
    """Name of a JHMDB video's prediction file: '<action>/<video>' from its frames folder."""
    return f"{frames_folder.parent.name}/{frames_folder.name}"


def read_jhmdb_joints(mat_path: str | os.PathLike) -> np.ndarray:
    """Ground-truth joints of one video in 0-based pixel coordinates. -> (T, 15, 2) float64, (x, y)."""
    from scipy.io import loadmat  # MATLAB v5 reader; imported here because only JHMDB needs it

    mat_path = Path(mat_path)
    if not mat_path.is_file():
        raise FileNotFoundError(f"JHMDB joint file not found: {mat_path}")
    try:
        positions = loadmat(str(mat_path)).get("pos_img")
    except Exception as error:  # scipy raises many types for broken files (ValueError, MatReadError, TypeError...)
        raise UserError(f"{mat_path}: not a readable MATLAB file ({type(error).__name__}: {error}); "
                        f"replace or re-extract the file") from None
    if positions is None or np.ndim(positions) != 3 or np.shape(positions)[0] != 2:
        raise UserError(f"{mat_path}: expected 'pos_img' of shape (2, joints, frames)")
    try:
        positions = np.asarray(positions, dtype=np.float64) - 1.0  # MATLAB coordinates are 1-based
    except (TypeError, ValueError):
        raise UserError(f"{mat_path}: 'pos_img' is not numeric") from None
    return np.ascontiguousarray(positions.transpose(2, 1, 0))
