"""Label-propagation protocols: frozen dataclasses and named presets.

Three protocol families, each reproducing a published evaluation script:
- `siammae`: CropMAE's SiamMAE evaluation (the CRW code at 480x880, temperature 0.7, top-7,
  radius 20, 20 context frames); SiamMAE's paper Table 4b gives top-k / frames / radius per task.
- `crw`: ajabri/videowalk test.py with its README's DAVIS settings (temperature 0.05, top-10,
  radius 12, 20 frames, native 480p).
- `dino`: facebookresearch/dino eval_video_segmentation.py (square window 12 on every context
  frame, top-5, 7 previous frames, temperature 0.1, short side 480).

`protocol_preset(name, task)` gives a preset's values for one task (DAVIS values unless the task
has its own), and `--set key=value` (smae.config.apply_overrides) changes any field.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

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
    # How a ViT's position table is resized to the input grid (smae.models.pos_embed): dino
    # (DINO's and CropMAE's evaluation encoders, all presets), timm (antialiased) or plain.
    pos_resize: Literal["dino", "timm", "plain"] = "dino"
    # Labels in and out.
    # bilinear (CRW): ids nearest-resized to the input size, one-hot, bilinear to the grid;
    # nearest (DINO): ids nearest-resized straight to the grid, one-hot.
    label_downsample: Literal["bilinear", "nearest"] = "bilinear"
    nearest: Literal["floor", "centre"] = "floor"  # rule of every nearest resize: floor (cv2 INTER_NEAREST) | centre (PIL NEAREST)
    minmax_output: bool = False  # DINO: per-channel min-max normalisation of the upsampled maps before argmax
    joint_sigma: float = 0.5  # JHMDB: Gaussian heatmap width in feature cells (CRW)
    joint_topk: int = 3  # JHMDB: a joint is the weighted mean of its map's top locations (CRW)

    def __post_init__(self) -> None:
        checks = {
            "topk": self.topk >= 1,
            "temperature": self.temperature > 0,
            "radius": self.radius is None or self.radius > 0,
            "n_context": self.n_context >= 0,
            "global_frames": self.global_frames in (0, 1),
            "size": len(self.size) == 2 and min(self.size) >= 1,
            "std": len(self.std) == 3 and min(self.std) > 0,
            "mean": len(self.mean) == 3,
            "joint_sigma": self.joint_sigma > 0,
            "joint_topk": self.joint_topk >= 1,
            "pos_resize": self.pos_resize in ("dino", "timm", "plain"),
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"invalid protocol value(s): {', '.join(f'{name}={getattr(self, name)!r}' for name in bad)}")


PROTOCOLS: dict[str, Protocol] = {
    "siammae": Protocol(),
    "crw": Protocol(topk=10, temperature=0.05, radius=12.0, resize="native"),
    "dino": Protocol(
        topk=5, temperature=0.1, radius=12.0, window="square", n_context=7, global_frames=0, pad_context=False,
        resize="short_side", size=(480, 64), std=DINO_STD, label_downsample="nearest", nearest="centre",
        minmax_output=True,
    ),
}

# Per-task departures from a preset's DAVIS values.
TASK_SETTINGS: dict[tuple[str, str], dict] = {
    # JHMDB at 320x320 (CRW's and CropMAE's crop size); top-k 7, 20 frames, radius 20 (paper).
    ("siammae", "jhmdb"): {"size": (320, 320)},
    ("crw", "jhmdb"): {"resize": "fixed", "size": (320, 320)},
    # VIP: top-k 10, 20 frames, radius 8 (SiamMAE paper Table 4b); long side 880 as CropMAE.
    ("siammae", "vip"): {"topk": 10, "radius": 8.0, "resize": "long_side", "size": (880, 64)},
    ("crw", "vip"): {"topk": 10, "radius": 8.0},
}


def protocol_preset(name: str, task: str = "davis") -> Protocol:
    """The preset `name` ('siammae', 'crw', 'dino') with the settings of `task`."""
    if name not in PROTOCOLS:
        raise ValueError(f"unknown protocol {name!r}; choose from {', '.join(PROTOCOLS)}")
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose from {', '.join(TASKS)}")
    return dataclasses.replace(PROTOCOLS[name], **TASK_SETTINGS.get((name, task), {}))


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
