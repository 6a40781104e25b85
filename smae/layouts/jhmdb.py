"""JHMDB (CRW / UVC label propagation; ajabri/videowalk reads it so):

    Rename_Images/<class>/<video>/00001.png          frames, 1-based names
    joint_positions/<class>/<video>/joint_positions.mat
        pos_img: (2, 15, T) float64, (x, y) in MATLAB's 1-based pixel convention (the centre of
        the top-left pixel is (1, 1)); CRW's loader subtracts 1.
    splits/<class>_test_split1.txt     "<video>.avi 2" per line (2 = test, as in JHMDB)
    jhmdb_<split>list.txt              "<frames folder> <joint_positions.mat>" per line, paths
                                       relative to the root (or absolute)
Results: OUT/<action>/<video>.npy joints (see smae.eval.jhmdb_metrics).
"""
from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image

from smae.errors import UserError

from .images import read_name_list, write_lines

NAME = "JHMDB"


def list_file(root: str | os.PathLike, split: str) -> Path:
    return Path(root) / f"jhmdb_{split}list.txt"


def looks_like(root: Path) -> bool:
    return (root / "joint_positions").is_dir() or any(root.glob("jhmdb_*list.txt"))


def videos(root: str | os.PathLike, split: str) -> list[tuple[Path, Path]]:
    """(frames folder, joint_positions.mat) of each video of a JHMDB split list."""
    root = Path(root)
    path = list_file(root, split)
    found = []
    for line_number, line in enumerate(read_name_list(path), start=1):
        fields = line.split()
        if len(fields) != 2:
            raise ValueError(f"{path}:{line_number}: expected '<frames folder> <joint_positions.mat>', got {line!r}")
        found.append((root / fields[0], root / fields[1]))  # an absolute field replaces root
    return found


def video_key(frames_folder: Path) -> str:
    """Name of a JHMDB video's prediction file: '<action>/<video>' from its frames folder."""
    return f"{frames_folder.parent.name}/{frames_folder.name}"


def read_joints(mat_path: str | os.PathLike) -> np.ndarray:
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


class JhmdbLayout:
    """Writes a JHMDB folder under `root` (smae synth)."""

    def __init__(self, root: Path):
        self.root = root

    def frames_dir(self, action: str, video: str) -> Path:
        return self.root / "Rename_Images" / action / video

    def mat_path(self, action: str, video: str) -> Path:
        return self.root / "joint_positions" / action / video / "joint_positions.mat"

    def write_frame(self, action: str, video: str, index: int, rgb: np.ndarray) -> None:
        folder = self.frames_dir(action, video)
        folder.mkdir(parents=True, exist_ok=True)
        # zlib level 1: 5x faster than the default for ~10% more bytes on textured frames.
        Image.fromarray(rgb).save(folder / f"{index + 1:05d}.png", compress_level=1)

    def write_joints(self, action: str, video: str, joints: np.ndarray) -> None:
        """joints (T, 15, 2) as 0-based (x, y) pixel positions -> pos_img (2, 15, T), 1-based."""
        from scipy.io import savemat  # imported here because only the jhmdb format needs it

        pos_img = np.ascontiguousarray(joints.transpose(2, 1, 0) + 1.0, dtype=np.float64)
        buffer = io.BytesIO()
        savemat(buffer, {"pos_img": pos_img})
        data = bytearray(buffer.getvalue())
        # The 116-byte text header carries a creation time; a fixed text makes the file a
        # function of its content only (same seed -> same bytes).
        data[:116] = b"MATLAB 5.0 MAT-file, written by smae synth".ljust(116)
        path = self.mat_path(action, video)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(bytes(data))

    def write_lists(self, videos: list[tuple[str, str]]) -> None:
        """videos: (action, video) pairs, all in the test split."""
        for action in sorted({a for a, _ in videos}):
            lines = [f"{video}.avi 2" for a, video in videos if a == action]
            write_lines(self.root / "splits" / f"{action}_test_split1.txt", lines)
        lines = [f"{self.frames_dir(a, v).relative_to(self.root)} {self.mat_path(a, v).relative_to(self.root)}"
                 for a, v in videos]
        write_lines(list_file(self.root, "val"), lines)
