"""`smae synth`: deterministic procedural videos for pre-training and for every evaluation.

Each video is a random scene (smae.data.synth_scene): textured random shapes and articulated
"puppets" translate, rotate, change scale, occlude each other, enter and leave the frame,
over a panning textured background. Ground truth comes from the same rasterisation that drew
the pixels. One scene per video, from its own random stream seeded by (seed, format, index):
the same seed gives the same bytes, and a format's videos do not depend on which other
formats are generated.

Formats (layouts in smae.layouts), each in its own folder of the output directory:
    mp4    videos/synth0000.mp4 ...          pre-training videos (no labels)
    davis  davis/  (DAVIS-2017 semi-supervised: objects 1..n all visible in frame 0; objects
                    entering later are unannotated, i.e. background, as in DAVIS)
    jhmdb  jhmdb/  (one puppet per video; its 15 joints as JHMDB pos_img)
    vip    vip/    (puppets whose body parts carry VIP's 20 part classes; other shapes are
                    background)
    vos    vos/    (YouTube-VOS: the shapes of frame 0 and those that move in later, each given
                    as a mask at its first full frame, the first where it touches no edge of the
                    picture; a shape that never gets fully in stays background)
A format's folder is rebuilt whole on every run; `synth.json` records what was generated.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from smae.atomic import write_json_atomic

FORMATS = ("mp4", "davis", "jhmdb", "vip", "vos")
FORMAT_DIRS = {"mp4": "videos", "davis": "davis", "jhmdb": "jhmdb", "vip": "vip", "vos": "vos"}
_FORMAT_STREAMS = {"mp4": 0, "davis": 1, "jhmdb": 2, "vip": 3, "vos": 4}  # part of each video's seed
MANIFEST = "synth.json"


@dataclass(frozen=True)
class VideoSetSpec:
    """Size of one format's share of a preset. Ranges are inclusive (min, max)."""

    videos: int  # number of videos / sequences
    frames: tuple[int, int]  # frames per video
    height: int
    width: int
    objects: tuple[int, int]  # objects visible in frame 0 (annotated ones; people for jhmdb / vip)
    entering: tuple[int, int]  # extra shapes outside the frame at t=0 that move in (unannotated)


@dataclass(frozen=True)
class SynthPreset:
    mp4: VideoSetSpec
    davis: VideoSetSpec
    jhmdb: VideoSetSpec
    vip: VideoSetSpec
    # YouTube-VOS layout (objects entering later); a default, so presets written before it stay valid
    vos: VideoSetSpec = VideoSetSpec(videos=4, frames=(30, 30), height=120, width=216, objects=(1, 2), entering=(1, 2))


PRESETS: dict[str, SynthPreset] = {
    # Seconds on one CPU core: enough for tests and a CPU pre-training demo (frame gaps up to
    # 48 need videos of at least 49 frames). The demo compares J&F of trained and random-init
    # encoders on the DAVIS set: with 24 sequences of 40 frames (44-53 objects) the same
    # checkpoint's margin moved by about 2 points (standard deviation) from one held-out set to
    # the next; 48 sequences halve that variance (bench/results/2026-12-06-cpu-demo-seeds.json).
    "tiny": SynthPreset(
        mp4=VideoSetSpec(videos=32, frames=(96, 96), height=128, width=128, objects=(2, 4), entering=(0, 2)),
        davis=VideoSetSpec(videos=48, frames=(40, 40), height=120, width=216, objects=(1, 3), entering=(0, 1)),
        jhmdb=VideoSetSpec(videos=2, frames=(16, 16), height=96, width=128, objects=(1, 1), entering=(0, 1)),
        vip=VideoSetSpec(videos=2, frames=(12, 12), height=120, width=216, objects=(1, 2), entering=(0, 1)),
    ),
    # DAVIS-2017 val's shape: 30 sequences of 25-104 frames (~2000 in all) at 854x480 with 1-5
    # objects. JHMDB at its 320x240 and 15-40 frames per clip; VIP at 854x480.
    "davis-val-size": SynthPreset(
        mp4=VideoSetSpec(videos=40, frames=(150, 150), height=256, width=320, objects=(2, 5), entering=(0, 2)),
        davis=VideoSetSpec(videos=30, frames=(25, 104), height=480, width=854, objects=(1, 5), entering=(0, 2)),
        jhmdb=VideoSetSpec(videos=40, frames=(15, 40), height=240, width=320, objects=(1, 1), entering=(0, 2)),
        vip=VideoSetSpec(videos=10, frames=(20, 20), height=480, width=854, objects=(1, 3), entering=(0, 2)),
        # YouTube-VOS validation: 1280x720 clips of ~30 sampled frames, 1-3 objects, some entering.
        vos=VideoSetSpec(videos=10, frames=(30, 36), height=720, width=1280, objects=(1, 2), entering=(1, 2)),
    ),
}


