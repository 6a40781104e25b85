"""Synthetic video generator: determinism, the four layouts, exact labels, bad input, CLI."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from smae import cli
from smae.data import synth
from smae.layouts.images import DAVIS_PALETTE
from smae.data.synth import PRESETS, SynthPreset, VideoSetSpec, generate
from smae.data.synth_camera import Camera
from smae.data.synth_scene import JOINT_NAMES, Scene, Sprite, build_scene, render_frame, similarity
from smae.data.synth_shapes import Shape, Texture

# Small enough to generate in well under a second, big enough for every code path: entering
# objects, several annotated objects, puppets.
SMALL = SynthPreset(
    mp4=VideoSetSpec(videos=2, frames=(12, 12), height=64, width=64, objects=(2, 3), entering=(1, 1)),
    davis=VideoSetSpec(videos=3, frames=(8, 12), height=60, width=108, objects=(2, 3), entering=(1, 1)),
    jhmdb=VideoSetSpec(videos=2, frames=(8, 10), height=48, width=64, objects=(1, 1), entering=(0, 1)),
    vip=VideoSetSpec(videos=2, frames=(6, 6), height=60, width=108, objects=(1, 2), entering=(1, 1)),
)


@pytest.fixture(scope="module")
def small_out(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "out"
    generate(out, SMALL, seed=3)
    return out


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_and_new_seed_new_content(small_out, tmp_path):
    again = tmp_path / "again"
    generate(again, SMALL, seed=3)
    first, second = _tree(small_out), _tree(again)
    assert first.keys() == second.keys()
    assert [name for name in first if first[name] != second[name]] == []
    assert any(name.endswith(".mat") for name in first) and any(name.endswith(".mp4") for name in first)

    generate(tmp_path / "other", SMALL, seed=4, formats=["davis"])
    other = _tree(tmp_path / "other")
    frame = "davis/JPEGImages/480p/synth000/00000.jpg"
    assert other[frame] != first[frame]


def test_one_format_does_not_depend_on_the_others(small_out, tmp_path):
    generate(tmp_path / "vip_only", SMALL, seed=3, formats=["vip"])
    alone = _tree(tmp_path / "vip_only" / "vip")
    assert alone == _tree(small_out / "vip")


def test_mp4_decodes_to_the_right_frames(small_out):
    spec = SMALL.mp4
    paths = sorted((small_out / "videos").glob("*.mp4"))
    assert len(paths) == spec.videos
    for path in paths:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            assert stream.codec_context.name == "h264"
            assert stream.codec_context.pix_fmt == "yuv420p"
            assert stream.average_rate == 30
            frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
        assert len(frames) == spec.frames[0]
        assert frames[0].shape == (spec.height, spec.width, 3)
        # Content moves: the last frame is not the first one.
        assert np.abs(frames[0].astype(int) - frames[-1].astype(int)).mean() > 2


def test_mp4_encoding_is_repeatable(tmp_path):
    # x264 with macroblock-tree rate control was not repeatable on small frames; guard it.
    from smae.layouts.mp4 import write_mp4

    scene = build_scene(np.random.default_rng(1), 12, 64, 64, num_objects=3, num_entering=1, people=False)
    frames = [render_frame(scene, t).rgb for t in range(scene.num_frames)]
    encodings = set()
    for attempt in range(8):
        path = tmp_path / f"{attempt}.mp4"
        assert write_mp4(path, iter(frames), 64, 64) == len(frames)
        encodings.add(path.read_bytes())
    assert len(encodings) == 1


def _davis_sequence(root: Path, name: str):
    images = sorted((root / "JPEGImages" / "480p" / name).glob("*.jpg"))
    annotations = sorted((root / "Annotations" / "480p" / name).glob("*.png"))
    return images, annotations


def test_davis_layout_palette_and_ids(small_out):
    root, spec = small_out / "davis", SMALL.davis
    names = (root / "ImageSets" / "2017" / "val.txt").read_text().split()
    assert names == [f"synth{i:03d}" for i in range(spec.videos)]
    assert (root / "ImageSets" / "2017" / "train.txt").read_text() == ""
    for name in names:
        images, annotations = _davis_sequence(root, name)
        expected_names = [f"{i:05d}" for i in range(len(images))]
        assert [p.stem for p in images] == [p.stem for p in annotations] == expected_names
        assert spec.frames[0] <= len(images) <= spec.frames[1]
        first = Image.open(annotations[0])
        assert first.mode == "P"
        palette = np.array(first.getpalette(), np.uint8).reshape(-1, 3)
        np.testing.assert_array_equal(palette, DAVIS_PALETTE)
        ids_first = np.unique(np.array(first))
        num_objects = int(ids_first.max())
        # Every object 1..n is present in frame 0 (DAVIS semi-supervised needs it).
        np.testing.assert_array_equal(ids_first, np.arange(num_objects + 1))
        assert spec.objects[0] <= num_objects <= spec.objects[1]
        for image_path, annotation_path in zip(images, annotations):
            labels = np.array(Image.open(annotation_path))
            assert Image.open(image_path).size == Image.open(annotation_path).size == (spec.width, spec.height)
            assert labels.max() <= num_objects


def _grey(rgb: np.ndarray) -> np.ndarray:
    return np.array(Image.fromarray(rgb).convert("L"), dtype=np.float64)


def test_davis_files_hold_the_rendered_scene(small_out):
    root = small_out / "davis"
    for index, scene, num_objects in synth._scenes(SMALL.davis, 3, "davis", people=False):
        images, annotations = _davis_sequence(root, f"synth{index:03d}")
        assert len(images) == scene.num_frames
        ends = (0, scene.num_frames - 1)
        frames = [render_frame(scene, t) for t in ends]
        for t, frame, other in zip(ends, frames, frames[::-1]):
            expected = np.where(frame.objects <= num_objects, frame.objects, 0)
            np.testing.assert_array_equal(np.array(Image.open(annotations[t])), expected)
            # JPEG keeps luma well (chroma is subsampled): compare grey levels, against the
            # right frame and, for scale, against the other end of the sequence.
            stored = _grey(np.array(Image.open(images[t])))
            error, error_other = (np.abs(stored - _grey(f.rgb)).mean() for f in (frame, other))
            assert error < 4 and error < 0.5 * error_other, f"frame {t}: JPEG error {error:.1f} vs {error_other:.1f}"


def test_jhmdb_pos_img_is_one_based(tmp_path):
    from scipy.io import loadmat

    from smae.layouts.jhmdb import JhmdbLayout

    joints = np.random.default_rng(0).uniform(0, 50, size=(7, 15, 2))  # (T, 15, 2) 0-based (x, y)
    layout = JhmdbLayout(tmp_path)
    layout.write_joints("walk", "clip", joints)
    pos_img = loadmat(layout.mat_path("walk", "clip"))["pos_img"]
    np.testing.assert_array_equal(pos_img, joints.transpose(2, 1, 0) + 1)


def test_davis_palette_matches_the_voc_colour_map():
    expected = {0: (0, 0, 0), 1: (128, 0, 0), 2: (0, 128, 0), 3: (128, 128, 0), 4: (0, 0, 128),
                8: (64, 0, 0), 9: (192, 0, 0), 16: (0, 64, 0), 255: (224, 224, 192)}
    for index, colour in expected.items():
        assert tuple(DAVIS_PALETTE[index]) == colour
    assert len({tuple(c) for c in DAVIS_PALETTE}) == 256


def _centroid(mask: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    return np.array([xs.mean(), ys.mean()])


def test_davis_objects_move(small_out):
    root = small_out / "davis"
    for name in (root / "ImageSets" / "2017" / "val.txt").read_text().split():
        _, annotations = _davis_sequence(root, name)
        masks = np.stack([np.array(Image.open(p)) for p in annotations])  # (T, H, W)
        shifts = []
        for obj in range(1, int(masks[0].max()) + 1):
            visible = [t for t in range(len(masks)) if (masks[t] == obj).any()]
            first, last = masks[visible[0]] == obj, masks[visible[-1]] == obj
            assert visible[-1] == 0 or not np.array_equal(first, last), f"{name}: object {obj} never changes"
            shifts.append(np.linalg.norm(_centroid(last) - _centroid(first)))
        assert max(shifts) > 1.0, f"{name}: no object centroid moved by a pixel ({shifts})"


def _flat(colour) -> Texture:
    """A single-colour texture: pixels of an object then show exactly this colour."""
    colour = np.asarray(colour, np.float32)
    return Texture("checker", np.stack([colour, colour]), np.zeros((1, 1, 3), np.float32),
                   np.zeros((1, 1, 1), np.float32), 1.0, 1.0, 0.0, 0.0)


def test_rasterisation_respects_occlusion_and_labels_match_pixels():
    height, width, frames = 40, 50, 2
    # Object 0: disc of radius 12.3 around (20, 20); object 1 (drawn later, on top): disc of
    # radius 8.4 around (28, 20.2) in frame 0, moved 5 px right in frame 1. Radii and centres
    # put no pixel centre on a circle, so the expected masks are unambiguous.
    back = Sprite(Shape.ellipse(1, 1), (_flat((200, 10, 10)),), (0,), 0, (),
                  similarity(np.full(frames, 20.0), 20.0, 0.0, 12.3), 0)
    front = Sprite(Shape.ellipse(1, 1), (_flat((10, 200, 10)),), (7,), 0, (),
                   similarity(np.array([28.0, 33.0]), 20.2, 0.3, 8.4), 1)
    background = np.full((height, width, 3), 90, np.uint8)
    scene = Scene(height, width, background, np.zeros((frames, 2), np.int64), (back, front), 2, (), ())
    ys, xs = np.mgrid[:height, :width]
    for t, front_x in enumerate((28.0, 33.0)):
        frame = render_frame(scene, t)
        in_back = (xs - 20) ** 2 + (ys - 20) ** 2 <= 12.3**2
        in_front = (xs - front_x) ** 2 + (ys - 20.2) ** 2 <= 8.4**2
        expected = np.where(in_front, 2, np.where(in_back, 1, 0))
        np.testing.assert_array_equal(frame.objects, expected)
        np.testing.assert_array_equal(frame.parts, np.where(in_front, 7, 0))
        assert (in_front & in_back).sum() > 50  # the test really has an overlap
        colours = np.array([[90, 90, 90], [200, 10, 10], [10, 200, 10]], np.uint8)
        np.testing.assert_array_equal(frame.rgb, colours[expected])


def _crossing_number_inside(vertices: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Independent point-in-polygon test (even-odd rule on a ray towards +u)."""
    inside = np.zeros(u.shape, bool)
    for (u0, v0), (u1, v1) in zip(vertices, np.roll(vertices, -1, axis=0)):
        crosses = (v0 > v) != (v1 > v)
        at = u0 + (v - v0) * (u1 - u0) / np.where(v1 == v0, 1, v1 - v0)
        inside ^= crosses & (u < at)
    return inside


