"""Careless and broken inputs through the real command line (`python -m smae ...` in a subprocess).

Every case must exit with status 2 and print exactly one line on stderr, naming the file or
argument at fault, and must leave every file that existed before exactly as it was (the data
and output folders are hashed before and after). Cases that need a root-only tmpfs mount (a full
disk, a read-only folder as root) are skipped where mounting is not allowed.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from smae.data import synth

TIMEOUT = 120
# One thread per process: the cases are short, and a busy 2-core machine runs them faster so.
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "SMAE_KERNELS": "torch"}
ENV.pop("SMAE_DEBUG", None)


def smae(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "smae", *map(str, args)], capture_output=True, text=True,
                          timeout=TIMEOUT, env=env or ENV)


def tree_hashes(*folders: Path) -> dict[str, str]:
    """path -> sha256 of every file (and 'dir' for every folder) under `folders`."""
    hashes = {}
    for folder in folders:
        if folder.is_file():
            hashes[str(folder)] = hashlib.sha256(folder.read_bytes()).hexdigest()
            continue
        for path in sorted(folder.rglob("*")) if folder.exists() else []:
            hashes[str(path)] = "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return hashes


def assert_one_line_error(done: subprocess.CompletedProcess, *names: str) -> str:
    """Exit status 2, one line on stderr, no traceback, naming every one of `names`."""
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr[-3000:]
    assert len(lines) == 1, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    for name in names:
        assert str(name) in lines[0], (name, lines[0])
    return lines[0]


def fails_cleanly(args: list, names: list, watched: list[Path], env: dict | None = None) -> str:
    """Runs `smae args`, expects one line naming `names`, and no change under `watched`."""
    before = tree_hashes(*watched)
    line = assert_one_line_error(smae(*args, env=env), *names)
    after = tree_hashes(*watched)
    assert {k: v for k, v in after.items() if k in before} == before, "a file that existed before changed"
    return line


# --- shared data: one small synthetic set, results and a run, made once ---------------------------------

@dataclasses.dataclass
class World:
    root: Path
    davis: Path
    jhmdb: Path
    vip: Path
    videos: Path
    davis_results: Path
    jhmdb_results: Path
    vip_results: Path

    def copy(self, what: str, to: Path) -> Path:
        """A private copy of one folder, for a case that breaks a file in it."""
        return Path(shutil.copytree(getattr(self, what), to / what))


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    from smae.propagation import PixelFeatures, propagate_dataset, protocol_preset

    root = tmp_path_factory.mktemp("world")
    small = synth.VideoSetSpec(videos=2, frames=(5, 5), height=48, width=64, objects=(1, 2), entering=(0, 0))
    preset = synth.SynthPreset(
        mp4=synth.VideoSetSpec(videos=4, frames=(24, 24), height=32, width=32, objects=(1, 2), entering=(0, 0)),
        davis=small, jhmdb=dataclasses.replace(small, videos=1, objects=(1, 1)), vip=dataclasses.replace(small, videos=1))
    synth.generate(root, preset, formats=("mp4", "davis", "jhmdb", "vip"))
    protocol = dataclasses.replace(protocol_preset("crw"), n_context=2)
    results = {}
    for task in ("davis", "jhmdb", "vip"):
        results[task] = root / f"results-{task}"
        propagate_dataset(task, root / task, results[task], PixelFeatures(stride=8), protocol, progress=False, evaluate=False)
    return World(root, root / "davis", root / "jhmdb", root / "vip", root / "videos",
                 results["davis"], results["jhmdb"], results["vip"])


def propagate_args(data: Path, out: Path, *extra) -> list:
    """A fast propagation: raw pixels, CRW's protocol at native size."""
    return ["propagate", "--task", "davis", "--data", data, "--out", out, "--features", "pixels", "--preset", "tiny",
            "--protocol", "crw", *extra]


def pretrain_args(data: Path, out: Path, *overrides: str) -> list:
    """One or two steps of a 32x32 tiny model."""
    return ["pretrain", "--preset", "tiny", "--data", data, "--out", out, "--set", "model.encoder.img_size=32",
            "batch_size=4", "epochs=1", "num_workers=0", "checkpoint_every=1", "figure_pairs=1", "gap_range=2,8",
            *overrides]


