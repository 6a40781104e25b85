"""Label-propagation protocols: frozen dataclasses and named presets.

Three protocol families, each reproducing a published evaluation script down to its output
PNGs (every resize calls the library the script calls: cv2 or PIL, see smae.propagation.labels):
- `siammae`: CropMAE's SiamMAE evaluation (the CRW code at 480x880, temperature 0.7, top-7,
  radius 20, 20 context frames; per task the values of CropMAE's evaluation arguments).
- `siammae-paper`: `siammae` where SiamMAE's paper and CropMAE's code disagree, the paper's
  side: VIP radius 8 (Table 4b; CropMAE's code: 20) and JHMDB joints from the top 3 cells
  (CRW's process_pose, the protocol the paper follows; CropMAE's code: top 5).
- `crw`: ajabri/videowalk test.py with its README's DAVIS settings (temperature 0.05, top-10,
  radius 12, 20 frames, native 480p).
- `dino`: facebookresearch/dino eval_video_segmentation.py (square window 12 on every context
  frame, top-5, 7 previous frames, temperature 0.1, short side 480).

`protocol_preset(name, task)` gives a preset's values for one task (DAVIS values unless the task
has its own), and `--set key=value` (smae.config.apply_overrides) changes any field.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Literal

from smae.config import check_fields
from smae.eval.tasks import TASKS

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DINO_STD = (0.228, 0.224, 0.225)  # the std DINO's video script uses (not ImageNet's 0.229)



@dataclass(frozen=True)
class Protocol:
    # Affinity and context.
    topk: int = 7  # neighbours kept per query, jointly over all context frames
    temperature: float = 0.7  # softmax(similarity / temperature) over the top-k
    radius: float | None = 20.0  # neighbourhood in feature cells; None: no restriction
    window: Literal["circle", "square"] = "circle"  # circle: d^2 < r^2 (CRW); square: |di|, |dj| <= r (DINO)
    n_context: int = 20  # short-term previous frames kept as context (besides the first frame)
    global_frames: int = 1  # 1: the first frame is searched over the whole grid (CRW); 0: windowed too (DINO)
    pad_context: bool = True  # CRW starts the short-term queue as n copies of the first frame; DINO's starts empty
    # Frames.
    resize: Literal["fixed", "short_side", "long_side", "native"] = "fixed"
    size: tuple[int, int] = (480, 880)  # fixed: (H, W); short_side / long_side: (side, the other side floored to a multiple of this)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    # cv2.resize (bilinear) of the frames as float32 in [0, 1] (CRW's load_image, then resize) or
    # as uint8 before dividing by 255 (DINO's read_frame): up to 0.5/255 apart.
    frame_dtype: Literal["float32", "uint8"] = "float32"
    # How a ViT's position table is resized to the input grid (smae.models.pos_embed): dino
    # (DINO's and CropMAE's evaluation encoders, all presets), timm (antialiased) or plain.
    pos_resize: Literal["dino", "timm", "plain"] = "dino"
    # Labels in and out.
    # bilinear (CRW): ids nearest-resized to the input size, one-hot, bilinear to the grid;
    # nearest (DINO): ids nearest-resized straight to the grid, one-hot.
    label_downsample: Literal["bilinear", "nearest"] = "bilinear"
    # Nearest resizes, by the library whose rule the origin uses: cv2 INTER_NEAREST (source
    # floor(x / (out / in)), in double) or PIL NEAREST (a sampling position accumulated in steps).
    label_nearest: Literal["cv2", "pil"] = "cv2"  # first annotation -> input size or grid (CRW's vos.py; DINO's read_seg)
    output_nearest: Literal["cv2", "pil"] = "cv2"  # prediction -> annotation size (CRW's convert_davis; DINO, CRW's eval_vip)
    # Bilinear resizes of soft label maps (one-hot down to the grid, predictions up to the input
    # size): cv2.resize in float32 (CRW) or torch interpolate (DINO). They round differently.
    bilinear: Literal["cv2", "torch"] = "cv2"
    minmax_output: bool = False  # DINO: per-channel min-max normalisation of the upsampled maps before argmax
    # Frame 0's output: re-derived from its labels on the grid like every other frame (CRW and
    # CropMAE write that) or its annotation as given (DINO). DAVIS and JHMDB do not score frame 0; VIP does.
    first_frame: Literal["grid", "given"] = "grid"
    joint_sigma: float = 0.5  # JHMDB: Gaussian heatmap width in feature cells (CRW)
    joint_topk: int = 3  # JHMDB: a joint is the weighted mean of its map's top locations (CRW: 3, CropMAE: 5)

    def __post_init__(self) -> None:
        positive = lambda v: math.isfinite(v) and v > 0  # noqa: E731
        check_fields(self, {
            "topk": (lambda v: v >= 1, "must be at least 1"),
            "temperature": (positive, "must be positive"),
            "radius": (lambda v: v is None or positive(v), "must be positive or None"),
            "n_context": (lambda v: v >= 0, "must be >= 0"),
            "global_frames": (lambda v: v in (0, 1), "must be 0 or 1"),
            "size": (lambda v: min(v) >= 1, "must be two positive sizes"),
            "std": (lambda v: min(v) > 0, "must be three positive numbers"),
            "joint_sigma": (positive, "must be positive"),
            "joint_topk": (lambda v: v >= 1, "must be at least 1"),
        })


PROTOCOLS: dict[str, Protocol] = {
    "siammae": Protocol(),
    "siammae-paper": Protocol(),
    "crw": Protocol(topk=10, temperature=0.05, radius=12.0, resize="native"),
    "dino": Protocol(
        topk=5, temperature=0.1, radius=12.0, window="square", n_context=7, global_frames=0, pad_context=False,
        resize="short_side", size=(480, 64), std=DINO_STD, frame_dtype="uint8", label_downsample="nearest",
        label_nearest="pil", output_nearest="pil", bilinear="torch", minmax_output=True, first_frame="given",
    ),
}

# Per-task departures from a preset's DAVIS values.
TASK_SETTINGS: dict[tuple[str, str], dict] = {
    # JHMDB at 320x320; CropMAE: top-k 7, 20 frames, radius 20, a joint from its top 5 cells.
    ("siammae", "jhmdb"): {"size": (320, 320), "joint_topk": 5},
    ("siammae-paper", "jhmdb"): {"size": (320, 320), "joint_topk": 3},
    ("crw", "jhmdb"): {"resize": "fixed", "size": (320, 320)},
    # VIP: CropMAE's top-k 10, 20 frames, radius 20, long side 880 (paper Table 4b: radius 8).
    # Results are resized to the annotation by CRW's eval_vip.py, with PIL's nearest.
    ("siammae", "vip"): {"topk": 10, "radius": 20.0, "resize": "long_side", "size": (880, 64), "output_nearest": "pil"},
    ("siammae-paper", "vip"): {"topk": 10, "radius": 8.0, "resize": "long_side", "size": (880, 64), "output_nearest": "pil"},
    ("crw", "vip"): {"topk": 10, "radius": 8.0, "output_nearest": "pil"},
}


# Objects entering later (YouTube-VOS) and a user's own clip: the semi-supervised protocol makes
# a given mask the output at its frame; the rest as on DAVIS.
GIVEN_MASK_TASKS = ("vos", "clip")


def protocol_preset(name: str, task: str = "davis") -> Protocol:
    """The preset `name` ('siammae', 'siammae-paper', 'crw', 'dino') with the settings of `task`
    (one of TASKS, or 'clip': one video with a mask, as `smae propagate --video`)."""
    if name not in PROTOCOLS:
        raise ValueError(f"unknown protocol {name!r}; choose from {', '.join(PROTOCOLS)}")
    if task not in TASKS + ("clip",):
        raise ValueError(f"unknown task {task!r}; choose from {', '.join(TASKS)}, clip")
    if task in GIVEN_MASK_TASKS:
        return dataclasses.replace(PROTOCOLS[name], first_frame="given")
    return dataclasses.replace(PROTOCOLS[name], **TASK_SETTINGS.get((name, task), {}))


def resolved_settings(protocol: Protocol) -> dict:
    """The protocol as a JSON-able dict of the settings in use: `size` is None where the resize
    rule ignores it (native: every frame at its own size, floored to the stride)."""
    settings = json.loads(json.dumps(dataclasses.asdict(protocol)))  # tuples -> lists, as they read back
    if protocol.resize == "native":
        settings["size"] = None
    return settings


def input_size(protocol: Protocol, height: int, width: int, stride: int) -> tuple[int, int]:
    """(H, W) a frame of `height` x `width` is resized to; both multiples of the feature `stride`.

    fixed: `size`. short_side (DINO): the short side becomes size[0], the long side keeps the
    aspect ratio floored to a multiple of size[1]. long_side (CropMAE): the long side becomes
    size[0], the short side likewise. native: each side floored to a multiple of the stride (a ViT
    needs whole patches: 854 -> 848 at patch 16).
    """
    if protocol.resize == "fixed":
        out = protocol.size
    elif protocol.resize == "native":
        out = (height // stride * stride, width // stride * stride)
    else:
        side, multiple = protocol.size

        def scaled(numerator: int, denominator: int) -> int:  # the free side, rounded as the scripts do
            return int(side * numerator / denominator) // multiple * multiple

        if protocol.resize == "short_side":  # DINO: landscape and square frames fix the height
            out = (side, scaled(width, height)) if width >= height else (scaled(height, width), side)
        else:  # CropMAE: landscape frames fix the width, square and portrait ones the height
            out = (scaled(height, width), side) if width > height else (side, scaled(width, height))
    out = (int(out[0]), int(out[1]))
    if min(out) < stride or out[0] % stride or out[1] % stride:
        raise ValueError(
            f"protocol resize={protocol.resize!r} size={protocol.size} turns a {height}x{width} frame into "
            f"{out[0]}x{out[1]}, not a positive multiple of the feature stride {stride}"
        )
    return out