@pytest.mark.parametrize("kind", ["ellipse", "polygon", "blob"])
def test_random_shapes_stay_in_the_unit_disc(kind):
    rng = np.random.default_rng(11)
    v, u = np.mgrid[-1.2:1.2:241j, -1.2:1.2:241j]
    for _ in range(20):
        shape = Shape.random(rng)
        while shape.kind != kind:
            shape = Shape.random(rng)
        inside = shape.contains(u, v)
        assert not inside[np.hypot(u, v) > 1.0 + 1e-9].any()
        assert inside[120, 120] and inside.mean() > 0.1 * np.pi / 2.4**2  # holds its centre, not a sliver
        if kind == "polygon":
            expected = _crossing_number_inside(shape.params, u, v)
            assert (inside != expected).sum() <= 2  # points exactly on an edge may go either way


def test_scene_keeps_entering_objects_out_of_frame_zero():
    rng = np.random.default_rng(5)
    scene = build_scene(rng, 40, 72, 96, num_objects=2, num_entering=2, people=False)
    seen = [np.unique(render_frame(scene, t).objects) for t in range(scene.num_frames)]
    assert set(seen[0]) <= {0, 1, 2} and {1, 2} <= set(seen[0])
    assert any({3, 4} & set(ids) for ids in seen[1:]), "no entering object ever entered"