def _check_spec(name: str, spec: VideoSetSpec) -> None:
    def ordered(field, low):
        lo, hi = getattr(spec, field)
        if not low <= lo <= hi:
            raise ValueError(f"preset {name}.{field}: need {low} <= min <= max, got {(lo, hi)}")

    if spec.videos < 1:
        raise ValueError(f"preset {name}.videos: need at least 1, got {spec.videos}")
    if spec.height < 16 or spec.width < 16:
        raise ValueError(f"preset {name}: frames of at least 16x16 pixels, got {spec.height}x{spec.width}")
    ordered("frames", 3)  # DAVIS scoring drops the first and last frames
    ordered("objects", 1)
    ordered("entering", 0)
    if spec.objects[1] + spec.entering[1] > 255:
        raise ValueError(f"preset {name}: at most 255 objects per video (8-bit labels)")
    if name == "mp4" and (spec.height % 2 or spec.width % 2):
        raise ValueError(f"preset mp4: H.264 yuv420p needs an even frame size, got {spec.height}x{spec.width}")
    if name == "jhmdb" and spec.objects != (1, 1):
        raise ValueError(f"preset jhmdb.objects must be (1, 1): one person carries the joints, "
                         f"got {spec.objects}")


def parse_formats(text: str) -> tuple[str, ...]:
    """'davis,vip' -> ('davis', 'vip'), in the canonical order; unknown names are an error."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [name for name in names if name not in FORMATS]
    if unknown or not names:
        raise ValueError(f"--formats: unknown {unknown or 'empty list'}; choose from {','.join(FORMATS)}")
    return tuple(name for name in FORMATS if name in names)


def _prepare_out_dir(out_dir: Path) -> None:
    """Creates `out_dir` and checks it is writable and not someone else's data."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"--out {out_dir}: exists and is not a directory")
    try:
        foreign = out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / MANIFEST).exists()
        if not foreign:
            out_dir.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=out_dir):
                pass
    except OSError as error:
        raise ValueError(f"--out {out_dir}: cannot create or write there ({error.strerror or error})") from None
    if foreign:  # never mix our folders into (or replace folders of) a real data set
        raise FileExistsError(f"--out {out_dir}: not empty and not written by smae synth (no {MANIFEST}); "
                              "choose a new or empty directory")


def _scenes(spec: VideoSetSpec, seed: int, fmt: str, people: bool, **scene_options) -> Iterator[tuple]:
    """(index, scene, number of annotated objects) for each video of one format."""
    import numpy as np

    from smae.data.synth_scene import build_scene

    for index in range(spec.videos):
        rng = np.random.default_rng([seed, _FORMAT_STREAMS[fmt], index])
        num_frames = int(rng.integers(spec.frames[0], spec.frames[1] + 1))
        num_objects = int(rng.integers(spec.objects[0], spec.objects[1] + 1))
        num_entering = int(rng.integers(spec.entering[0], spec.entering[1] + 1))
        scene = build_scene(rng, num_frames, spec.height, spec.width, num_objects, num_entering,
                            people=people, **scene_options)
        yield index, scene, num_objects


