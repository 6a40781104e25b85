"""Any clip with a mask: `smae propagate --video` and the Python API `smae.propagate` (one code
path), frames from a file, a folder, arrays or a tensor; a real sample video with a hand-made
first mask; the one-line errors for bad masks and frames; what a run says and records."""
from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import warnings
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

import smae
from smae.cli import main as cli_main
from smae.data.synth import PRESETS, generate
from smae.errors import UserError
from smae.layouts.images import read_label_png, read_palette
from smae.propagation import PixelFeatures, protocol_preset
from smae.propagation.videos import list_videos

REPO = Path(__file__).resolve().parents[1]
# A palette that is not DAVIS's: the outputs must carry the mask's own colours.
PALETTE = np.zeros((256, 3), np.uint8)
PALETTE[1], PALETTE[2] = (255, 64, 0), (0, 160, 255)
# Frames at their own size (64x96), not scaled to 480x880: seconds on a CPU.
FAST = dataclasses.replace(protocol_preset("siammae", "clip"), resize="native")


def write_mask(path: Path, labels: np.ndarray) -> Path:
    image = Image.fromarray(labels.astype(np.uint8), mode="P")
    image.putpalette(PALETTE.ravel().tolist())
    image.save(path)
    return path


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """(frames folder, its first annotation) of a small synthetic DAVIS sequence."""
    root = tmp_path_factory.mktemp("synth")
    spec = dataclasses.replace(PRESETS["tiny"].davis, videos=1, frames=(10, 10), height=64, width=96)
    generate(root, dataclasses.replace(PRESETS["tiny"], davis=spec), formats=("davis",))
    video = list_videos("davis", root / "davis")[0]
    mask = write_mask(root / "first.png", read_label_png(video.annotation))
    return video.frames[0].parent, mask, video.frames


def run_cli(*args) -> int:
    return cli_main(["propagate", *map(str, args)])


def test_the_api_reads_folders_arrays_and_tensors_alike(clip):
    folder, mask, paths = clip
    arrays = [np.asarray(Image.open(path).convert("RGB")) for path in paths]
    tensor = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 255  # (T, 3, H, W) in [0, 1]
    results = [list(smae.propagate(frames, mask, encoder=PixelFeatures(stride=8), protocol=FAST))
               for frames in (folder, list(paths), arrays, tensor)]
    assert len(results[0]) == len(paths) and results[0][0].dtype == np.uint8
    for other in results[1:]:
        for a, b in zip(results[0], other):
            np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(results[0][0], read_label_png(mask))  # frame 0: the given mask


def test_the_command_line_writes_what_the_api_yields(clip, tmp_path, capsys):
    folder, mask, paths = clip
    assert run_cli("--video", folder, "--mask", mask, "--out", tmp_path / "out", "--features", "pixels",
                   "--preset", "vits8", "--set", "resize=native") == 0
    api = list(smae.propagate(folder, mask, encoder=PixelFeatures(stride=8, cells=4), protocol=FAST))
    written = sorted((tmp_path / "out" / folder.name).glob("*.png"))
    assert [p.stem for p in written] == [p.stem for p in paths]
    for path, labels in zip(written, api):
        np.testing.assert_array_equal(read_label_png(path), labels)
    np.testing.assert_array_equal(read_palette(written[-1]), PALETTE)
    assert f"masks in {tmp_path / 'out' / folder.name}" in capsys.readouterr().out


def test_a_later_start_and_a_new_object(clip):
    """Frames before the first mask come out empty and are not encoded; a new object's mask
    at a later frame is that frame's output for it."""
    folder, mask, paths = clip

    class Counting(PixelFeatures):
        frames = 0

        def __call__(self, frames):
            Counting.frames += frames.shape[0]
            return super().__call__(frames)

    first = read_label_png(mask)
    new = np.zeros_like(first)
    new[10:20, 10:30] = 9
    masks = list(smae.propagate(folder, first, mask_frame=3, new_objects={6: new}, encoder=Counting(stride=8), protocol=FAST))
    assert len(masks) == len(paths) and Counting.frames == len(paths) - 3
    assert all(not m.any() for m in masks[:3])
    assert (masks[6][new == 9] == 9).all() and 9 not in masks[5]