# --- arguments and config values ---------------------------------------------------------------------------

@pytest.mark.parametrize("args, names", [
    ([], ["COMMAND"]),
    (["propagate", "--task", "davis"], ["--out"]),
    (["propagate", "--task", "davis", "--out", "o"], ["--task", "--data"]),
    (["propagate", "--video", "clip.mp4", "--out", "o"], ["--video", "--mask"]),
    (["propagate", "--task", "davis", "--video", "clip.mp4", "--out", "o"], ["--video", "--task"]),
    (["propagate", "--task", "kitti", "--data", "d", "--out", "o"], ["--task", "kitti"]),
    (["evaluate", "--task", "davis", "--data", "d", "--results", "r", "--workers", "many"], ["--workers", "many"]),
    (["pretrain", "--data", "d", "--out", "o", "--preset", "huge"], ["--preset", "huge"]),
], ids=["no-command", "missing-arguments", "task-without-data", "video-without-mask", "task-and-video", "bad-choice",
        "not-an-int", "unknown-preset"])
def test_argument_errors_are_one_line(args, names):
    assert_one_line_error(smae(*args), *names)


@pytest.mark.parametrize("overrides, names", [
    (["epochs=-1"], ["epochs=-1", "at least 1"]),
    (["batch_size=0"], ["batch_size=0"]),
    (["model.mask_ratio=1.5"], ["model.mask_ratio=1.5", "(0, 1)"]),
    (["model.mask_ratio=0"], ["model.mask_ratio=0", "masked patches to score"]),
    (["model.encoder.embed_dim=130"], ["model.encoder.embed_dim=130", "num_heads"]),
    (["epochs=ten"], ["epochs", "'ten'"]),
    (["epoch=3"], ["epoch", "known keys"]),
    (["epochs"], ["epochs", "key=value"]),
    (["gap_range=9,3"], ["gap_range=9,3"]),
    (["base_lr=nan"], ["base_lr=nan"]),
    (["precision=fp8"], ["precision", "fp8"]),
    (["model.decoder_variant=diagonal"], ["model.decoder_variant=diagonal"]),
    (["flip_prob=2"], ["flip_prob=2"]),
], ids=lambda value: str(value))
def test_bad_config_values_fail_before_anything_is_written(world, tmp_path, overrides, names):
    out = tmp_path / "run"
    fails_cleanly(["pretrain", "--preset", "tiny", "--data", world.videos, "--out", out, "--set", *overrides], names,
                  [world.videos])
    assert not out.exists(), "no config.json (nor folder) for a config that was never valid"


def test_bad_protocol_value_and_batch_size(world, tmp_path):
    out = tmp_path / "results"
    fails_cleanly(propagate_args(world.davis, out, "--set", "topk=0"), ["--set topk=0"], [world.davis])
    fails_cleanly(propagate_args(world.davis, out, "--set", "temperature=-1"), ["temperature=-1"], [world.davis])
    fails_cleanly(propagate_args(world.davis, out, "--batch-size", "0"), ["--batch-size"], [world.davis])
    fails_cleanly(["evaluate", "--task", "davis", "--data", world.davis, "--results", world.davis_results,
                   "--workers", "0"], ["--workers"], [world.davis_results])
    assert not out.exists()


def test_unavailable_device(world, tmp_path):
    out = tmp_path / "results"
    fails_cleanly(propagate_args(world.davis, out, "--device", "tpu"), ["--device tpu"], [world.davis])
    import torch

    if not torch.cuda.is_available():
        line = fails_cleanly(propagate_args(world.davis, out, "--device", "cuda"), ["--device cuda", "CUDA"], [world.davis])
        assert "--device cpu" in line  # says what to do
    else:
        fails_cleanly(propagate_args(world.davis, out, "--device", f"cuda:{torch.cuda.device_count()}"), ["--device cuda"],
                      [world.davis])
    assert not out.exists()


# --- where outputs go ------------------------------------------------------------------------------------

