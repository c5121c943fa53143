"""Tracking on real video: two MOT15 sequences (../shared/data/mot15) scored against their
MOTChallenge ground truth, posekit's tracker against ByteTrack on the same detections; the
MOTChallenge text format; the metrics against a third-party tracker's known scores.

The pipeline runs once per sequence (`posekit track --format mot --save-detections`, about 5-10 s
each here); ByteTrack and the bench stage replay the saved detections.
"""

from __future__ import annotations

import inspect
import json
import re

import numpy as np
import pytest

from runner import run_posekit
from paths import SHARED, session_cache
from posekit.structures import Poses
from posekit.tracking.metrics import evaluate_tracking
from posekit.tracking.mot import parse_mot, read_mot, write_mot

MOT15 = SHARED / "data" / "mot15"


# motmetrics on mmtracking's test output (IoU 0.5), as ../shared/README.md gives them.
REFERENCE = [
    # sequence, IDF1, MOTA, IDSW, FP, FN
    ("TUD-Campus", 0.5577, 0.5265, 7, 13, 150),
    ("TUD-Stadtmitte", 0.6446, 0.5640, 7, 45, 452),
]


@pytest.mark.parametrize("seq, idf1, mota, idsw, fp, fn", REFERENCE)
def test_metrics_reproduce_third_party_scores(seq, idf1, mota, idsw, fp, fn):
    folder = MOT15 / "reference" / seq
    m = evaluate_tracking(read_mot(folder / "gt_mmtracking.txt"), read_mot(folder / "tracker_result_mmtracking.txt"))
    assert (round(m["IDF1"], 4), round(m["MOTA"], 4), m["IDSW"], m["FP"], m["FN"]) == (idf1, mota, idsw, fp, fn), m


# -- the MOTChallenge text format ---------------------------------------------------------------


def _tracked(boxes, ids, scores=None):
    boxes = np.array(boxes, np.float32).reshape(-1, 4)
    n = len(boxes)
    return Poses(boxes=boxes, box_scores=np.array(scores if scores is not None else [0.9] * n, np.float32),
                 keypoints=np.zeros((n, 17, 2), np.float32), keypoint_scores=np.zeros((n, 17), np.float32),
                 track_ids=np.array(ids, np.int64))


def test_mot_round_trip(tmp_path):
    frames = {0: _tracked([[10, 20, 50, 120], [100.5, 30.25, 140, 150]], [1, 7], [0.5, 0.75]),
              1: _tracked([], []),
              2: _tracked([[12, 22, 52, 122]], [1], [0.6])}
    path = write_mot(tmp_path / "seq.txt", frames)
    lines = path.read_text().splitlines()
    assert lines[0] == "1,1,10.00,20.00,40.00,100.00,0.5000,-1,-1,-1"  # 1-based frames, x,y,w,h
    assert lines[2].startswith("3,1,12.00,22.00,40.00,100.00,")
    back = read_mot(path)
    assert sorted(back) == [0, 2]  # a results file names only the frames it has boxes in
    for f in back:
        np.testing.assert_allclose(back[f].boxes, frames[f].boxes, atol=0.01)
        assert back[f].track_ids.tolist() == frames[f].track_ids.tolist()
        np.testing.assert_allclose(back[f].box_scores, frames[f].box_scores, atol=1e-4)
    assert evaluate_tracking(frames, back)["MOTA"] == 1.0


def test_eval_track_scores_mot_text_and_an_empty_result(tmp_path):
    gt = tmp_path / "gt.txt"
    gt.write_text("1,1,10,20,40,100,1,-1,-1,-1\n2,1,12,20,40,100,1,-1,-1,-1\n")
    (tmp_path / "same.txt").write_text(gt.read_text())
    (tmp_path / "none.txt").write_text("")  # `track --format mot` on a video where nobody was seen
    for pred, mota in (("same.txt", 1.0), ("none.txt", 0.0)):
        r = run_posekit("eval-track", "--gt", str(gt), "--pred", str(tmp_path / pred), "--json", str(tmp_path / "m.json"))
        assert r.returncode == 0, r.stderr[-2000:]
        m = json.loads((tmp_path / "m.json").read_text())
        assert (m["MOTA"], m["GT"], m["frames"]) == (mota, 2, 2), m


