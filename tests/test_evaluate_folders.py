"""`smae evaluate --gt DIR --results DIR`: any two folders of per-video PNG folders, DAVIS's
official semantics (equal to --task davis on DAVIS's folders) or vos-benchmark's (checked here
against a plain per-object loop written from vos-benchmark's evaluator)."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from smae.cli import main as cli_main
from smae.layouts.images import write_indexed_png
from smae.data.synth import SynthPreset, VideoSetSpec, generate
from smae.eval.davis_evaluate import evaluate_davis
from smae.eval.davis_metrics import boundary_tolerance, dilate_disk, f_measure_from_counts, seg2bmap
from smae.eval.folders_evaluate import evaluate_folders
from smae.propagation import PixelFeatures, propagate_dataset, protocol_preset

SPEC = VideoSetSpec(videos=2, frames=(6, 6), height=32, width=48, objects=(2, 3), entering=(0, 0))


def ellipse(shape, cy, cx, ry, rx):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1


@pytest.fixture(scope="module")
def odd_layout(tmp_path_factory) -> Path:
    """Not DAVIS: grey and palette PNGs, ids 3, 7, 12 (first frame only), 20 (enters at frame 3),
    9 (results only, from frame 2), void 255 in one GT frame, two frame sizes, names img_0001.png."""
    root = tmp_path_factory.mktemp("odd")
    rng = np.random.default_rng(4)
    for video, shape, ids, grey in (("walk", (40, 64), (3, 7, 12, 20), True), ("cars", (36, 50), (1, 5), False)):
        (root / "gt" / video).mkdir(parents=True)
        (root / "res" / video).mkdir(parents=True)
        boxes = {i: rng.uniform([8, 8, 4, 6], [shape[0] - 8, shape[1] - 8, 10, 14]) for i in ids}
        for t in range(7):
            gt, res = np.zeros(shape, np.uint8), np.zeros(shape, np.uint8)
            for i, (cy, cx, ry, rx) in boxes.items():
                if not ((i == 12 and t > 0) or (i == 20 and t < 3)):
                    gt[ellipse(shape, cy + t, cx - t, ry, rx)] = i
                if not (i == 7 and t == 4):
                    res[ellipse(shape, cy + t + rng.normal(0, 1.5), cx - t, ry * rng.uniform(0.8, 1.2), rx)] = i
            if video == "walk" and t >= 2:
                res[ellipse(shape, 5, 5, 3, 3)] = 9
            if video == "walk" and t == 4:
                gt[-3:, -3:] = 255
            for labels, folder in ((gt, "gt"), (res, "res")):
                path = root / folder / video / f"img_{t + 1:04d}.png"
                Image.fromarray(labels).save(path) if grey else write_indexed_png(path, labels)
    (root / "res" / "overlays").mkdir()  # extra result folders are ignored
    return root


def plain_vos_benchmark(gt_dir: Path, res_dir: Path) -> dict[str, tuple[float, float]]:
    """vos-benchmark's Evaluator, one object at a time, on the reference boundary functions."""
    scores = {}
    for video in sorted(p.name for p in gt_dir.iterdir()):
        frames = sorted((gt_dir / video).glob("*.png"))[1:-1]
        seen, in_gt, per = [], set(), {}
        for frame in frames:
            gt, res = np.asarray(Image.open(frame)), np.asarray(Image.open(res_dir / video / frame.name))
            in_gt |= set(np.unique(gt).tolist()) - {0}
            seen += sorted((set(np.unique(gt).tolist()) | set(np.unique(res).tolist())) - {0} - set(seen))
            radius = boundary_tolerance(*gt.shape)
            for i in seen:
                g, r = gt == i, res == i
                union = (g | r).sum()
                j = 1.0 if union == 0 else (g & r).sum() / union
                gb, rb = seg2bmap(g), seg2bmap(r)
                f = f_measure_from_counts((rb & dilate_disk(gb, radius)).sum(), rb.sum(), (gb & dilate_disk(rb, radius)).sum(), gb.sum())
                per.setdefault(i, []).append((j, float(f)))
        for i in sorted(in_gt):
            values = np.array(per[i])
            scores[f"{video}_{i}"] = (values[:, 0].mean(), values[:, 1].mean())
    return scores