def test_propagate_never_writes_into_its_data(world, tmp_path):
    """The ground truth must survive an --out pointed at it (it used to be overwritten and scored 1.0)."""
    annotations = world.davis / "Annotations" / "480p"
    fails_cleanly(propagate_args(world.davis, annotations), ["--out", "inside --data"], [world.davis])
    fails_cleanly(propagate_args(world.davis, world.davis), ["--out", "inside --data"], [world.davis])
    fails_cleanly(propagate_args(world.davis, world.root), ["--out", "holds --data"], [world.root])
    fails_cleanly(pretrain_args(world.videos, world.videos / "run"), ["--out", "inside --data"], [world.videos])


def test_outputs_that_are_files_or_under_files(world, tmp_path):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("keep me")
    watched = [a_file, world.davis, world.videos]
    fails_cleanly(propagate_args(world.davis, a_file), ["--out", "is a file"], watched)
    fails_cleanly(propagate_args(world.davis, a_file / "results"), ["--out", "under the file"], watched)
    fails_cleanly(pretrain_args(world.videos, a_file / "run"), ["--out", "under the file"], watched)
    fails_cleanly(["demo", "--out", a_file], ["--out", "is a file"], watched)
    fails_cleanly(["evaluate", "--task", "davis", "--data", world.davis, "--results", world.davis_results,
                   "--json", a_file / "scores.json"], ["--json", str(a_file)], watched)


def test_json_destination_is_checked_before_scoring(world, tmp_path):
    evaluate = ["evaluate", "--task", "davis", "--data", world.davis, "--results", world.davis_results]
    watched = [world.davis, world.davis_results]
    fails_cleanly([*evaluate, "--json", tmp_path], ["--json", "is a folder"], watched)
    fails_cleanly([*evaluate, "--json", tmp_path / "missing" / "s.json"], ["--json", "does not exist"], watched)
    fails_cleanly([*evaluate, "--json", world.davis / "ImageSets" / "2017" / "val.txt"], ["--json", "inside --data"], watched)


def test_missing_inputs(world, tmp_path):
    nowhere = tmp_path / "nowhere"
    fails_cleanly(propagate_args(nowhere, tmp_path / "r"), ["--data", str(nowhere)], [])
    fails_cleanly(pretrain_args(nowhere, tmp_path / "r"), ["--data", str(nowhere)], [])
    fails_cleanly(["evaluate", "--task", "davis", "--data", world.davis, "--results", nowhere], [str(nowhere)], [world.davis])
    fails_cleanly(["evaluate", "--task", "vip", "--data", world.vip, "--results", world.vip_results, "--split", "test"],
                  ["test_videos.txt"], [world.vip, world.vip_results])
    fails_cleanly(["pretrain", "--data", world.videos, "--out", tmp_path / "r", "--resume"], ["--resume", "checkpoint.pt"],
                  [world.videos])
    fails_cleanly(["pretrain", "--data", world.videos, "--out", tmp_path / "r"], ["--preset"], [world.videos])
    fails_cleanly(["propagate", "--task", "davis", "--data", world.davis, "--out", tmp_path / "r", "--weights",
                   nowhere / "dino.pth", "--preset", "tiny"], [nowhere / "dino.pth"], [world.davis])
    assert not (tmp_path / "r").exists()


