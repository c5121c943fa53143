"""`posekit track` end to end with the real models on the shared demo video, and bad videos."""

from __future__ import annotations

import json

import pytest

from runner import run_posekit
from paths import DEMO_VIDEO, session_cache
from posekit.ops.boxes import box_iou
from posekit.tracking.posetrack import read_tracks


@pytest.fixture(scope="module")
def demo_tracked(tmp_path_factory):
    out = tmp_path_factory.mktemp("track-demo")
    # The session's model cache, so the MoveNet export is built once for the whole suite.
    r = run_posekit("track", str(DEMO_VIDEO), "--out", str(out), cache=session_cache(tmp_path_factory))
    assert r.returncode == 0, r.stderr[-3000:]
    return out, r


def test_demo_video_outputs(demo_tracked):
    import cv2

    out, r = demo_tracked
    assert sorted(p.name for p in out.iterdir()) == ["demo.jsonl", "demo.mp4", "demo.posetrack.json"]
    assert "5 frames" in r.stdout
    records = [json.loads(line) for line in (out / "demo.jsonl").read_text().splitlines()]
    assert [rec["frame"] for rec in records] == [0, 1, 2, 3, 4]
    assert all(rec["image_size"] == [960, 540] for rec in records)
    doc = json.loads((out / "demo.posetrack.json").read_text())
    assert len(doc["images"]) == 5 and doc["images"][0]["nframes"] == 5
    assert sum(len(rec["poses"]) for rec in records) == len(doc["annotations"])
    capture = cv2.VideoCapture(str(out / "demo.mp4"))
    frames = 0
    while capture.read()[0]:
        frames += 1
    assert frames == 5
    assert (capture.get(cv2.CAP_PROP_FRAME_WIDTH), capture.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (960, 540)
    capture.release()


def test_demo_video_ids_are_stable(demo_tracked):
    """About a dozen people walk through 5 frames: each keeps one ID, and an ID stays on the same
    person (its boxes in consecutive frames overlap)."""
    out, _ = demo_tracked
    frames = read_tracks(out / "demo.jsonl")
    counts = [len(frames[t]) for t in range(5)]
    # Measured with the default PicoDet-S-320 (boxes >= 0.35) + TinyPose: 3, 4, 4, 4, 4 tracked people
    # (with RTMDet-nano boxes >= 0.2 + MoveNet-Thunder it was 5 or 6: more low-scored boxes).
    assert min(counts) >= 3 and sum(counts) >= 16, counts
    ids = [set(frames[t].track_ids.tolist()) for t in range(5)]
    every = set().union(*ids)
    # IDs persist: at least 80% of one frame's people carry the same ID in the next frame.
    for a, b in zip(ids, ids[1:]):
        assert len(a & b) >= 0.8 * min(len(a), len(b)), (a, b)
    # No churn: distinct IDs barely exceed the most people seen at once.
    assert len(every) <= max(counts) + 2, (len(every), counts)
    for t in range(4):
        now, nxt = frames[t], frames[t + 1]
        for tid in set(now.track_ids.tolist()) & set(nxt.track_ids.tolist()):
            a = now.boxes[now.track_ids == tid]
            b = nxt.boxes[nxt.track_ids == tid]
            assert box_iou(a, b)[0, 0] > 0.5, (t, tid)


def test_empty_and_missing_videos(tmp_path):
    import cv2

    zero_bytes = tmp_path / "zero.mp4"
    zero_bytes.write_bytes(b"")
    no_frames = tmp_path / "noframes.mp4"
    writer = cv2.VideoWriter(str(no_frames), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (64, 48))
    writer.release()
    out = tmp_path / "out"
    r = run_posekit("track", str(zero_bytes), str(no_frames), str(tmp_path / "missing.mp4"), "--out", str(out))
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert any("zero.mp4" in line and "empty" in line for line in lines), r.stderr
    assert any("noframes.mp4" in line for line in lines), r.stderr
    assert any("missing.mp4" in line and "no such file" in line for line in lines), r.stderr
    assert "Traceback" not in r.stderr
    assert not out.exists() or list(out.iterdir()) == []  # no output, not even a partial one


def test_infer_track_matches_track(demo_tracked, tmp_path):
    """`posekit infer --track` runs the same estimator and tracker: same people, same IDs; its
    JSON Lines (COCO records with track_id) is read by eval-track too."""
    out, _ = demo_tracked
    r = run_posekit("infer", str(DEMO_VIDEO), "--track", "--out", str(tmp_path), "--no-vis")
    assert r.returncode == 0, r.stderr[-3000:]
    records = [json.loads(line) for line in (tmp_path / "demo.jsonl").read_text().splitlines()]
    assert len(records) == 5 and all("track_id" in p for rec in records for p in rec["poses"])
    r = run_posekit("eval-track", "--gt", str(out / "demo.jsonl"), "--pred", str(tmp_path / "demo.jsonl"),
             "--json", str(tmp_path / "m.json"))
    assert r.returncode == 0, r.stderr
    m = json.loads((tmp_path / "m.json").read_text())
    assert m["IDF1"] == pytest.approx(1.0) and m["IDSW"] == 0 and m["FP"] == 0 and m["FN"] == 0, m


def test_eval_track_on_own_output(demo_tracked, tmp_path):
    """The demo's tracks scored against themselves through the command: a perfect score, which
    checks that what `track` writes is what `eval-track` reads."""
    out, _ = demo_tracked
    r = run_posekit("eval-track", "--gt", str(out / "demo.posetrack.json"), "--pred", str(out / "demo.jsonl"),
             "--json", str(tmp_path / "m.json"))
    assert r.returncode == 0, r.stderr
    m = json.loads((tmp_path / "m.json").read_text())
    assert m["IDF1"] == pytest.approx(1.0) and m["IDSW"] == 0 and m["HOTA"] == pytest.approx(1.0, abs=1e-6)


def test_two_videos_with_one_name_keep_their_own_outputs(tmp_path, tmp_path_factory):
    for folder in ("cam1", "cam2"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "street.mp4").write_bytes(DEMO_VIDEO.read_bytes())
    out = tmp_path / "out"
    r = run_posekit("track", str(tmp_path / "cam1" / "street.mp4"), str(tmp_path / "cam2" / "street.mp4"), "--out", str(out),
             "--max-frames", "2", "--no-video", cache=session_cache(tmp_path_factory))
    assert r.returncode == 0, r.stderr[-3000:]
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert written == ["cam1/street.jsonl", "cam1/street.posetrack.json", "cam2/street.jsonl", "cam2/street.posetrack.json"]
    first, second = ((out / c / "street.jsonl").read_text() for c in ("cam1", "cam2"))
    assert len(first.splitlines()) == len(second.splitlines()) == 2  # --max-frames 2, each video its own file