def test_jhmdb_joints_follow_the_puppet(small_out):
    root, spec = small_out / "jhmdb", SMALL.jhmdb
    from scipy.io import loadmat

    lines = (root / "jhmdb_vallist.txt").read_text().splitlines()
    assert len(lines) == spec.videos
    for line in lines:
        frames_dir, mat_path = (root / part for part in line.split())
        frames = sorted(frames_dir.glob("*.png"))
        assert [p.name for p in frames] == [f"{i + 1:05d}.png" for i in range(len(frames))]
        pos_img = loadmat(mat_path)["pos_img"]
        assert pos_img.shape == (2, 15, len(frames)) and pos_img.dtype == np.float64
        neck, belly, face = (JOINT_NAMES.index(n) for n in ("neck", "belly", "face"))
        # An upright puppet: face above neck above belly (image y grows downwards).
        assert (pos_img[1, face] < pos_img[1, neck]).all() and (pos_img[1, neck] < pos_img[1, belly]).all()
        assert np.abs(np.diff(pos_img, axis=2)).max() > 0.5  # joints move
        action = frames_dir.parent.name
        split = (root / "splits" / f"{action}_test_split1.txt").read_text().splitlines()
        assert f"{frames_dir.name}.avi 2" in split


def test_jhmdb_joints_land_on_the_rendered_body():
    rng = np.random.default_rng(2)
    scene = build_scene(rng, 12, 96, 128, num_objects=1, num_entering=0, people=True)
    joints = scene.joints[0]  # (T, 15, 2) 0-based (x, y)
    for t in range(scene.num_frames):
        objects = render_frame(scene, t).objects
        for name in ("belly", "face"):  # interior points of the torso and the head
            x, y = np.round(joints[t, JOINT_NAMES.index(name)]).astype(int)
            if 0 <= y < scene.height and 0 <= x < scene.width:
                assert objects[y, x] == 1, f"frame {t}: {name} at ({x}, {y}) is not on the puppet"


