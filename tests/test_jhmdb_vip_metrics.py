"""JHMDB PCK (as videowalk's eval_pck.py) and VIP mIoU (one confusion matrix, nan-mean IoU)."""
import json

import numpy as np
import pytest
from PIL import Image

from smae.cli import main
from smae.layouts.jhmdb import JhmdbLayout
from smae.layouts.vip import VipLayout
from smae.errors import UserError
from smae.eval.jhmdb_metrics import evaluate_jhmdb, normalized_distances, pck
from smae.layouts.jhmdb import read_joints as read_jhmdb_joints
from smae.eval.vip_metrics import VIP_CLASSES, class_iou, confusion_matrix, evaluate_vip

N_JOINTS = 15


def crw_pck(videos, threshold):
    """videowalk's eval_pck.py loop by loop: videos = [(gt (T, J, 2), pred (T, J, 2))]."""
    per_joint = {j: [] for j in range(N_JOINTS)}
    for gt, pred in videos:
        for k in range(gt.shape[0]):
            visible = [j for j in range(N_JOINTS) if pred[k, j, 0] >= 0]
            minx, miny, maxx, maxy = 1e6, 1e6, -1, -1
            for j in visible:
                minx, miny = min(minx, gt[k, j, 0]), min(miny, gt[k, j, 1])
                maxx, maxy = max(maxx, gt[k, j, 0]), max(maxy, gt[k, j, 1])
            box = 0.6 * np.hypot(maxx - minx, maxy - miny)
            if k == 0:
                continue
            for j in visible:
                per_joint[j].append(np.hypot(*(pred[k, j] - gt[k, j])) / box)
    return np.mean([np.mean(np.array(d) <= threshold) for d in per_joint.values()])


def random_pose_videos(rng, lengths):
    videos = []
    for length in lengths:
        centre = rng.uniform(60, 200, size=2)
        gt = centre + rng.normal(0, 30, size=(length, N_JOINTS, 2))
        pred = gt + rng.normal(0, 8, size=gt.shape)
        pred[rng.random((length, N_JOINTS)) < 0.1, 0] = -1.0  # lost joints
        videos.append((gt, pred))
    return videos


def test_distances_by_hand():
    gt = np.zeros((2, N_JOINTS, 2))
    gt[1, :, 0] = np.linspace(0, 30, N_JOINTS)  # box 30 x 40 in frame 1: diagonal 50
    gt[1, :, 1] = np.linspace(0, 40, N_JOINTS)
    pred = gt.copy()
    pred[1, 3] += (3.0, 4.0)  # 5 px off: 5 / (0.6 * 50) = 1/6
    pred[1, 7, 0] = -1.0  # lost: not scored, and not in the box (still 30 x 40 here)
    distances = normalized_distances(pred, gt)
    assert np.isnan(distances[0]).all()  # frame 0 is given
    assert np.isnan(distances[1, 7])
    assert distances[1, 3] == pytest.approx(1 / 6)
    assert distances[1, 0] == 0.0
    with pytest.raises(ValueError, match=r"joints \[7\] have no scored frame"):
        pck(distances, 0.1)  # as CRW, where it is a division by zero
    distances[1, 7] = 0.0
    per_joint = pck(distances, 0.1)
    assert per_joint[3] == 0.0 and per_joint[0] == 1.0
    assert pck(distances, 0.2)[3] == 1.0


def test_lost_joints_shrink_the_box():
    gt = np.zeros((2, N_JOINTS, 2))
    gt[1, :, 0] = np.arange(N_JOINTS)  # x from 0 to 14, y = 0
    pred = gt + 1.0
    pred[1, 10:, 0] = -1.0  # joints 10..14 lost: the box spans x 0..9
    distances = normalized_distances(pred, gt)
    np.testing.assert_allclose(distances[1, :10], np.sqrt(2) / (0.6 * 9))


def test_pck_matches_crw_loops():
    rng = np.random.default_rng(0)
    videos = random_pose_videos(rng, [5, 9, 14])
    distances = np.concatenate([normalized_distances(pred, gt) for gt, pred in videos])
    for threshold in (0.1, 0.2):
        assert pck(distances, threshold).mean() == pytest.approx(crw_pck(videos, threshold), abs=1e-12)


def write_jhmdb(root, results, videos):
    layout = JhmdbLayout(root)
    names = []
    for index, (gt, pred) in enumerate(videos):
        action, video = ("walk", "run")[index % 2], f"clip{index}"
        layout.write_joints(action, video, gt)
        (results / action).mkdir(parents=True, exist_ok=True)
        np.save(results / action / f"{video}.npy", pred)
        names.append((action, video))
    layout.write_lists(names)
    return names


