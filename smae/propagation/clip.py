"""One clip with a mask, into a results folder: what `smae propagate --video` writes.

    OUT/<clip>/<frame>.png        one indexed PNG per frame, with the mask's palette
    OUT/overlays/<clip>/          with overlays: pictures and overlay.mp4 at the clip's frame rate
    OUT/propagate.json            the settings used
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

from smae.atomic import write_json_atomic

from .engine import FramePrediction
from .frames import FrameSequence
from .outputs import VideoOutput, clear_staging, is_done
from .pipeline import RUN_FILE, check_resumable
from .videos import Video

CLIP_TASK = "clip"


def clip_name(frames: FrameSequence) -> str:
    """The results sub-folder of a clip: the video file's or frame folder's name."""
    path = Path(frames.where)
    return path.stem if path.suffix else path.name


def write_clip(out_dir: Path, frames: FrameSequence, mask_path: Path, predictions: Iterable[FramePrediction],
               settings: dict, overlays: bool, resume: bool) -> Path | None:
    """Writes the clip's masks (and overlays) into out_dir; returns the masks' folder, or None
    when `resume` finds them done. settings: recorded in out_dir/propagate.json."""
    video = Video(clip_name(frames), (), "segmentation", Path(mask_path))
    check_resumable(out_dir, settings, resume, is_done(out_dir, video, CLIP_TASK))
    out_dir.mkdir(parents=True, exist_ok=True)
    if resume and is_done(out_dir, video, CLIP_TASK):
        return None
    clear_staging(out_dir)
    write_json_atomic(out_dir / RUN_FILE, settings)
    with VideoOutput(out_dir, video, CLIP_TASK, overlays, fps=frames.fps or 30) as output:
        output.write_all(predictions)
    return out_dir / video.name
