"""Tracking metrics on cases small enough to work out by hand, the PoseTrack/JSON Lines files,
and the `posekit eval-track` command on the synthetic scenes."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from paths import COCO_ANN, ROOT
from posekit.io import JsonLinesWriter
from posekit.structures import Poses
from posekit.tracking import PoseTracker
from posekit.tracking.metrics import evaluate_tracking, hota
from posekit.schema import frame_record
from posekit.tracking.posetrack import PoseTrackWriter, read_tracks
from synthetic_tracks import load_people, scenes


def frame(boxes, ids) -> Poses:
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    n = len(boxes)
    centres = (boxes[:, None, :2] + boxes[:, None, 2:]) / 2
    return Poses(boxes=boxes, box_scores=np.ones(n), keypoints=np.repeat(centres, 17, 1),
                 keypoint_scores=np.ones((n, 17)), track_ids=np.asarray(ids, np.int64))


A = [0, 0, 10, 10]
B = [100, 0, 110, 10]
HALF_A = [0, 0, 10, 5]  # IoU with A is exactly 0.5


# name, gt frames, pred frames, expected values (worked out by hand below each row)
HAND_CASES = [
    # Perfect: every box found with the right identity.
    ("perfect", [([A, B], [1, 2])] * 4, [([A, B], [7, 9])] * 4,
     {"MOTA": 1.0, "IDF1": 1.0, "IDSW": 0, "HOTA": 1.0, "DetA": 1.0, "AssA": 1.0}),
    # Identities swapped after 5 of 10 frames: 2 switches over 20 boxes (MOTA 0.9); the best one-to-one id map covers half
    # the boxes (IDF1 = 10 / 20); each gt id pairs with each pred id on 5 boxes of 10 + 10,
    # Jaccard 5 / 15 = 1/3 = AssA; DetA = 1; HOTA = sqrt(1/3).
    ("swap", [([A, B], [1, 2])] * 10, [([A, B], [1, 2])] * 5 + [([A, B], [2, 1])] * 5,
     {"MOTA": 1 - 2 / 20, "IDF1": 0.5, "IDSW": 2, "HOTA": np.sqrt(1 / 3), "DetA": 1.0, "AssA": 1 / 3}),
    # Localisation at IoU 0.5: matched for alpha 0.05..0.50 (10 of 19 thresholds), missed above.
    ("half_overlap", [([A], [1])] * 3, [([HALF_A], [5])] * 3,
     {"MOTA": 1.0, "IDF1": 1.0, "HOTA": 10 / 19, "DetA": 10 / 19, "AssA": 10 / 19}),
    # Predicted in frames 0 and 2 of 4: TP 2, FN 2; DetA = 2/4; AssA = 2 / (4 + 2 - 2) = 1/2.
    ("gaps", [([A], [1])] * 4, [([A], [3]), ([], []), ([A], [3]), ([], [])],
     {"MOTA": 0.5, "IDF1": 2 * 2 / (4 + 2), "IDSW": 0, "Frag": 1, "HOTA": 0.5, "DetA": 0.5, "AssA": 0.5}),
    # A false positive in every frame: MOTA = 1 - 4/4; DetA = 4 / (4 + 4).
    ("false_positive", [([A], [1])] * 4, [([A, B], [3, 4])] * 4,
     {"MOTA": 0.0, "FP": 4, "IDF1": 2 * 4 / (4 + 8), "DetA": 0.5, "AssA": 1.0, "HOTA": np.sqrt(0.5)}),
    # Nothing predicted.
    ("nothing", [([A], [1])] * 3, [([], [])] * 3, {"MOTA": 0.0, "IDF1": 0.0, "HOTA": 0.0, "FN": 3}),
]


@pytest.mark.parametrize("name, gt, pred, expected", HAND_CASES, ids=[c[0] for c in HAND_CASES])
def test_metrics_by_hand(name, gt, pred, expected):
    gt = {t: frame(*f) for t, f in enumerate(gt)}
    pred = {t: frame(*f) for t, f in enumerate(pred)}
    m = evaluate_tracking(gt, pred)
    for key, value in expected.items():
        assert m[key] == pytest.approx(value, abs=1e-6), (key, m)


def test_threshold_decides_clear_mot_matches():
    gt = {t: frame([A], [1]) for t in range(3)}
    pred = {t: frame([HALF_A], [5]) for t in range(3)}
    assert evaluate_tracking(gt, pred, threshold=0.5)["MOTA"] == pytest.approx(1.0)
    assert evaluate_tracking(gt, pred, threshold=0.6)["MOTA"] == pytest.approx(-1.0)  # 3 FN + 3 FP over 3


def test_oks_matching_uses_keypoints():
    gt = {0: frame([A], [1])}
    moved = frame([A], [2]).replace(keypoints=frame([A], [2]).keypoints + 50)  # same box, keypoints far away
    assert evaluate_tracking(gt, {0: moved}, match="iou")["MOTA"] == pytest.approx(1.0)
    assert evaluate_tracking(gt, {0: moved}, match="oks")["MOTA"] == pytest.approx(-1.0)


@pytest.mark.parametrize("gt, pred, message", [
    ({0: Poses.empty(tracked=True)}, {}, "no person"),
    ({0: frame([A], [1])}, {0: frame([A, B], [1, 1])}, "repeats a track id"),
    ({0: frame([A], [1])}, {0: frame([A], [1]).replace(track_ids=None)}, "without track ids"),
])
def test_metric_errors(gt, pred, message):
    with pytest.raises(ValueError, match=message):
        evaluate_tracking(gt, pred)


def test_hota_of_empty_inputs():
    assert hota([])["HOTA"] == 0.0
    assert hota([(np.array([1]), np.array([], np.int64), np.zeros((1, 0)))])["HOTA_FN"] == 1


# -- files ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scene_files(tmp_path_factory):
    """The crossing and noisy_crowd scenes: ground truth as PoseTrack JSON, tracker output as
    PoseTrack JSON and as JSON Lines."""
    out = tmp_path_factory.mktemp("scenes")
    all_scenes = scenes(load_people(COCO_ANN))
    files = {}
    for name in ("crossing", "noisy_crowd"):
        gt, dets = all_scenes[name]
        tracker = PoseTracker()
        pred = {t: tracker.update(d) for t, d in enumerate(dets)}
        with PoseTrackWriter(out / f"{name}.gt.json", vid_id=1, image_size=(1280, 720)) as w:
            for t in sorted(gt):
                w.add(gt[t])
        with PoseTrackWriter(out / f"{name}.pred.json", vid_id=1) as w:
            for t in sorted(pred):
                w.add(pred[t])
        with JsonLinesWriter(out / f"{name}.pred.jsonl") as w:
            for t in sorted(pred):
                w.write(frame_record(t, pred[t], source="synthetic", timestamp=t / 30, image_size=(1280, 720)))
        files[name] = (out / f"{name}.gt.json", out / f"{name}.pred.json", out / f"{name}.pred.jsonl",
                       evaluate_tracking(gt, pred), gt, pred)
    return files


def test_posetrack_round_trip(scene_files):
    gt_path, pred_json, pred_jsonl, _, gt, pred = scene_files["noisy_crowd"]
    doc = json.loads(gt_path.read_text())
    assert doc["categories"][0]["keypoints"][0] == "nose" and len(doc["categories"][0]["skeleton"]) == 19
    assert {"id", "frame_id", "file_name", "vid_id", "nframes", "is_labeled"} <= set(doc["images"][0])
    ann = doc["annotations"][0]
    assert {"keypoints", "track_id", "image_id", "bbox", "scores", "category_id"} <= set(ann)
    assert len(ann["keypoints"]) == 51 and len(ann["scores"]) == 17
    for path, reference in ((gt_path, gt), (pred_json, pred), (pred_jsonl, pred)):
        back = read_tracks(path)
        assert sorted(back) == sorted(reference)
        for t in reference:
            assert back[t].track_ids.tolist() == reference[t].track_ids.tolist()
            np.testing.assert_allclose(back[t].boxes, reference[t].boxes, atol=0.01)
            np.testing.assert_allclose(back[t].keypoints, reference[t].keypoints, atol=0.01)


def test_writers_on_failure_keep_only_whole_records(tmp_path):
    with pytest.raises(RuntimeError):
        with PoseTrackWriter(tmp_path / "a.json") as w:
            w.add(frame([A], [1]))
            raise RuntimeError("the video broke")
    with pytest.raises(RuntimeError):  # JSON Lines keep the frames done (posekit.io: nothing lost)
        with JsonLinesWriter(tmp_path / "a.jsonl") as w:
            w.write(frame_record(0, frame([A], [1]), source="synthetic", timestamp=0.0, image_size=(1280, 720)))
            raise RuntimeError("the video broke")
    with pytest.raises(RuntimeError):  # and a file with no frame is not left behind
        with JsonLinesWriter(tmp_path / "b.jsonl"):
            raise RuntimeError("the video broke")
    assert [p.name for p in tmp_path.iterdir()] == ["a.jsonl"]
    assert [t.track_ids.tolist() for t in read_tracks(tmp_path / "a.jsonl").values()] == [[1]]


def test_posetrack_file_is_its_document_as_json(tmp_path):
    """The file is assembled from per-frame JSON pieces: it must be exactly the document's JSON."""
    import orjson

    with PoseTrackWriter(tmp_path / "a.json", vid_id=3, image_size=(1280, 720)) as w:
        w.add(frame([A], [1]))
        w.add(frame([], []))
        w.add(frame([A, A], [1, 2]))
        assert w.data() == orjson.dumps(w.document())
    document = json.loads((tmp_path / "a.json").read_text())
    assert [len([a for a in document["annotations"] if a["image_id"] == im["id"]]) for im in document["images"]] == [1, 0, 2]
    assert [a["track_id"] for a in document["annotations"]] == [1, 1, 2]