def test_existing_run_and_demo_folders_are_not_replaced(world, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoint.pt").write_bytes(b"weeks of training")
    fails_cleanly(pretrain_args(world.videos, run), ["--resume", str(run)], [run])
    thesis = tmp_path / "thesis"
    thesis.mkdir()
    (thesis / "chapter1.tex").write_text("precious")
    fails_cleanly(["demo", "--out", thesis], ["--out", "not made by smae demo"], [thesis])


# --- broken files --------------------------------------------------------------------------------------

def _truncate(path: Path, keep: float) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def _scored_result(results: Path) -> Path:
    return sorted(sorted(results.glob("synth*"))[0].glob("*.png"))[2]  # a frame DAVIS scores (not first, not last)


@pytest.mark.parametrize("damage", ["garbage", "empty", "truncated", "rgb", "wrong-size", "id-too-high", "missing"])
def test_broken_result_png(world, tmp_path, damage):
    results = world.copy("davis_results", tmp_path)
    frame = _scored_result(results)
    if damage == "garbage":
        frame.write_text("not a png")
    elif damage == "empty":
        frame.write_bytes(b"")
    elif damage == "truncated":
        _truncate(frame, 0.6)
    elif damage == "rgb":
        Image.fromarray(np.zeros((48, 64, 3), np.uint8)).save(frame)
    elif damage == "wrong-size":
        Image.fromarray(np.zeros((24, 32), np.uint8)).save(frame)
    elif damage == "id-too-high":
        Image.fromarray(np.full((48, 64), 9, np.uint8)).save(frame)
    else:
        frame.unlink()
    json_path = tmp_path / "scores.json"
    fails_cleanly(["evaluate", "--task", "davis", "--data", world.davis, "--results", results, "--json", json_path],
                  [frame], [world.davis, results])
    assert not json_path.exists()


def test_broken_annotation_png(world, tmp_path):
    davis = world.copy("davis", tmp_path)
    first = sorted((davis / "Annotations" / "480p" / "synth001").glob("*.png"))[0]
    first.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    out = tmp_path / "results"
    fails_cleanly(propagate_args(davis, out), [first], [davis])
    assert not out.exists(), "checked before anything is written"
    fails_cleanly(["evaluate", "--task", "davis", "--data", davis, "--results", world.davis_results], [first],
                  [davis, world.davis_results])


@pytest.mark.parametrize("damage", ["header", "body", "other-size"])
def test_broken_jpeg_frame(world, tmp_path, damage):
    """A broken header is found before any work; a frame cut after its header when it is decoded
    (in the first video: before any other output)."""
    davis = world.copy("davis", tmp_path)
    frame = sorted((davis / "JPEGImages" / "480p" / "synth000").glob("*.jpg"))[2]
    if damage == "header":
        _truncate(frame, 0.02)
    elif damage == "body":
        _truncate(frame, 0.5)
    else:
        Image.fromarray(np.zeros((40, 64, 3), np.uint8)).save(frame)
    out = tmp_path / "results"
    fails_cleanly(propagate_args(davis, out), [frame], [davis])
    assert not list(out.glob("synth*")) and not any((out / ".partial").glob("*")), "nothing half-written"


@pytest.mark.parametrize("damage", ["garbage", "truncated", "no-pos_img"])
def test_broken_jhmdb_mat(world, tmp_path, damage):
    jhmdb = world.copy("jhmdb", tmp_path)
    mat = next(jhmdb.rglob("*.mat"))
    if damage == "garbage":
        mat.write_text("MATLAB 5.0 MAT-file, but not really")
    elif damage == "truncated":
        _truncate(mat, 0.3)
    else:
        from scipy.io import savemat

        savemat(mat, {"joints": np.zeros((2, 15, 5))})
    out = tmp_path / "results"
    if damage == "garbage":  # the same reader serves both commands: one propagation is enough
        fails_cleanly(["propagate", "--task", "jhmdb", "--data", jhmdb, "--out", out, "--features", "pixels", "--preset",
                       "tiny", "--protocol", "crw"], [mat], [jhmdb])
        assert not out.exists()
    fails_cleanly(["evaluate", "--task", "jhmdb", "--data", jhmdb, "--results", world.jhmdb_results], [mat],
                  [jhmdb, world.jhmdb_results])


@pytest.mark.parametrize("damage", ["garbage", "wrong-shape", "pickled-objects"])
def test_broken_jhmdb_result(world, tmp_path, damage):
    results = world.copy("jhmdb_results", tmp_path)
    joints = next(results.rglob("*.npy"))
    if damage == "garbage":
        joints.write_bytes(b"\x93NUMPY garbage")
    elif damage == "wrong-shape":
        np.save(joints, np.zeros((2, 15, 2)))
    else:
        np.save(joints, np.array([{"x": 1}], dtype=object), allow_pickle=True)
    fails_cleanly(["evaluate", "--task", "jhmdb", "--data", world.jhmdb, "--results", results], [joints],
                  [world.jhmdb, results])


def test_vip_result_with_a_class_vip_does_not_have(world, tmp_path):
    results = world.copy("vip_results", tmp_path)
    frame = sorted(next(results.glob("video*")).glob("*.png"))[1]
    Image.fromarray(np.full((48, 64), 20, np.uint8)).save(frame)
    fails_cleanly(["evaluate", "--task", "vip", "--data", world.vip, "--results", results], [frame, "class id 20"],
                  [world.vip, results])


# --- unwritable and full disks (a tmpfs mount; root only) ------------------------------------------------

@contextlib.contextmanager
def mounted_tmpfs(folder: Path, options: str):
    folder.mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True)
    except FileNotFoundError:
        pytest.skip("no mount command")
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.decode().strip()})")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