def test_vip_layout_and_class_ids(small_out):
    root, spec = small_out / "vip", SMALL.vip
    videos = (root / "lists" / "val_videos.txt").read_text().split()
    assert videos == [f"videos{i + 1}" for i in range(spec.videos)]
    for video in videos:
        images = sorted((root / "Images" / video).glob("*.jpg"))
        labels = sorted((root / "Annotations" / "Category_ids" / video).glob("*.png"))
        expected_names = [f"{i + 1:012d}" for i in range(len(images))]
        assert [p.stem for p in images] == [p.stem for p in labels] == expected_names
        classes = np.stack([np.array(Image.open(p)) for p in labels])
        assert Image.open(labels[0]).mode == "L"
        assert classes.max() <= 19 and len(np.unique(classes[0])) >= 4  # background + several parts


def test_presets_are_valid_and_tiny_suits_pretraining():
    for name, preset in PRESETS.items():
        for fmt in synth.FORMATS:
            synth._check_spec(fmt, getattr(preset, fmt))
    assert PRESETS["tiny"].mp4.frames[0] >= 49  # frame gaps of up to 48
    davis = PRESETS["davis-val-size"].davis
    assert (davis.videos, davis.frames, davis.objects) == (30, (25, 104), (1, 5))
    assert (davis.height, davis.width) == (480, 854)


def test_bad_arguments_give_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown 'huge'"):
        generate(tmp_path / "a", "huge")
    with pytest.raises(ValueError, match="--formats"):
        generate(tmp_path / "a", SMALL, formats=["davis", "kinetics"])
    with pytest.raises(ValueError, match="--seed"):
        generate(tmp_path / "a", SMALL, seed=-1)
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(ValueError, match="cannot create or write"):
        generate(a_file / "sub", SMALL, formats=["davis"])
    with pytest.raises(ValueError, match="not a directory"):
        generate(a_file, SMALL, formats=["davis"])
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not written by smae synth"):
        generate(foreign, SMALL, formats=["davis"])
    two_people = dataclasses.replace(SMALL, jhmdb=dataclasses.replace(SMALL.jhmdb, objects=(2, 2)))
    with pytest.raises(ValueError, match="jhmdb.objects"):
        generate(tmp_path / "b", two_people, formats=["jhmdb"])
    odd = dataclasses.replace(SMALL, mp4=dataclasses.replace(SMALL.mp4, width=65))
    with pytest.raises(ValueError, match="even frame size"):
        generate(tmp_path / "c", odd, formats=["mp4"])


def test_cli_writes_replaces_and_reports(tmp_path, capsys):
    out = tmp_path / "cli"
    assert cli.main(["synth", "--out", str(out), "--formats", "davis,vip", "--set", "davis.videos=2"]) == 0
    assert "davis: 2 videos" in capsys.readouterr().out
    assert (out / "davis" / "JPEGImages" / "480p" / "synth001").is_dir()
    # A second, smaller run replaces the folder whole (no stale sequence) and keeps vip.
    argv = ["synth", "--out", str(out), "--formats", "davis", "--set", "davis.videos=1", "--seed", "1"]
    assert cli.main(argv) == 0
    assert not (out / "davis" / "JPEGImages" / "480p" / "synth001").exists()
    manifest = json.loads((out / "synth.json").read_text())
    assert manifest["formats"]["davis"]["videos"] == 1 and manifest["formats"]["davis"]["seed"] == 1
    vip = manifest["formats"]["vip"]
    assert vip["seed"] == 0 and vip["videos"] == PRESETS["tiny"].vip.videos
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary leftovers

    assert cli.main(["synth", "--out", str(out), "--formats", "davis,webvid"]) == 2
    assert "webvid" in capsys.readouterr().err
    assert cli.main(["synth", "--out", str(out), "--set", "davis.colour=3"]) == 2
    assert "unknown key 'colour'" in capsys.readouterr().err