def test_api_errors_speak_python(clip):
    folder, mask, _ = clip
    first = read_label_png(mask)
    with pytest.raises(UserError, match=r"^first_mask: the mask is 10x10, the frames 96x64"):
        smae.propagate(folder, np.ones((10, 10), np.uint8), encoder=PixelFeatures())
    with pytest.raises(UserError, match=r"^new_objects\[4\]: the mask holds no object"):
        smae.propagate(folder, first, new_objects={4: np.zeros_like(first)}, encoder=PixelFeatures())
    with pytest.raises(UserError, match=r"^first_mask: frame 50 is not a frame"):
        smae.propagate(folder, first, mask_frame=50, encoder=PixelFeatures())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        next(smae.propagate(folder, first, encoder="tiny", device="cpu", protocol=FAST))
    assert caught and all("--" not in str(w.message) for w in caught), [str(w.message) for w in caught]


def one_line_error(args, capsys, *expected) -> str:
    assert run_cli(*args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for part in expected:
        assert part in err, err
    return err


def test_bad_masks_and_frames_are_one_line_errors(clip, tmp_path, capsys):
    folder, mask, _ = clip
    first = read_label_png(mask)
    out = tmp_path / "out"
    cases = {
        "small.png": (np.ones((32, 48)), ["--mask", "48x32", "96x64"]),
        "empty.png": (np.zeros_like(first), ["holds no object"]),
        "void.png": (np.where(first > 0, 255, 0), ["only 255", "void"]),
    }
    for name, (labels, expected) in cases.items():
        bad = write_mask(tmp_path / name, labels)
        one_line_error(["--video", folder, "--mask", bad, "--out", out, "--features", "pixels"], capsys, str(bad), *expected)
    tiny = tmp_path / "tiny"
    tiny.mkdir()
    for index in range(3):
        Image.new("RGB", (12, 8)).save(tiny / f"{index}.png")
    one_line_error(["--video", tiny, "--mask", mask, "--out", out, "--features", "pixels"], capsys, "12x8", "too small")
    huge = tmp_path / "huge"
    huge.mkdir()
    Image.new("L", (10000, 9000)).save(huge / "0.png")  # 90 megapixels, over the limit
    one_line_error(["--video", huge, "--mask", mask, "--out", out, "--features", "pixels"], capsys, "10000x9000", "megapixel")
    one_line_error(["--video", folder, "--out", out], capsys, "--video needs --mask")
    assert not out.exists()


def test_clip_results_are_not_overwritten_without_resume(clip, tmp_path, capsys):
    folder, mask, _ = clip
    args = ["--video", folder, "--mask", mask, "--out", tmp_path / "out", "--features", "pixels", "--set", "resize=native"]
    assert run_cli(*args) == 0
    record = (tmp_path / "out" / "propagate.json").read_text()
    one_line_error(args[:-1] + ["topk=3"], capsys, "already holds results", "--resume", "new --out")
    assert (tmp_path / "out" / "propagate.json").read_text() == record
    assert run_cli(*args, "--resume") == 0 and "nothing to do" in capsys.readouterr().out


def test_the_record_holds_the_settings_used(clip, tmp_path):
    """resize=native: no fixed size recorded, the input size each frame size was resized to."""
    folder, mask, _ = clip
    assert run_cli("--video", folder, "--mask", mask, "--out", tmp_path / "out", "--features", "pixels",
                   "--preset", "vits8", "--set", "resize=native", "--batch-size", "3") == 0
    record = json.loads((tmp_path / "out" / "propagate.json").read_text())
    assert record["protocol"]["resize"] == "native" and record["protocol"]["size"] is None
    assert record["input_sizes"] == [{"frames": [64, 96], "input": [64, 96]}]
    assert record["batch_size"] == 3 and record["protocol"]["first_frame"] == "given"


def test_help_lists_set_keys_defaults_and_the_fast_cpu_setting(capsys):
    with pytest.raises(SystemExit):
        cli_main(["propagate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for part in ("topk=7", "n_context=20", "size=480,880", "resize=fixed", "(default: siammae)",
                 "default: encoder)", "(default: 8)", "resize=native is the fast setting"):
        assert part in text, part


def test_evaluate_into_a_closed_pipe_is_quiet(tmp_path):
    """`smae evaluate ... | head`: the reader leaving early is not an error, and --json is written."""
    root = tmp_path / "synth"
    generate(root, dataclasses.replace(PRESETS["tiny"], davis=dataclasses.replace(PRESETS["tiny"].davis, videos=2, frames=(4, 4))),
             formats=("davis",))
    gt = root / "davis" / "Annotations" / "480p"
    command = [sys.executable, "-m", "smae", "evaluate", "--gt", str(gt), "--results", str(gt), "--json", str(tmp_path / "s.json"),
               "--workers", "1"]
    reader = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO)
    reader.stdout.close()  # as `head` does once it has its lines
    stderr = reader.stderr.read().decode()
    assert reader.wait(timeout=120) == 0, stderr
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr and "Exception ignored" not in stderr
    assert json.loads((tmp_path / "s.json").read_text())["J&F-Mean"] == 1.0


def test_evaluate_refuses_results_of_another_task_and_names_the_layout(clip, tmp_path, capsys):
    folder, mask, _ = clip
    data = folder.parents[2]  # the DAVIS root
    out = tmp_path / "out"
    assert run_cli("--video", folder, "--mask", mask, "--out", out, "--features", "pixels", "--set", "resize=native") == 0
    assert cli_main(["evaluate", "--task", "davis", "--data", str(data), "--results", str(out)]) == 2
    assert "--video run" in capsys.readouterr().err
    assert run_cli("--task", "jhmdb", "--data", data, "--out", tmp_path / "j", "--features", "pixels") == 2
    assert "looks like a DAVIS-2017 folder (--task davis)" in capsys.readouterr().err


def test_a_real_video_with_a_hand_made_mask(tmp_path, capsys):
    """carphone (176x144, 120 frames at 30000/1001 fps): the man's head and the striped
    headrest drawn by hand as ellipses on frame 0; propagated through the command line."""
    real_videos = pytest.importorskip("real_videos")
    try:
        video = real_videos.sample_videos()["carphone_pristine.mp4"]
    except real_videos.Unavailable as error:
        pytest.skip(f"real sample videos unavailable: {error}")
    labels = Image.new("L", (176, 144))
    draw = ImageDraw.Draw(labels)
    draw.ellipse([61, 17, 115, 97], fill=1)  # head
    draw.ellipse([-4, 45, 60, 109], fill=2)  # headrest
    mask = write_mask(tmp_path / "first.png", np.asarray(labels))
    out = tmp_path / "out"
    assert run_cli("--video", video, "--mask", mask, "--out", out, "--features", "pixels", "--preset", "vits8",
                   "--set", "resize=native", "--overlays") == 0
    masks = sorted((out / "carphone_pristine").glob("*.png"))
    assert [p.stem for p in masks] == [f"{i:05d}" for i in range(120)]
    np.testing.assert_array_equal(read_label_png(masks[0]), np.asarray(labels))
    np.testing.assert_array_equal(read_palette(masks[-1]), PALETTE)
    last = read_label_png(masks[-1])
    headrest, now = np.asarray(labels) == 2, last == 2  # it stays where it was
    assert (headrest & now).sum() / (headrest | now).sum() > 0.6
    head = last == 1  # he leans to the right: still one head-sized region in the upper half
    assert 0.5 < head.sum() / (np.asarray(labels) == 1).sum() < 1.5
    assert np.argwhere(head)[:, 0].mean() < 72
    import av

    with av.open(str(out / "overlays" / "carphone_pristine" / "overlay.mp4")) as container:
        stream = container.streams.video[0]
        assert Fraction(stream.average_rate) == Fraction(30000, 1001)
        assert sum(1 for _ in container.decode(stream)) == 120
    assert "overlay video in" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["rotated.mp4", "vfr_jitter.mp4", "editlist_cut.mp4", "vp9.webm"])