@pytest.fixture
def read_only_folder(tmp_path):
    """A folder no process may write in: chmod for an ordinary user, a read-only mount for root."""
    folder = tmp_path / "read-only"
    if os.geteuid() != 0:
        folder.mkdir()
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    with mounted_tmpfs(folder, "ro,size=64k"):
        yield folder


def test_read_only_outputs(world, read_only_folder):
    watched = [world.davis, world.videos, read_only_folder]
    for args in (propagate_args(world.davis, read_only_folder / "results"),
                 pretrain_args(world.videos, read_only_folder / "run"),
                 ["demo", "--out", read_only_folder / "demo"],
                 ["evaluate", "--task", "davis", "--data", world.davis, "--results", world.davis_results,
                  "--json", read_only_folder / "scores.json"]):
        fails_cleanly(args, [str(read_only_folder)], watched)


def _fill(folder: Path, leave: int = 0) -> None:
    """Fills the file system of `folder` up to `leave` free bytes."""
    with open(folder / "filler", "wb") as filler:
        while True:
            free = os.statvfs(folder).f_bavail * os.statvfs(folder).f_frsize - leave
            if free <= 0:
                break
            try:
                filler.write(b"\0" * min(free, 1 << 16))
                filler.flush()
            except OSError:
                break


def test_full_disk_is_reported_as_disk_full(world, tmp_path):
    """A full disk found up front (no space at all), and found while writing: a checkpoint, which
    torch.save reports as an 'enforce fail' RuntimeError, and propagation results."""
    with mounted_tmpfs(tmp_path / "disk", "size=256k") as disk:
        (disk / "old-results").mkdir()
        (disk / "old-results" / "keep.txt").write_text("written before")
        run = disk / "run"
        line = fails_cleanly(pretrain_args(world.videos, run), ["disk full", str(run / "checkpoint.pt")], [world.videos, disk])
        assert not list(run.glob(".*tmp*")), "no temporary file left behind"
        assert not (run / "checkpoint.pt").exists() and "Traceback" not in line
        shutil.rmtree(run)
        _fill(disk, leave=8192)  # room for propagate.json, not for the results
        out = disk / "results"
        fails_cleanly(propagate_args(world.davis, out), ["disk full", str(out)], [world.davis, disk])
        assert not list(out.glob("synth*")) and not any((out / ".partial").glob("*")), "nothing half-written"
        shutil.rmtree(out)
        _fill(disk)
        for args in (["evaluate", "--task", "davis", "--data", world.davis, "--results", world.davis_results,
                      "--json", disk / "scores.json"], ["demo", "--out", disk / "demo"]):
            fails_cleanly(args, ["disk full", str(disk)], [world.davis, disk])


# --- the error path itself ---------------------------------------------------------------------------------

def test_smae_debug_shows_the_traceback(world, tmp_path):
    done = smae(*propagate_args(world.davis, world.davis), env={**ENV, "SMAE_DEBUG": "1"})
    assert done.returncode != 0 and "Traceback" in done.stderr and "UserError" in done.stderr


def test_a_bug_keeps_its_traceback(monkeypatch):
    """In process: only mistakes a user can fix become one line."""
    import smae.commands.info
    from smae import cli

    def broken(args):
        np.zeros(3).reshape(2, 2)  # a ValueError from NumPy: a bug, not the user's input

    monkeypatch.setattr(smae.commands.info, "run", broken)
    with pytest.raises(ValueError, match="reshape"):
        cli.main(["info"])
    monkeypatch.setattr(smae.commands.info, "run", lambda args: {}["missing"])
    with pytest.raises(KeyError):
        cli.main(["info"])


def test_os_errors_are_read_in_one_place(tmp_path):
    import errno

    from smae.cli import user_message

    for code, words in ((errno.ENOSPC, "disk full"), (errno.EROFS, "read-only"), (errno.ENOTDIR, "is a file"),
                        (errno.EACCES, "permission denied")):
        assert words in user_message(OSError(code, os.strerror(code), str(tmp_path / "x")))
    wrapped = RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")
    wrapped.__context__ = OSError(errno.ENOSPC, "No space left on device")
    assert "disk full" in user_message(wrapped)
    assert user_message(OSError(errno.EBADF, "Bad file descriptor")) is None  # not the user's to fix