def test_vos_benchmark_semantics_match_its_evaluator(odd_layout):
    scores = evaluate_folders(odd_layout / "gt", odd_layout / "res", "vos-benchmark", workers=1)
    expected = plain_vos_benchmark(odd_layout / "gt", odd_layout / "res")
    # 12 (first frame only) and 9 (results only) are not reported; 255 (void) is an object here.
    assert sorted(scores["per_object"]) == sorted(expected) == ["cars_1", "cars_5", "walk_20", "walk_255", "walk_3", "walk_7"]
    for name, (j, f) in expected.items():
        assert scores["per_object"][name] == pytest.approx({"J-Mean": j, "F-Mean": f}, abs=1e-12)
    j_mean = np.mean([j for j, _ in expected.values()])
    f_mean = np.mean([f for _, f in expected.values()])
    assert scores["J&F-Mean"] == pytest.approx((j_mean + f_mean) / 2, abs=1e-12)


def test_davis_semantics_score_first_frame_objects_and_reject_strangers(odd_layout, tmp_path):
    # The results hold 20 from frame 1 on (the GT from frame 3) and 9 (never in the GT).
    with pytest.raises(ValueError, match="object id 20 is not in the first ground-truth frame"):
        evaluate_folders(odd_layout / "gt", odd_layout / "res", "davis", workers=1)
    for video in ("walk", "cars"):  # the same results without the strangers
        (tmp_path / video).mkdir()
        for path in sorted((odd_layout / "res" / video).glob("*.png")):
            labels = np.asarray(Image.open(path)).copy()
            labels[(labels == 9) | (labels == 20)] = 0
            Image.fromarray(labels).save(tmp_path / video / path.name)
    scores = evaluate_folders(odd_layout / "gt", tmp_path, "davis", workers=1)
    # The first frame's objects, 12 included (absent from every later GT frame, and the results
    # keep it: J = 0); 20 enters later and is not an object here.
    assert sorted(scores["per_object"]) == ["cars_1", "cars_5", "walk_12", "walk_3", "walk_7"]
    assert scores["per_object"]["walk_12"]["J-Mean"] == 0.0
    assert {"J-Recall", "F-Decay"} <= set(scores)
    every = evaluate_folders(odd_layout / "gt", tmp_path, "davis", skip_first_last=False, workers=1)
    assert every["per_object"]["walk_12"]["J-Mean"] > 0  # frame 0 now counts, where 12 is predicted well


def test_davis_semantics_equal_task_davis_on_davis_folders(tmp_path):
    root = tmp_path / "synth"
    generate(root, SynthPreset(mp4=SPEC, davis=SPEC, jhmdb=SPEC, vip=SPEC), seed=2, formats=("davis",))
    protocol = dataclasses.replace(protocol_preset("siammae"), n_context=2, size=(32, 48))
    propagate_dataset("davis", root / "davis", tmp_path / "out", PixelFeatures(stride=4), protocol, evaluate=False, progress=False)
    official = evaluate_davis(root / "davis", tmp_path / "out", workers=1)
    folders = evaluate_folders(root / "davis" / "Annotations" / "480p", tmp_path / "out", workers=1)
    assert folders == official  # bit-identical, per object too
    assert 0 < official["J&F-Mean"] < 1


def test_cli_gt_results(odd_layout, tmp_path, capsys):
    target = tmp_path / "scores.json"
    args = ["evaluate", "--gt", str(odd_layout / "gt"), "--results", str(odd_layout / "res"), "--semantics", "vos-benchmark",
            "--workers", "1", "--json", str(target)]
    assert cli_main(args) == 0
    assert "J&F-Mean" in capsys.readouterr().out
    assert set(json.loads(target.read_text())) == {"J&F-Mean", "J-Mean", "F-Mean", "per_object"}
    assert cli_main(["evaluate", "--gt", str(odd_layout / "gt"), "--results", str(odd_layout / "res"), "--workers", "1"]) == 2
    assert "object id 20" in capsys.readouterr().err
    assert cli_main(["evaluate", "--results", str(odd_layout / "res")]) == 2
    assert "--task and --data are required" in capsys.readouterr().err
    assert cli_main(["evaluate", "--gt", str(odd_layout / "gt"), "--task", "davis", "--results", str(odd_layout / "res")]) == 2
    assert cli_main(["evaluate", "--gt", str(tmp_path), "--results", str(odd_layout / "res")]) == 2
    assert "no sub-folder holds PNGs" in capsys.readouterr().err
