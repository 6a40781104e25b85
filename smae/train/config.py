"""Pre-training configuration: one frozen dataclass, named presets, `--set` overrides.

    config = apply_overrides(TRAIN_PRESETS["vits16"], ["batch_size=512", "model.mask_ratio=0.9"])

The architecture is part of the config (`model`, a full ModelConfig taken from the preset of the
same name), so a run and its checkpoints describe themselves even if a preset changes later.
Derived values (effective lr, step counts) come from pure functions in `smae.train.optim`.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Literal

from smae.config import InvalidField, check_fields
from smae.errors import UserError
from smae.models.presets import PRESETS, ModelConfig


def _positive_finite(value: float) -> bool:
    return math.isfinite(value) and value > 0


def _ordered(low: float, high: float | None = None):
    """A rule for a (min, max) pair: low <= min <= max (<= high)."""
    return lambda pair: low <= pair[0] <= pair[1] and (high is None or pair[1] <= high)


@dataclass(frozen=True)
class TrainConfig:
    model: ModelConfig = field(default_factory=lambda: PRESETS["vits16"])  # architecture; frames are cropped to model.encoder.img_size
    batch_size: int = 2048  # global batch in pairs, summed over processes and accumulation steps
    epochs: int = 400  # effective epochs: one epoch = as many pairs as there are videos
    warmup_epochs: int = 40  # linear warmup (per step) before the cosine decay
    base_lr: float = 1.5e-4  # learning rate per 256 pairs: lr = base_lr * batch_size / 256
    min_lr: float = 0.0  # where the cosine decay ends
    weight_decay: float = 0.05  # AdamW; none on norms, biases, tokens and position embeddings
    betas: tuple[float, float] = (0.9, 0.95)  # AdamW
    clip_grad: float | None = None  # max global gradient norm; None: no clipping
    accum_steps: int = 1  # micro-batches per optimizer step (per process)
    precision: Literal["auto", "bf16", "fp16", "fp32"] = "auto"  # autocast; auto: bf16 on CUDA sm_80+, fp16 + loss scaling before, fp32 on CPU
    gap_range: tuple[int, int] = (4, 48)  # frame gap between f1 and f2, uniform, bounds included
    repeats: int = 2  # pairs per decoded video (repeated sampling)
    crop_scale: tuple[float, float] = (0.5, 1.0)  # random resized crop: area fraction
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)  # random resized crop: width / height
    flip_prob: float = 0.5  # horizontal flip, the same for both frames
    num_workers: int = 8  # DataLoader worker processes per training process
    seed: int = 0  # data order, crops, masks and init; each rank derives its own streams from it
    checkpoint_every: int = 1000  # optimizer steps between checkpoints (and one at the end)
    log_every: int = 20  # optimizer steps between lines of metrics.jsonl
    figure_pairs: int = 4  # pairs shown in the reconstruction figure at each checkpoint
    compile: bool = False  # torch.compile the model (forward and backward); the first steps then compile

    def __post_init__(self) -> None:
        at_least = lambda low: (lambda v: v >= low, f"must be at least {low}")  # noqa: E731
        check_fields(self, {
            "batch_size": at_least(1),
            "epochs": at_least(1),
            "warmup_epochs": at_least(0),  # more than epochs: the lr warms up the whole run
            "base_lr": (_positive_finite, "must be positive"),
            "min_lr": (lambda v: math.isfinite(v) and v >= 0, "must be >= 0"),
            "weight_decay": (lambda v: math.isfinite(v) and v >= 0, "must be >= 0"),
            "betas": (lambda v: all(0 <= b < 1 for b in v), "must both be in [0, 1)"),
            "clip_grad": (lambda v: v is None or _positive_finite(v), "must be positive or None"),
            "accum_steps": at_least(1),
            "gap_range": (_ordered(1), "must be 1 <= min <= max frames"),
            "repeats": at_least(1),
            "crop_scale": (lambda v: v[0] > 0 and _ordered(0, 1)(v), "must be 0 < min <= max <= 1"),
            "crop_ratio": (lambda v: v[0] > 0 and _ordered(0)(v) and math.isfinite(v[1]), "must be 0 < min <= max"),
            "flip_prob": (lambda v: 0 <= v <= 1, "must be in [0, 1]"),
            "num_workers": at_least(0),
            "seed": at_least(0),
            "checkpoint_every": at_least(1),
            "log_every": at_least(1),
            "figure_pairs": at_least(1),
        })


def _paper(model: str) -> TrainConfig:
    """SiamMAE's 400-epoch recipe (paper Table 4a) for a model preset."""
    return TrainConfig(model=PRESETS[model])