# Runs `smae propagate` with a real SIGINT raised by the process itself at a fixed point: after
# the second prediction of the second video (not after a wait, whose outcome depends on the machine's
# load). Progress lines are off (an interval no run reaches), so stderr holds only the time
# estimate and the answer to the interrupt.
INTERRUPTED_PROPAGATE = """
import signal, sys
from smae import progress
from smae.cli import main
from smae.propagation import pipeline
progress.LOG_INTERVAL = float("inf")
# A shell starts background jobs with SIGINT ignored, and Python then keeps it ignored: restore
# the handler a terminal session has, so the test does not depend on how pytest was started.
signal.signal(signal.SIGINT, signal.default_int_handler)
propagate_video, videos = pipeline.propagate_video, []
def interrupted(video, *args, **kwargs):
    videos.append(video.name)
    for index, prediction in enumerate(propagate_video(video, *args, **kwargs)):
        if len(videos) == 2 and index == 1:
            signal.raise_signal(signal.SIGINT)
        yield prediction
pipeline.propagate_video = interrupted
sys.exit(main())
"""


def test_ctrl_c_during_propagate_gives_the_resume_command(world, tmp_path):
    """SIGINT in the second video: one line with the command that resumes, no traceback, the
    finished video whole, nothing half-written; the printed command then finishes the run."""
    davis = world.copy("davis", tmp_path)
    out = tmp_path / "results"
    done = subprocess.run([sys.executable, "-c", INTERRUPTED_PROPAGATE, *map(str, propagate_args(davis, out, "--batch-size", "1"))],
                          capture_output=True, text=True, timeout=TIMEOUT, env=ENV)
    first, *rest = done.stderr.strip().splitlines()
    assert first.startswith("first video synth000: 5 frames in"), done.stderr  # the time estimate
    assert "s/frame" in first and "other 5 frames" in first
    assert done.returncode == 130, done.stderr
    assert "Traceback" not in done.stderr and len(rest) == 1, done.stderr
    rest = rest[0]
    assert "interrupted" in rest and "--resume" in rest
    assert not any((out / ".partial").glob("*"))
    assert [p.name for p in out.glob("synth*")] == ["synth000"] and len(list(out.glob("synth000/*.png"))) == 5
    command = shlex.split(rest.split("continue with: ", 1)[1])
    assert command[0] == "smae"
    done = subprocess.run([sys.executable, "-m", *command], capture_output=True, text=True, timeout=TIMEOUT, env=ENV)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "J&F-Mean" in done.stdout


# --- feedback on long work ---------------------------------------------------------------------------------

@pytest.mark.parametrize("command", ["", "propagate", "pretrain", "evaluate", "demo", "synth", "info"])
def test_help_does_not_import_torch(command):
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "smae", *command.split(), "--help"],
                          capture_output=True, text=True, timeout=TIMEOUT, env=ENV)
    assert done.returncode == 0 and "usage: smae" in done.stdout
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    assert "torch" not in imported and "numpy" not in imported


def test_progress_in_a_log_file_is_plain_lines(monkeypatch):
    """Not a terminal: one status line per interval, no carriage returns, nothing at all for a
    job shorter than the interval."""
    import time

    from smae import progress

    log = io.StringIO()
    with progress.progress_bar(stream=log, total=10, unit="frame") as bar:
        bar.update(10)
    assert log.getvalue() == ""
    monkeypatch.setattr(progress, "LOG_INTERVAL", 0.01)
    with progress.progress_bar(stream=log, total=6, unit="frame") as bar:
        for _ in range(6):
            time.sleep(0.03)
            bar.update(1)
    text = log.getvalue()
    assert "\r" not in text and text.endswith("\n")
    lines = text.splitlines()
    assert 3 <= len(lines) <= 7 and all("frame" in line for line in lines), lines


# --- weights files and frame folders ------------------------------------------------------------------------



def _tiny_encoder_state() -> dict:
    from smae.models import build_encoder

    return build_encoder("tiny").state_dict()