def test_writers_rename_into_place_with_usual_permissions(tmp_path):
    with PoseTrackWriter(tmp_path / "a.json") as w, JsonLinesWriter(tmp_path / "a.jsonl") as lines:
        w.add(frame([A], [1]))
        lines.write(frame_record(0, frame([A], [1]), source="synthetic", timestamp=0.0, image_size=(1280, 720)))
        assert not (tmp_path / "a.json").exists() and not (tmp_path / "a.jsonl").exists()  # not until complete
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "a.jsonl"]
    for path in tmp_path.iterdir():  # readable by others, not mkstemp's 0600
        assert path.stat().st_mode & 0o044 == 0o044, path
    assert [t.track_ids.tolist() for t in read_tracks(tmp_path / "a.jsonl").values()] == [[1]]


@pytest.mark.parametrize("content, message", [
    ("", "empty"),
    ("{not json", "not valid JSON"),
    ('{"images": []}', "expected PoseTrack JSON"),
    ('{"images": [{"id": 1}], "annotations": [{"id": 5, "image_id": 1, "keypoints": [1, 2, 1]}]}', "no track_id"),
    ('{"images": [{"id": 1}], "annotations": [{"id": 5, "image_id": 2, "track_id": 0}]}', "not among the images"),
    ('{"frame": 0, "poses": [{"box": [0, 0, 1, 1], "keypoints": [], "keypoint_scores": []}]}', "no track_id"),
])
def test_bad_track_files(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=message) as info:
        read_tracks(path)
    assert "bad.json" in str(info.value)