def test_evaluate_jhmdb_folder(tmp_path):
    rng = np.random.default_rng(1)
    videos = random_pose_videos(rng, [6, 11])
    root, results = tmp_path / "jhmdb", tmp_path / "results"
    names = write_jhmdb(root, results, videos)
    np.testing.assert_allclose(read_jhmdb_joints(JhmdbLayout(root).mat_path(*names[0])), videos[0][0])  # 1-based on disk
    scores = evaluate_jhmdb(root, results, workers=1)
    for threshold in (0.1, 0.2):
        assert scores[f"PCK@{threshold:g}"] == pytest.approx(crw_pck(videos, threshold), abs=1e-12)
        assert len(scores["per_joint"][f"PCK@{threshold:g}"]) == N_JOINTS
    json_path = tmp_path / "pck.json"
    assert main(["evaluate", "--task", "jhmdb", "--data", str(root), "--results", str(results), "--json", str(json_path)]) == 0
    assert json.loads(json_path.read_text())["PCK@0.1"] == pytest.approx(scores["PCK@0.1"])


def test_jhmdb_result_errors(tmp_path):
    rng = np.random.default_rng(2)
    root, results = tmp_path / "jhmdb", tmp_path / "results"
    (action, video), _ = write_jhmdb(root, results, random_pose_videos(rng, [4, 4]))
    path = results / action / f"{video}.npy"
    np.save(path, np.zeros((3, N_JOINTS, 2)))
    with pytest.raises(UserError, match=rf"{video}\.npy: expected float joints of shape \(4, 15, 2\)"):
        evaluate_jhmdb(root, results, workers=1)
    np.save(path, np.array([{"joints": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(UserError, match=rf"{video}\.npy: not a plain \.npy"):
        evaluate_jhmdb(root, results, workers=1)
    path.unlink()
    with pytest.raises(FileNotFoundError, match=rf"{video}\.npy"):
        evaluate_jhmdb(root, results, workers=1)


def test_confusion_and_iou_by_hand():
    gt = np.array([[0, 0, 1, 1], [0, 255, 1, 2]], np.uint8)
    pred = np.array([[0, 1, 1, 1], [0, 2, 2, 2]], np.uint8)
    confusion = confusion_matrix(gt, pred, 3)
    np.testing.assert_array_equal(confusion, [[2, 1, 0], [0, 2, 1], [0, 0, 1]])  # the 255 pixel is skipped
    np.testing.assert_allclose(class_iou(confusion), [2 / 3, 2 / 4, 1 / 2])
    assert np.isnan(class_iou(np.zeros((3, 3), np.int64))).all()


def write_vip(root, results, videos):
    layout = VipLayout(root)
    for name, frames in videos.items():
        (results / name).mkdir(parents=True, exist_ok=True)
        for t, (gt, pred) in enumerate(frames):
            layout.write_frame(name, t, np.zeros((*gt.shape, 3), np.uint8), gt)
            Image.fromarray(pred).save(results / name / f"{t + 1:012d}.png")
    layout.write_lists(list(videos))


def test_evaluate_vip_pools_all_frames(tmp_path):
    rng = np.random.default_rng(3)
    videos = {}
    for name, n_frames in (("videos1", 3), ("videos2", 2)):
        frames = []
        for _ in range(n_frames):
            gt = rng.integers(0, 6, size=(24, 40)).astype(np.uint8)
            pred = np.where(rng.random(gt.shape) < 0.7, gt, rng.integers(0, 7, size=gt.shape)).astype(np.uint8)
            frames.append((gt, pred))
        videos[name] = frames
    root, results = tmp_path / "vip", tmp_path / "results"
    write_vip(root, results, videos)
    scores = evaluate_vip(root, results, workers=1)
    all_gt = np.concatenate([gt.ravel() for frames in videos.values() for gt, _ in frames])
    all_pred = np.concatenate([pred.ravel() for frames in videos.values() for _, pred in frames])
    expected = []
    for c in range(len(VIP_CLASSES)):
        union = np.sum((all_gt == c) | (all_pred == c))
        if union:
            expected.append(np.sum((all_gt == c) & (all_pred == c)) / union)
    assert scores["mIoU"] == pytest.approx(np.mean(expected), abs=1e-12)
    assert np.isnan(scores["per_class_IoU"]["left-shoe"])  # class 19 never appears
    in_workers = evaluate_vip(root, results, workers=2)
    assert in_workers["mIoU"] == scores["mIoU"]
    np.testing.assert_array_equal(list(in_workers["per_class_IoU"].values()), list(scores["per_class_IoU"].values()))
    json_path = tmp_path / "miou.json"
    assert main(["evaluate", "--task", "vip", "--data", str(root), "--results", str(results), "--json", str(json_path)]) == 0
    saved = json.loads(json_path.read_text())
    assert saved["per_class_IoU"]["left-shoe"] is None and saved["mIoU"] == pytest.approx(scores["mIoU"])


def test_vip_errors(tmp_path):
    gt = np.zeros((8, 8), np.uint8)
    root, results = tmp_path / "vip", tmp_path / "results"
    write_vip(root, results, {"videos1": [(gt, gt), (gt, np.full_like(gt, 20))]})
    with pytest.raises(UserError, match=r"000000000002\.png: class id 20 is not a VIP class"):
        evaluate_vip(root, results, workers=1)
    (results / "videos1" / "000000000002.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"000000000002\.png"):
        evaluate_vip(root, results, workers=1)