def test_mot_ground_truth_rules(tmp_path):
    # gt: conf 0 rows are ignored, and frames up to the last named one all count (frame 2 empty)
    gt = tmp_path / "gt.txt"
    gt.write_text("1,1,10,20,40,100,1,1,1\n1,2,200,20,40,100,0,1,1\n3,1,14,20,40,100,1,1,1\n")
    frames = read_mot(gt)
    assert sorted(frames) == [0, 1, 2]
    assert [len(frames[f]) for f in range(3)] == [1, 0, 1]
    # the same text read as results keeps every row
    assert [len(p) for p in parse_mot(gt.read_text()).values()] == [2, 1]


@pytest.mark.parametrize("text, message", [
    ("1,1,10,20,40\n", "at least 6 values"),
    ("frame,id,x,y,w,h\n", "comma-separated numbers"),
    ("0,1,10,20,40,100,1\n", "1-based frame"),
    ("1,1,nan,20,40,100,1\n", "finite"),
])
def test_mot_bad_rows(text, message):
    with pytest.raises(ValueError, match=message):
        parse_mot(text, where="x.txt")


# -- posekit against ByteTrack on the two sequences, through the CLI --------------------------


@pytest.fixture(scope="module")
def tracked(tmp_path_factory):
    """Each sequence through `posekit track` (defaults) and `posekit eval-track` on its gt.txt."""
    out = tmp_path_factory.mktemp("mot15")
    cache = session_cache(tmp_path_factory)
    results = {}
    for seq in ("TUD-Campus", "TUD-Stadtmitte"):
        r = run_posekit("track", str(MOT15 / seq / f"{seq}.mp4"), "--out", str(out), "--format", "mot",
                 "--save-detections", "--no-video", cache=cache)
        assert r.returncode == 0, r.stderr[-3000:]
        assert (out / f"{seq}.txt").is_file() and (out / f"{seq}.detections.npz").is_file(), sorted(out.iterdir())
        r = run_posekit("eval-track", "--gt", str(MOT15 / seq / "gt" / "gt.txt"), "--pred", str(out / f"{seq}.txt"),
                 "--json", str(out / f"{seq}.metrics.json"))
        assert r.returncode == 0, r.stderr[-3000:]
        results[seq] = json.loads((out / f"{seq}.metrics.json").read_text())
    return out, results


def _bytetrack(out, seq):
    pytest.importorskip("supervision", reason="the ByteTrack baseline needs supervision (posekit[bench])")
    from posekit.tracking.baselines import ByteTrackBaseline
    from posekit.tracking.benchmark import replay
    from posekit.tracking.detections import load_detections

    frames = load_detections(out / f"{seq}.detections.npz")
    pred, _ = replay(ByteTrackBaseline(frame_rate=25.0), frames, 25.0)
    return evaluate_tracking(read_mot(MOT15 / seq / "gt" / "gt.txt"), pred)


# What posekit reaches with the default pipeline and tracker (PicoDet-S-320 boxes >= 0.35, the
# detector's default, + TinyPose-256x192; measured: Campus MOTA 0.588 IDF1 0.676 HOTA 0.500,
# Stadtmitte 0.800 / 0.868 / 0.624) less a margin for another CPU; ByteTrack on the same
# detections: 0.529 / 0.666 / 0.480 and 0.775 / 0.715 / 0.554. Stadtmitte's MOTA floor is issue
# 12's target. (Boxes >= 0.2 gave Campus 0.510 / 0.715 / 0.514, Stadtmitte 0.754 / 0.786 / 0.585.)
FLOORS = [
    # sequence, least MOTA, IDF1, HOTA
    ("TUD-Campus", 0.55, 0.65, 0.48),
    ("TUD-Stadtmitte", 0.72, 0.82, 0.59),
]


