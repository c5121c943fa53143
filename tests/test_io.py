"""Readers and writers: real files, broken files, atomic writes."""

from __future__ import annotations

import json
import os
import resource

import cv2
import numpy as np
import pytest

from posekit.io import (InputError, JsonLinesWriter, VideoSink, atomic_path, expand_inputs, image_size, iter_video,
                        poses_to_coco, read_image, write_json)
from posekit.structures import Poses

from badinputs import GOOD_JPEG, IMAGE_CASES, make
from paths import COCO_IMAGES, DEMO_VIDEO


@pytest.mark.parametrize("kind", list(IMAGE_CASES))
def test_read_image(kind, tmp_path):
    works, message = IMAGE_CASES[kind]
    path = make(kind, tmp_path)
    if not works:
        with pytest.raises(InputError, match=message):
            read_image(path)
        return
    image = read_image(path)
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    if kind == "one_pixel":
        assert image.shape == (1, 1, 3)
    else:  # same picture as the JPEG it was made from, whatever the channels or depth
        reference = cv2.imread(str(GOOD_JPEG))
        assert image.shape == reference.shape
        if kind != "grayscale":
            assert np.abs(image.astype(int) - reference).max() <= 1


def test_huge_image_is_refused_from_its_header_without_decoding(tmp_path):
    path = make("huge", tmp_path)
    assert image_size(path) == (20000, 20000)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(InputError):
        read_image(path)
    # Decoding would take 400 MB at least; the header check costs next to nothing.
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100_000  # kB


def test_image_size_reads_jpeg_and_png_headers(tmp_path):
    assert image_size(GOOD_JPEG) == cv2.imread(str(GOOD_JPEG)).shape[1::-1]
    assert image_size(make("rgba", tmp_path)) == cv2.imread(str(GOOD_JPEG)).shape[1::-1]
    assert image_size(make("text", tmp_path)) is None


def test_read_image_missing_file(tmp_path):
    with pytest.raises(InputError, match="nope.jpg: no such file"):
        read_image(tmp_path / "nope.jpg")


