"""Folder-level DAVIS evaluation and the `smae evaluate` command.

The two-sequence evaluation is the one in ../shared/docs/davis-metric-vectors.md, whose numbers
come from the official davis2017-evaluation.
"""
import json

import numpy as np
import pytest

from smae.cli import main
from smae.layouts.images import write_indexed_png
from smae.errors import UserError
from smae.eval.davis_evaluate import GLOBAL_KEYS, evaluate_davis, format_davis_table

SHAPE = (64, 96)
VECTOR_TOL = 1e-6  # the vectors are printed with 6 decimals

EXPECTED_GLOBAL = {
    "J&F-Mean": 0.834163, "J-Mean": 0.861828, "J-Recall": 0.916667, "J-Decay": 0.166667,
    "F-Mean": 0.806497, "F-Recall": 0.916667, "F-Decay": 0.166667,
}
EXPECTED_PER_OBJECT = {
    "a_1": {"J-Mean": 0.935484, "F-Mean": 1.0},
    "a_2": {"J-Mean": 0.75, "F-Mean": 0.75},
    "b_1": {"J-Mean": 0.9, "F-Mean": 0.669492},
}


def _fill(labels, rows, cols, value):
    labels[rows[0] : rows[1] + 1, cols[0] : cols[1] + 1] = value


def vector_sequences():
    """{sequence: [(ground truth, prediction) per frame]} of the documented evaluation."""
    frames_a = []
    for t in range(6):
        gt, pred = np.zeros(SHAPE, np.uint8), np.zeros(SHAPE, np.uint8)
        _fill(gt, (10, 29), (10 + 2 * t, 39 + 2 * t), 1)
        _fill(gt, (35, 54), (50, 79), 2)
        _fill(pred, (10, 29), (11 + 2 * t, 40 + 2 * t), 1)
        if t != 3:
            _fill(pred, (35, 54), (50, 79), 2)
        frames_a.append((gt, pred))
    frames_b = []
    for _ in range(5):
        gt, pred = np.zeros(SHAPE, np.uint8), np.zeros(SHAPE, np.uint8)
        _fill(gt, (20, 39), (20, 59), 1)
        gt[0:5] = 255
        _fill(pred, (22, 39), (20, 59), 1)
        frames_b.append((gt, pred))
    return {"a": frames_a, "b": frames_b}


def write_davis(root, results, sequences, split="val"):
    """DAVIS-2017 layout under root and result PNGs under results."""
    for name, frames in sequences.items():
        for t, (gt, pred) in enumerate(frames):
            for folder, labels in ((root / "Annotations" / "480p" / name, gt), (results / name, pred)):
                folder.mkdir(parents=True, exist_ok=True)
                write_indexed_png(folder / f"{t:05d}.png", labels)
    (root / "ImageSets" / "2017").mkdir(parents=True, exist_ok=True)
    (root / "ImageSets" / "2017" / f"{split}.txt").write_text("".join(f"{name}\n" for name in sequences))


@pytest.fixture
def vector_layout(tmp_path):
    root, results = tmp_path / "DAVIS", tmp_path / "results"
    write_davis(root, results, vector_sequences())
    return root, results


def assert_matches_vectors(scores):
    for key in GLOBAL_KEYS:
        assert abs(scores[key] - EXPECTED_GLOBAL[key]) <= VECTOR_TOL, key
    assert list(scores["per_object"]) == list(EXPECTED_PER_OBJECT)
    for name, expected in EXPECTED_PER_OBJECT.items():
        for key, value in expected.items():
            assert abs(scores["per_object"][name][key] - value) <= VECTOR_TOL, (name, key)


def test_two_sequence_vectors(vector_layout):
    assert_matches_vectors(evaluate_davis(*vector_layout, workers=1))


def test_worker_processes_give_identical_numbers(vector_layout):
    assert evaluate_davis(*vector_layout, workers=2) == evaluate_davis(*vector_layout, workers=1)


def test_cli_prints_tables_and_writes_json(vector_layout, tmp_path, capsys):
    root, results = vector_layout
    # The official tool would read these stale CSVs instead of evaluating; we never do.
    (results / "global_results-val.csv").write_text("J&F-Mean,J-Mean\n0.999,0.999\n")
    json_path = tmp_path / "scores.json"
    assert main(["evaluate", "--task", "davis", "--data", str(root), "--results", str(results), "--json", str(json_path), "--workers", "1"]) == 0
    printed = capsys.readouterr().out
    assert "Global results for val" in printed and "Per sequence results for val" in printed
    assert "0.834163" in printed and "a_2" in printed
    scores = json.loads(json_path.read_text())
    assert_matches_vectors(scores)
    assert list(scores)[: len(GLOBAL_KEYS)] == list(GLOBAL_KEYS)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".scores")] == []  # no temporary left


def test_table_layout():
    scores = {**{key: 0.5 for key in GLOBAL_KEYS}, "per_object": {"bike_1": {"J-Mean": 0.25, "F-Mean": 1.0}}}
    lines = format_davis_table(scores, "val").splitlines()
    assert lines[1].split() == list(GLOBAL_KEYS)
    assert lines[2].split() == ["0.500000"] * 7
    assert lines[5].split() == ["Sequence", "J-Mean", "F-Mean"]
    assert lines[6].split() == ["bike_1", "0.250000", "1.000000"]