TRAIN_PRESETS: dict[str, TrainConfig] = {
    # The demo: 1200 steps of 8 pairs over the `tiny` synthetic set's 32 videos (300 epochs),
    # a few minutes on 2 CPU cores. Tuned only on a held-out synthetic set (bench/learning_curve.py,
    # DAVIS stream of seed 1000, never a demo seed; bench/results/2026-12-06-cpu-demo-tuning.json;
    # J&F x100, random init 49.8, pixels 46.3, measured on flat-lit content; with the light
    # of smae.data.synth_camera as it is now: trained 47.0, random init 36.4, pixels 34.2).
    # What moved it most is the model's own decoder
    # (smae.models.presets "dectiny": pre-norm, positions on f1's tokens): 55.9 against 51.6 with
    # CropMAE's blocks. With it: base_lr 1e-2 (2x: 54.9; 0.5x: 55.6), mask ratio 0.95 (0.9: 56.0,
    # within noise). With CropMAE's blocks: 8-pair steps beat 16-pair ones at the same pairs
    # (51.6 against 49.0: updates, not pairs, take the model off its loss plateau); gaps up to 24
    # frames (up to 48 learnt less; 1-4: 49.9 at 16 pairs); norm-pix off: -4.3; crops nearer the
    # evaluation's object scale: 51.0, 50.8. Runs several times longer than the demo's should add
    # model.encoder.drop_path_rate=0.2 (bench/learning_curve.py, LONG_RUN): without it J&F falls
    # 3.4 points after step 1200, with it it stays 1-2 points under its step-1200 peak; it costs the
    # demo's own 1200 steps 1.3-1.7 points.
    "tiny": TrainConfig(model=PRESETS["tiny"], batch_size=8, epochs=300, warmup_epochs=5, base_lr=1e-2,
                        gap_range=(2, 24), num_workers=1, checkpoint_every=400, log_every=10),
    "vits16": _paper("vits16"),
    "vits8": _paper("vits8"),
    "vitb16": _paper("vitb16"),
}


def train_preset(name: str) -> TrainConfig:
    if name not in TRAIN_PRESETS:
        raise ValueError(f"unknown pre-training preset {name!r}; choose from {', '.join(TRAIN_PRESETS)}")
    return TRAIN_PRESETS[name]


def _from_dict(cls: type, data: dict, where: str):
    unknown = sorted(set(data) - {f.name for f in dataclasses.fields(cls)})
    if unknown:
        raise ValueError(f"{where}: unknown config keys {unknown}")
    defaults = cls()
    values = {}
    for name, value in data.items():
        default = getattr(defaults, name)
        if dataclasses.is_dataclass(default):
            values[name] = _from_dict(type(default), value, f"{where}.{name}")
        elif isinstance(default, tuple):
            values[name] = tuple(value)  # JSON has no tuples
        else:
            values[name] = value
    try:
        return cls(**values)
    except InvalidField as error:
        raise UserError(f"{where}: config field {error.field} {error.rule}; "
                        f"the file was not written by this version of smae or was edited") from None


def train_config_from_dict(data: dict, where: str = "config") -> TrainConfig:
    """Inverse of smae.config.to_dict for TrainConfig (as saved in config.json and checkpoints)."""
    return _from_dict(TrainConfig, data, where)


# Fields that do not change what is computed: a resumed run may set them differently (another
# machine may want other worker counts); any other difference would break the run's schedule.
# `compile` keeps the recipe, data and schedule but not the bits: inductor sums in other orders
# and draws the masks with its own generator (seeded the same way). Bitwise-identical resumes need
# the same value; a resume on a machine without a compiler may turn it off.
OPERATIONAL_FIELDS = ("num_workers", "checkpoint_every", "log_every", "figure_pairs", "compile")


def config_differences(a: TrainConfig, b: TrainConfig, prefix: str = "", ignore: tuple[str, ...] = ()) -> list[str]:
    """Dotted keys whose values differ, e.g. ['batch_size: 256 != 512'], except those in `ignore`."""
    out = []
    for f in dataclasses.fields(a):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if prefix + f.name in ignore:
            continue
        if dataclasses.is_dataclass(x):
            out += config_differences(x, y, f"{prefix}{f.name}.", ignore)
        elif x != y:
            out.append(f"{prefix}{f.name}: {x!r} != {y!r}")
    return out