def _write_mp4(root: Path, spec: VideoSetSpec, seed: int) -> int:
    from smae.layouts.mp4 import write_mp4
    from smae.data.synth_scene import render_frame

    total = 0
    for index, scene, _ in _scenes(spec, seed, "mp4", people=False, puppet_share=0.3):
        frames = (render_frame(scene, t).rgb for t in range(scene.num_frames))
        total += write_mp4(root / f"synth{index:04d}.mp4", frames, spec.height, spec.width)
    return total


def _write_davis(root: Path, spec: VideoSetSpec, seed: int) -> int:
    import numpy as np

    from smae.layouts.davis import DavisLayout
    from smae.data.synth_scene import render_frame

    layout, names, total = DavisLayout(root), [], 0
    for index, scene, num_objects in _scenes(spec, seed, "davis", people=False):
        name = f"synth{index:03d}"
        for t in range(scene.num_frames):
            frame = render_frame(scene, t)
            # Objects 1..num_objects are the ones visible in frame 0; later arrivals are background.
            labels = np.where(frame.objects <= num_objects, frame.objects, 0).astype(np.uint8)
            layout.write_frame(name, t, frame.rgb, labels)
        names.append(name)
        total += scene.num_frames
    layout.write_lists(names)
    return total


def _write_jhmdb(root: Path, spec: VideoSetSpec, seed: int) -> int:
    from smae.layouts.jhmdb import JhmdbLayout
    from smae.data.synth_scene import render_frame

    layout, videos, total = JhmdbLayout(root), [], 0
    for index, scene, _ in _scenes(spec, seed, "jhmdb", people=True, person_size=(0.1, 0.15)):
        action = scene.actions[0]
        video = f"synth_{action}_{index:03d}"
        for t in range(scene.num_frames):
            layout.write_frame(action, video, t, render_frame(scene, t).rgb)
        layout.write_joints(action, video, scene.joints[0])
        videos.append((action, video))
        total += scene.num_frames
    layout.write_lists(videos)
    return total


def _write_vip(root: Path, spec: VideoSetSpec, seed: int) -> int:
    from smae.layouts.vip import VipLayout
    from smae.data.synth_scene import render_frame

    layout, names, total = VipLayout(root), [], 0
    for index, scene, _ in _scenes(spec, seed, "vip", people=True):
        name = f"videos{index + 1}"
        for t in range(scene.num_frames):
            frame = render_frame(scene, t)
            layout.write_frame(name, t, frame.rgb, frame.parts)
        names.append(name)
        total += scene.num_frames
    layout.write_lists(names)
    return total


def _write_vos(root: Path, spec: VideoSetSpec, seed: int) -> int:
    import numpy as np

    from smae.data.synth_scene import render_frame
    from smae.layouts.youtube_vos import YoutubeVosLayout

    layout, total = YoutubeVosLayout(root), 0
    for index, scene, num_objects in _scenes(spec, seed, "vos", people=False):
        rendered = [render_frame(scene, t) for t in range(scene.num_frames)]
        given = first_given_frames([frame.objects for frame in rendered], num_objects)
        truth = [np.where(np.isin(frame.objects, [i for i, t0 in given.items() if t0 <= t]), frame.objects, 0).astype(np.uint8)
                 for t, frame in enumerate(rendered)]
        layout.write_video(f"synth{index:03d}", [frame.rgb for frame in rendered], truth)
        total += scene.num_frames
    layout.write_meta()
    return total