def test_camera_changes_pixels_never_labels():
    exact = build_scene(np.random.default_rng(8), 30, 64, 96, num_objects=2, num_entering=1, people=False, camera=False)
    seen = build_scene(np.random.default_rng(8), 30, 64, 96, num_objects=2, num_entering=1, people=False)
    assert exact.camera is None and seen.camera is not None
    brightness = []
    for t in (0, 29):
        a, b = render_frame(exact, t), render_frame(seen, t)
        np.testing.assert_array_equal(a.objects, b.objects)
        np.testing.assert_array_equal(a.parts, b.parts)
        difference = b.rgb.astype(float) - a.rgb.astype(float)
        assert np.abs(difference).mean() > 2  # light, exposure and noise are all there
        brightness.append(b.rgb.mean() / a.rgb.mean())
        np.testing.assert_array_equal(render_frame(seen, t).rgb, b.rgb)  # noise is a function of the scene
    assert abs(brightness[0] - brightness[1]) > 0.005  # the exposure drifts over time


def test_shading_brightens_the_side_towards_the_light():
    # A still grey disc at (30, 30), radius 20, lit from +x (angle 0) or from +y (angle pi/2)
    # through an otherwise neutral camera: no pools, no drift, no noise.
    pose = similarity(np.full(2, 30.0), 30.0, 0.0, 20.0)
    disc = Sprite(Shape.ellipse(1.0, 1.0), (_flat((120, 120, 120)),), (0,), 0, (), pose, 0, shading=0.5)
    background = np.full((60, 60, 3), 90, np.uint8)

    def render(sprite, light_angle):
        camera = Camera(np.ones((60, 60), np.float32), np.ones((2, 3), np.float32), 0.0, 0, light_angle)
        scene = Scene(60, 60, background, np.zeros((2, 2), np.int64), (sprite,), 1, (), (), camera)
        return render_frame(scene, 0).rgb[..., 0].astype(float)

    from_right = render(disc, 0.0)
    assert from_right[30, 45] > 150 > 120 > 95 > from_right[30, 15]  # exp(+-0.5 * 15/20) of 120 ...
    np.testing.assert_allclose(from_right[30, 30], 120, atol=1)  # ... and unchanged at the centre
    assert (np.diff(from_right[30, 12:49]) >= 0).all()  # brighter step by step towards the light
    from_below = render(disc, np.pi / 2)
    assert from_below[45, 30] > 150 and from_below[15, 30] < 95
    np.testing.assert_allclose(from_below[30, 15], from_below[30, 45], atol=1)  # across the light: even
    flat = render(dataclasses.replace(disc, shading=0.0), 0.0)
    assert (flat[30, 12:49] == 120).all()


def test_bending_shapes_change_outline_in_place():
    shape = Shape.ellipse(1.0, 0.6)
    pose = similarity(np.full(12, 30.0), 30.0, 0.0, 20.0)  # still: only the warp can move it
    rigid = Sprite(shape, (_flat((200, 10, 10)),), (0,), 0, (), pose, 0)
    bent = dataclasses.replace(rigid, warp=(0.1, 4.0, 0.5, 0.0))
    background = np.full((60, 60, 3), 90, np.uint8)
    masks = {}
    for name, sprite in (("rigid", rigid), ("bent", bent)):
        scene = Scene(60, 60, background, np.zeros((12, 2), np.int64), (sprite,), 1, (), ())
        masks[name] = [render_frame(scene, t).objects for t in (0, 11)]
    np.testing.assert_array_equal(*masks["rigid"])
    changed = (masks["bent"][0] != masks["bent"][1]).sum()
    assert changed > 20, f"the bending outline moved only {changed} pixels"


def test_similar_colour_textures_take_the_palette():
    rng = np.random.default_rng(4)
    palette = np.array([[40, 160, 60], [200, 200, 40]], np.float32)
    for kind in ("stripes", "checker"):
        texture = Texture.random(rng, 20.0, kind, palette=palette)
        nearest = np.abs(texture.palette()[:, None] - palette[None]).max(-1).min(-1)
        assert nearest.max() < 50  # each colour is a palette colour, jittered
    noise = Texture.random(rng, 20.0, "noise", palette=palette).palette()  # mixtures of jittered palette colours
    assert (noise >= palette.min(0) - 50).all() and (noise <= palette.max(0) + 50).all()
    free = np.concatenate([Texture.random(rng, 20.0, "checker").palette() for _ in range(10)])
    assert (free < palette.min(0) - 50).any(axis=1).any()  # without a palette, colours go anywhere