def test_clip_frames_are_the_plain_decode_upright(name):
    """--video's frame i is the i-th frame a plain decode outputs, turned upright (the loader's
    definition), whatever the container says about its frames."""
    real_videos = pytest.importorskip("real_videos")
    try:
        path = real_videos.hard_case(name)
    except real_videos.Unavailable as error:
        pytest.skip(f"real sample videos unavailable: {error}")
    from smae.propagation.frames import open_frames

    frames = open_frames(path)
    truth = real_videos.sequential_decode(path)
    got = list(frames)
    assert len(got) == len(truth) and frames.size == truth[0].shape[:2]
    for index, (a, b) in enumerate(zip(got, truth)):
        np.testing.assert_array_equal(a, b, err_msg=f"frame {index}")


def test_api_weight_errors_name_python_arguments(clip, tmp_path):
    """Foreign weights of another architecture: the error names the preset that fits, as the
    encoder= argument, not as the command line's --preset."""
    folder, mask, _ = clip
    weights = tmp_path / "tiny_encoder.pth"
    torch.save(smae.build_encoder("tiny").state_dict(), weights)
    with pytest.raises(UserError) as caught:
        smae.propagate(folder, mask, encoder="vits16", weights=weights, device="cpu")
    assert "encoder=tiny" in str(caught.value) and "--" not in str(caught.value), str(caught.value)