@pytest.mark.parametrize("content", ["garbage", "empty", "text", "truncated"])
def test_broken_weights_file(world, tmp_path, content):
    import torch

    weights = tmp_path / "weights.pth"
    if content == "garbage":
        weights.write_bytes(np.random.default_rng(0).bytes(4096))
    elif content == "empty":
        weights.write_bytes(b"")
    elif content == "text":
        weights.write_text("<html>download failed</html>")
    else:
        torch.save(_tiny_encoder_state(), weights)
        _truncate(weights, 0.5)
    line = fails_cleanly(["propagate", "--task", "davis", "--data", world.davis, "--out", tmp_path / "results",
                          "--weights", weights, "--preset", "tiny", "--protocol", "crw"], [weights], [world.davis, weights])
    assert "weights_only=False" not in line  # never suggest unpickling an untrusted file


@pytest.mark.parametrize("layout", ["dino", "mae"])
def test_full_training_checkpoints_of_other_projects(world, tmp_path, layout):
    """DINO and MAE save their argparse namespace beside the weights: they load with
    weights_only=True; an entry the file does not hold is one line naming the file and the key."""
    import argparse

    import torch

    state = _tiny_encoder_state()
    args = argparse.Namespace(arch="vit_small", lr=0.0005)
    checkpoint = ({"teacher": state, "student": state, "optimizer": {}, "epoch": 3, "args": args} if layout == "dino"
                  else {"model": state, "optimizer": {}, "epoch": 3, "scaler": {}, "args": args})
    weights = tmp_path / f"{layout}_checkpoint.pth"
    torch.save(checkpoint, weights)
    propagate = ["propagate", "--task", "davis", "--data", world.davis, "--out", tmp_path / "results",
                 "--weights", weights, "--preset", "tiny", "--protocol", "crw"]
    done = smae(*propagate)
    assert done.returncode == 0, done.stderr[-2000:]
    absent = "model" if layout == "dino" else "teacher"
    fails_cleanly([*propagate[:6], tmp_path / "again", *propagate[7:], "--checkpoint-key", absent],
                  [weights, absent], [world.davis, weights])


def test_smae_checkpoint_builds_its_own_encoder(world, tmp_path):
    """A `tiny` training checkpoint propagates without --preset (the default, vits16, does not fit)."""
    import torch

    from smae.config import to_dict
    from smae.models import build_model
    from smae.train.config import train_preset

    checkpoint = tmp_path / "checkpoint.pt"
    torch.save({"model": build_model("tiny").state_dict(), "optimizer": {}, "scaler": {}, "step": 1,
                "config": to_dict(train_preset("tiny")), "preset": "tiny", "rng": []}, checkpoint)
    done = smae("propagate", "--task", "davis", "--data", world.davis, "--out", tmp_path / "results",
                "--weights", checkpoint, "--protocol", "crw")
    assert done.returncode == 0, done.stderr[-2000:]


def test_foreign_weights_with_the_wrong_preset_name_the_one_that_fits(world, tmp_path):
    import torch

    weights = tmp_path / "tiny_encoder.pth"
    torch.save(_tiny_encoder_state(), weights)
    fails_cleanly(["propagate", "--task", "davis", "--data", world.davis, "--out", tmp_path / "results",
                   "--weights", weights, "--preset", "vits16", "--protocol", "crw"], [weights, "--preset tiny"],
                  [world.davis, weights])


def test_decompression_bomb_frame_folder_is_skipped(world, tmp_path):
    """A 20000x10000 PNG in a frame folder: that folder is skipped with a warning, training goes on."""
    data = tmp_path / "videos"
    bomb = data / "bomb"
    bomb.mkdir(parents=True)
    shutil.copy(sorted(Path(world.videos).glob("*.mp4"))[0], data)  # one good video beside the bomb
    Image.new("L", (20000, 10000)).save(bomb / "00000.png")
    for index in range(1, 20):  # long enough for any frame gap, so it is drawn, not filtered
        shutil.copy(bomb / "00000.png", bomb / f"{index:05d}.png")
    done = smae(*pretrain_args(data, tmp_path / "run"))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "bomb" in done.stderr and "Traceback" not in done.stderr