def first_given_frames(objects: list, num_visible: int) -> dict[int, int]:
    """{object id: the frame its mask is given on}: frame 0 for the objects of frame 0 (1..
    num_visible), else the first frame where the object is in the picture without touching its
    edges (fully entered). objects: (H, W) id maps, one per frame."""
    given = {i: 0 for i in range(1, num_visible + 1)}
    for t, ids in enumerate(objects):
        edges = set(ids[0]) | set(ids[-1]) | set(ids[:, 0]) | set(ids[:, -1])
        for object_id in set(ids.ravel().tolist()) - edges - {0}:
            given.setdefault(int(object_id), t)
    return given


_WRITERS: dict[str, Callable[[Path, VideoSetSpec, int], int]] = {
    "mp4": _write_mp4, "davis": _write_davis, "jhmdb": _write_jhmdb, "vip": _write_vip, "vos": _write_vos,
}


def generate(out_dir: str | os.PathLike, preset: str | SynthPreset = "tiny", seed: int = 0,
             formats: str | tuple[str, ...] | list[str] = FORMATS,
             log: Callable[[str], None] | None = None) -> dict:
    """Writes the chosen formats under `out_dir`; returns a summary of what was written.

    preset: a name in PRESETS or a SynthPreset. formats: names or "davis,vip". Summary:
    {"out_dir", "seed", "preset", "formats": {format: {"path", "videos", "frames", "height",
    "width", "seconds"}}}. synth.json in `out_dir` records each format's seed and spec as soon
    as its folder is in place (it never carries timings: same seed, same bytes).
    """
    if isinstance(preset, str):
        if preset not in PRESETS:
            raise ValueError(f"--preset: unknown {preset!r}; known: {', '.join(PRESETS)}")
        preset_name, preset = preset, PRESETS[preset]
    else:
        preset_name = "custom"
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"--seed must be a non-negative integer, got {seed!r}")
    formats = parse_formats(formats if isinstance(formats, str) else ",".join(formats))
    for fmt in formats:
        _check_spec(fmt, getattr(preset, fmt))
    out_dir = Path(out_dir)
    _prepare_out_dir(out_dir)

    summary = {"out_dir": str(out_dir), "seed": seed, "preset": preset_name, "formats": {}}
    for fmt in formats:
        spec = getattr(preset, fmt)
        start = time.perf_counter()
        with replaced_dir(out_dir / FORMAT_DIRS[fmt]) as root:
            frames = _WRITERS[fmt](root, spec, seed)
        info = {"path": FORMAT_DIRS[fmt], "videos": spec.videos, "frames": frames,
                "height": spec.height, "width": spec.width}
        _record(out_dir, fmt, dict(info, seed=seed, preset=preset_name, spec=dataclasses.asdict(spec)))
        seconds = time.perf_counter() - start
        summary["formats"][fmt] = dict(info, seconds=round(seconds, 2))
        if log:
            log(f"{fmt}: {spec.videos} videos, {frames} frames of {spec.height}x{spec.width} "
                f"in {out_dir / FORMAT_DIRS[fmt]} ({seconds:.1f} s)")
    return summary


@contextmanager
def replaced_dir(final: Path) -> Iterator[Path]:
    """Yields a fresh temporary sibling of `final`; on success it replaces `final` whole.

    Readers never see a half-written folder, and files of an earlier, larger run cannot
    linger among the new ones. On error the temporary folder is removed and `final` is
    left as it was.
    """
    temporary = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    retired = final.with_name(f".{final.name}.old-{os.getpid()}")
    for leftover in (temporary, retired):
        if leftover.exists():
            shutil.rmtree(leftover)
    temporary.mkdir(parents=True)
    try:
        yield temporary
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    if final.exists():
        os.replace(final, retired)
    os.replace(temporary, final)
    shutil.rmtree(retired, ignore_errors=True)


def _record(out_dir: Path, fmt: str, entry: dict) -> None:
    """Sets one format's entry in synth.json, atomically."""
    path = out_dir / MANIFEST
    manifest = json.loads(path.read_text()) if path.exists() else {"formats": {}}
    manifest["formats"][fmt] = entry
    write_json_atomic(path, manifest)