def test_missing_object_is_empty(tmp_path):
    """The highest object absent from every scored frame: scored as empty (J = F = 0 while the
    ground truth has it), where the official tool stops."""
    frames = vector_sequences()["a"]
    frames = [(gt, np.where(pred == 2, 0, pred).astype(np.uint8)) for gt, pred in frames]
    write_davis(tmp_path / "DAVIS", tmp_path / "results", {"a": frames})
    scores = evaluate_davis(tmp_path / "DAVIS", tmp_path / "results", workers=1)
    assert scores["per_object"]["a_2"] == {"J-Mean": 0.0, "F-Mean": 0.0}
    assert abs(scores["per_object"]["a_1"]["J-Mean"] - EXPECTED_PER_OBJECT["a_1"]["J-Mean"]) <= VECTOR_TOL


def test_first_and_last_frames_are_not_scored(tmp_path):
    frames = vector_sequences()["b"]
    garbage = np.full(SHAPE, 1, np.uint8)
    frames = [(gt, garbage if t in (0, 4) else pred) for t, (gt, pred) in enumerate(frames)]
    write_davis(tmp_path / "DAVIS", tmp_path / "results", {"b": frames})
    scores = evaluate_davis(tmp_path / "DAVIS", tmp_path / "results", workers=1)
    assert abs(scores["per_object"]["b_1"]["J-Mean"] - 0.9) <= VECTOR_TOL
    # ...so they need not exist at all
    (tmp_path / "results" / "b" / "00000.png").unlink()
    (tmp_path / "results" / "b" / "00004.png").unlink()
    assert evaluate_davis(tmp_path / "DAVIS", tmp_path / "results", workers=1) == scores


def test_missing_result_frame_names_the_file(vector_layout, capsys):
    root, results = vector_layout
    (results / "a" / "00002.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"a/00002\.png"):
        evaluate_davis(root, results, workers=1)
    assert main(["evaluate", "--task", "davis", "--data", str(root), "--results", str(results), "--workers", "2"]) == 2
    assert "00002.png" in capsys.readouterr().err


def test_id_above_object_count_is_an_error(vector_layout):
    root, results = vector_layout
    pred = vector_sequences()["b"][2][1].copy()
    pred[50:52, 50:52] = 2  # sequence b has one object
    write_indexed_png(results / "b" / "00002.png", pred)
    with pytest.raises(UserError, match=r"b/00002\.png: object id 2 is above the number of objects .*\(1"):
        evaluate_davis(root, results, workers=1)


def test_size_mismatch_and_rgb_results_are_errors(vector_layout):
    root, results = vector_layout
    write_indexed_png(results / "a" / "00001.png", np.zeros((32, 48), np.uint8))
    with pytest.raises(UserError, match=r"a/00001\.png: size"):
        evaluate_davis(root, results, workers=1)
    from PIL import Image

    Image.fromarray(np.zeros((*SHAPE, 3), np.uint8)).save(results / "a" / "00001.png")
    with pytest.raises(UserError, match="mode RGB"):
        evaluate_davis(root, results, workers=1)


def test_missing_inputs(tmp_path, vector_layout):
    root, results = vector_layout
    with pytest.raises(FileNotFoundError, match="test.txt"):
        evaluate_davis(root, results, split="test", workers=1)
    with pytest.raises(FileNotFoundError, match="results folder"):
        evaluate_davis(root, tmp_path / "nowhere", workers=1)
    with pytest.raises(ValueError, match="workers must be >= 1"):
        evaluate_davis(root, results, workers=0)
    (root / "ImageSets" / "2017" / "val.txt").write_text("a\nb\nc\n")
    with pytest.raises(FileNotFoundError, match="sequence 'c'"):
        evaluate_davis(root, results, workers=1)


def test_task_dispatch_errors(tmp_path, vector_layout):
    from smae.eval.tasks import evaluate

    root, results = vector_layout
    with pytest.raises(ValueError, match="unknown task 'kitti'"):
        evaluate("kitti", root, results)
    with pytest.raises(FileNotFoundError, match="data root not found"):
        evaluate("davis", tmp_path / "nowhere", results)
    assert evaluate("davis", root, results, workers=1)["J&F-Mean"] == pytest.approx(EXPECTED_GLOBAL["J&F-Mean"], abs=VECTOR_TOL)


def test_synthetic_data_sets_score_perfectly_against_themselves(tmp_path):
    """The layouts smae.data.synth writes are the ones read here: ground truth as the result."""
    import shutil

    from smae.data.synth import generate
    from smae.layouts import jhmdb
    from smae.eval.tasks import evaluate

    generate(tmp_path / "synth", "tiny", formats=["davis", "jhmdb", "vip"])
    data = tmp_path / "synth"
    shutil.copytree(data / "davis" / "Annotations" / "480p", tmp_path / "davis-results")
    shutil.copytree(data / "vip" / "Annotations" / "Category_ids", tmp_path / "vip-results")
    for frames, mat in jhmdb.videos(data / "jhmdb", "val"):
        path = tmp_path / "jhmdb-results" / f"{jhmdb.video_key(frames)}.npy"
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, jhmdb.read_joints(mat))
    davis = evaluate("davis", data / "davis", tmp_path / "davis-results", workers=1)
    assert all(davis[key] == (0.0 if key.endswith("Decay") else 1.0) for key in GLOBAL_KEYS)
    assert evaluate("vip", data / "vip", tmp_path / "vip-results", workers=1)["mIoU"] == 1.0
    jhmdb = evaluate("jhmdb", data / "jhmdb", tmp_path / "jhmdb-results", workers=1)
    assert jhmdb["PCK@0.1"] == jhmdb["PCK@0.2"] == 1.0