@pytest.mark.parametrize("seq, mota, idf1, hota", FLOORS)
def test_posekit_tracks_mot15(tracked, seq, mota, idf1, hota):
    _, results = tracked
    m = results[seq]
    assert m["MOTA"] >= mota and m["IDF1"] >= idf1 and m["HOTA"] >= hota, \
        f"{seq}: expected MOTA >= {mota}, IDF1 >= {idf1}, HOTA >= {hota}, got {m['MOTA']:.3f} {m['IDF1']:.3f} " \
        f"{m['HOTA']:.3f}"


@pytest.mark.parametrize("seq", ["TUD-Campus", "TUD-Stadtmitte"])
def test_posekit_beats_bytetrack_on_the_same_detections(tracked, seq):
    out, results = tracked
    ours, theirs = results[seq], _bytetrack(out, seq)
    worse = {k: (round(ours[k], 3), round(theirs[k], 3)) for k in ("MOTA", "IDF1", "HOTA") if ours[k] < theirs[k]}
    assert not worse, f"{seq}: posekit below ByteTrack (posekit, ByteTrack): {worse}"


def test_cli_output_is_the_tracker_replayed_on_the_saved_detections(tracked):
    """The saved detections are what the tracker saw: replaying them gives the CLI's tracks."""
    from posekit.tracking import PoseTracker
    from posekit.tracking.benchmark import replay
    from posekit.tracking.detections import load_detections

    out, _ = tracked
    frames = load_detections(out / "TUD-Campus.detections.npz")
    assert len(frames) == 71
    pred, _ = replay(PoseTracker(frame_rate=25.0), frames, 25.0)
    cli = read_mot(out / "TUD-Campus.txt")
    assert sorted(cli) == [f for f in sorted(pred) if len(pred[f])]
    for f in cli:
        np.testing.assert_allclose(cli[f].boxes, pred[f].boxes, atol=0.01)
        assert cli[f].track_ids.tolist() == pred[f].track_ids.tolist()


def test_bench_track_stage(tracked, tmp_path):
    """`posekit bench --stage track` on the saved detections: one row per tracker and sequence,
    posekit's row the same as `eval-track` gave."""
    out, results = tracked
    report = tmp_path / "bench.json"
    r = run_posekit("bench", "--stage", "track", "--sequences", str(MOT15 / "TUD-Campus"), "--detections", str(out),
             "--people", "5", "--json", str(report))
    assert r.returncode == 0, r.stderr[-3000:]
    doc = json.loads(report.read_text())
    rows = doc["sequences"]["TUD-Campus"]
    assert {"posekit", "greedy IoU"} <= set(rows), sorted(rows)
    assert rows["posekit"]["MOTA"] == pytest.approx(results["TUD-Campus"]["MOTA"])
    assert rows["posekit"]["IDF1"] == pytest.approx(results["TUD-Campus"]["IDF1"])
    assert rows["greedy IoU"]["MOTA"] < rows["posekit"]["MOTA"]
    assert set(doc["speed"]) == set(rows) and all(ms > 0 for ms in doc["speed"].values())
    assert re.search(r"\| TUD-Campus \| posekit \| 0\.\d{3} \|", r.stdout), r.stdout


def test_track_help_states_the_tracker_defaults():
    from posekit.commands.track import TRACKER_OPTIONS
    from posekit.tracking import PoseTracker

    defaults = {k: v.default for k, v in inspect.signature(PoseTracker).parameters.items()}
    for option, (name, _, text) in TRACKER_OPTIONS.items():
        stated = re.search(r"default ([0-9.]+)", text).group(1)
        assert float(stated) == defaults[name], f"{option}: help says default {stated}, PoseTracker has {defaults[name]}"