def test_expand_inputs_folders_globs_files_cameras(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    for name in ("a/1.jpg", "a/b/2.PNG", "a/b/clip.mp4", "a/readme.txt"):
        (tmp_path / name).write_bytes(b"x")
    sources, problems = expand_inputs([str(tmp_path / "a"), str(tmp_path / "a" / "*.jpg"), "0",
                                       str(tmp_path / "missing.jpg"), str(tmp_path / "none*.png")])
    kinds = [(s.kind, os.path.relpath(s.path, tmp_path)) if s.kind != "camera" else (s.kind, s.path) for s in sources]
    assert kinds == [("image", "a/1.jpg"), ("image", "a/b/2.PNG"), ("video", "a/b/clip.mp4"),
                     ("image", "a/1.jpg"), ("camera", "0")]
    assert len(problems) == 2 and "missing.jpg: no such file" in problems[0] and "matched no image" in problems[1]


def test_iter_video_reads_every_frame():
    frames = list(iter_video(str(DEMO_VIDEO)))
    assert [f.index for f in frames] == [0, 1, 2, 3, 4]
    assert all(f.image.shape == (540, 960, 3) for f in frames)


@pytest.mark.parametrize("kind, message", [
    ("truncated_video", r"cut\.mp4: cannot open as a video"),
    ("empty", r"empty\.jpg: empty file \(0 bytes\), expected a video"),
])
def test_iter_video_bad_files(kind, message, tmp_path):
    with pytest.raises(InputError, match=message):
        list(iter_video(str(make(kind, tmp_path))))


def test_iter_video_cut_after_its_header_is_reported(tmp_path):
    # A file whose index is intact but whose frames are cut off: put the index first, then cut.
    source = cv2.VideoCapture(str(DEMO_VIDEO))
    path = tmp_path / "indexed.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 5, (960, 540))
    while True:
        ok, frame = source.read()
        if not ok:
            break
        writer.write(frame)
    writer.release()
    data = path.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    frames = []
    with pytest.raises(InputError, match=r"cut\.avi: truncated video, decoded \d of the 5 frames its header declares"):
        for f in iter_video(str(cut)):
            frames.append(f)
    assert len(frames) < 5


def test_atomic_path_leaves_nothing_on_error(tmp_path):
    target = tmp_path / "out" / "results.json"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text('{"half": ')
            raise RuntimeError("interrupted")
    assert not target.exists()
    assert list(target.parent.iterdir()) == []


def test_writers_rename_into_place_with_usual_permissions(tmp_path):
    write_json(tmp_path / "r.json", [{"a": 1}])
    assert json.loads((tmp_path / "r.json").read_text()) == [{"a": 1}]
    assert (tmp_path / "r.json").stat().st_mode & 0o044 == 0o044  # readable by others, not mkstemp's 0600
    with JsonLinesWriter(tmp_path / "v.jsonl") as lines:
        lines.write({"frame": 0})
        assert not (tmp_path / "v.jsonl").exists()  # not there until complete
        lines.write({"frame": 1})
    assert [json.loads(l)["frame"] for l in (tmp_path / "v.jsonl").read_text().splitlines()] == [0, 1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json", "v.jsonl"]


def test_json_lines_hold_exactly_the_records_the_stdlib_would_write(tmp_path):
    """orjson writes the records (10x the stdlib's speed): the same bytes as `json.dumps` compact,
    read back by the stdlib to the very numbers of the record, edge values included."""
    from posekit.schema import frame_record

    rng = np.random.default_rng(0)
    n = 40
    keypoints = rng.uniform(-50, 4000, (n, 17, 2)).astype(np.float32)
    keypoints[0, :3] = [[0, 0], [-0.004, 1e-7], [3999.995, 123456.789]]  # rounding edges, off the image
    scores = rng.random((n, 17)).astype(np.float32)
    scores[0, :4] = [0, 1, 5e-5, 0.99995]
    poses = Poses(boxes=np.sort(rng.uniform(0, 1000, (n, 4)), 1).astype(np.float32),
                  box_scores=rng.random(n).astype(np.float32), keypoints=keypoints, keypoint_scores=scores,
                  track_ids=np.arange(n))
    records = [frame_record(i, poses[: i * 10], source="v.mp4", timestamp=i / 30, image_size=(1920, 1080))
               for i in range(5)]
    with JsonLinesWriter(tmp_path / "v.jsonl") as lines:
        for record in records:
            lines.write(record)
    written = (tmp_path / "v.jsonl").read_bytes().splitlines()
    assert written == [json.dumps(r, separators=(",", ":")).encode() for r in records]
    assert [json.loads(line) for line in written] == records


def test_write_json_writes_numpy_numbers_and_nan_as_valid_json(tmp_path):
    def refuse(constant):
        raise ValueError(f"not JSON: {constant}")

    write_json(tmp_path / "r.json", {"ap": np.float64("nan"), "fps": np.float32(2.5), "n": np.int64(3), 7: [1.0]})
    assert json.loads((tmp_path / "r.json").read_text(), parse_constant=refuse) == \
        {"ap": None, "fps": 2.5, "n": 3, "7": [1.0]}
    write_json(tmp_path / "p.json", {"a": [1]}, pretty=True)
    assert (tmp_path / "p.json").read_text() == '{\n  "a": [\n    1\n  ]\n}'


def test_video_sink_writes_a_readable_video_and_keeps_the_frames_done_on_error(tmp_path):
    frames = [f.image for f in iter_video(str(DEMO_VIDEO))]
    with VideoSink(tmp_path / "ok.mp4", fps=5) as sink:
        for frame in frames:
            sink.write(frame)
    assert len(list(iter_video(str(tmp_path / "ok.mp4")))) == 5
    with pytest.raises(RuntimeError):  # an error after two frames: a playable video of two frames
        with VideoSink(tmp_path / "cut.mp4", fps=5) as sink:
            sink.write(frames[0])
            sink.write(frames[1])
            raise RuntimeError("interrupted")
    assert len(list(iter_video(str(tmp_path / "cut.mp4")))) == 2
    with pytest.raises(RuntimeError):  # an error before any frame: no file at all
        with VideoSink(tmp_path / "none.mp4", fps=5):
            raise RuntimeError("interrupted")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.mp4", "ok.mp4"]


def test_poses_to_coco_layout():
    poses = Poses(boxes=[[10, 20, 110, 220]], box_scores=[0.9], keypoints=np.full((1, 17, 2), 50.0),
                  keypoint_scores=np.full((1, 17), 0.5), scores=[0.45])
    (record,) = poses_to_coco(poses, image_id=7, file_name="a.jpg")
    assert record["image_id"] == 7 and record["file_name"] == "a.jpg" and record["category_id"] == 1
    assert record["bbox"] == [10.0, 20.0, 100.0, 200.0] and record["score"] == 0.45
    assert len(record["keypoints"]) == 51 and record["keypoints"][:3] == [50.0, 50.0, 0.5]
    assert poses_to_coco(Poses.empty()) == []


def test_output_names_stay_distinct(tmp_path):
    from posekit.io import Source, output_names

    day1, day2 = tmp_path / "day1" / "img.jpg", tmp_path / "day2" / "sub" / "img.jpg"
    sources = [Source("image", str(day1)), Source("image", str(tmp_path / "other.jpg")),
               Source("image", str(day2)), Source("camera", "0"), Source("video", str(tmp_path / "a.mp4")),
               Source("image", str(day1))]
    assert output_names(sources) == ["day1/img.jpg", "other.jpg", "day2/sub/img.jpg", "camera0", "a.mp4",
                                     "day1/img-2.jpg"]
    assert output_names(sources[1:2]) == ["other.jpg"]  # a unique name stays a plain file name