def _cli(*args):
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-m", "posekit", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize("scene, pred_kind", [("crossing", "jsonl"), ("noisy_crowd", "json")])
def test_eval_track_command(scene_files, tmp_path, scene, pred_kind):
    gt_path, pred_json, pred_jsonl, expected, _, _ = scene_files[scene]
    out = tmp_path / "metrics.json"
    pred = pred_jsonl if pred_kind == "jsonl" else pred_json
    r = _cli("eval-track", "--gt", str(gt_path), "--pred", str(pred), "--json", str(out))
    assert r.returncode == 0, r.stderr
    assert "IDF1" in r.stdout and "HOTA" in r.stdout
    got = json.loads(out.read_text())
    for key in ("MOTA", "IDF1", "HOTA", "DetA", "AssA"):
        assert got[key] == pytest.approx(expected[key], abs=1e-3), key  # files round to 0.01 px
    assert got["IDSW"] == expected["IDSW"] == 0
    assert got["IDF1"] >= 0.85  # the thresholds of test_tracking.py, now through the command


def test_eval_track_command_bad_input(tmp_path, scene_files):
    gt_path = scene_files["crossing"][0]
    missing = tmp_path / "nope.json"
    r = _cli("eval-track", "--gt", str(gt_path), "--pred", str(missing), "--json", str(tmp_path / "m.json"))
    assert r.returncode == 1
    assert "nope.json" in r.stderr and "no such file" in r.stderr
    assert not (tmp_path / "m.json").exists()
