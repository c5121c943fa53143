"""`posekit infer`, `eval` and `bench` as a user runs them, checking what they write."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from posekit.infer import infer
from posekit.io import iter_video
from posekit.pipeline import PoseEstimator

from badinputs import shared_models, IMAGE_CASES, make
from runner import run_posekit
from paths import COCO_ANN, COCO_IMAGES, DEMO_VIDEO


@pytest.fixture(scope="module")
def estimator(tmp_path_factory):
    with shared_models(tmp_path_factory):
        yield PoseEstimator()


def _no_partial_files(folder: Path) -> None:
    leftovers = [p for p in folder.rglob("*") if ".part" in p.name]
    assert leftovers == []


def test_infer_images_and_video(tmp_path):
    # one skier, three people, a crowd of eleven (annotated; several of the 19 images show nobody)
    images = [COCO_IMAGES / f"{n:012d}.jpg" for n in (785, 40083, 163746)]
    out = tmp_path / "out"
    result = run_posekit("infer", *map(str, images), str(DEMO_VIDEO), "--out", str(out), "--ann", str(COCO_ANN),
                     cache=Path(os.environ["POSEKIT_CACHE"]))
    assert result.returncode == 0, result.stderr
    assert "4 inputs (3 images, 1 video): 8 frames" in result.stdout

    from pycocotools.coco import COCO

    coco = COCO(str(COCO_ANN))
    records = json.loads((out / "results.json").read_text())
    assert {r["file_name"] for r in records} == {p.name for p in images}
    per_image = {p.name: sum(r["file_name"] == p.name for r in records) for p in images}
    # the crowd: 6 found by the default PicoDet (boxes >= 0.3), 11 annotated
    assert per_image["000000000785.jpg"] >= 1 and per_image["000000163746.jpg"] >= 5, per_image
    coco.loadRes(records)  # a valid COCO results file: raises otherwise
    sizes = {p.name: cv2.imread(str(p)).shape[:2] for p in images}
    for r in records:
        k = np.array(r["keypoints"]).reshape(17, 3)
        h, w = sizes[r["file_name"]]
        assert r["category_id"] == 1 and 0 <= r["score"] <= 1
        assert (k[:, 0] >= -1).all() and (k[:, 0] <= w + 1).all() and (k[:, 1] >= -1).all() and (k[:, 1] <= h + 1).all()
        assert coco.imgs[r["image_id"]]["file_name"] == r["file_name"]

    from posekit.schema import read_frame_records

    lines = read_frame_records(out / "demo.jsonl")  # validated against the one schema
    assert [l["frame"] for l in lines] == [0, 1, 2, 3, 4]
    # a crowded street of small people: the default (PicoDet boxes >= 0.35) reports 3-6 a frame, as
    # many people scored above 0.3 as RTMDet-nano's boxes >= 0.2 gave (3-5 of its 15-24)
    assert all(len(l["poses"]) >= 3 for l in lines) and sum(len(l["poses"]) for l in lines) >= 20
    for line in lines:
        k = np.array([p["keypoints"] for p in line["poses"]]).reshape(-1, 17, 2)
        assert (k[..., 0] >= -1).all() and (k[..., 0] <= 961).all() and (k[..., 1] <= 541).all()

    rendered = list(iter_video(str(out / "vis" / "demo.mp4")))
    assert len(rendered) == 5 and rendered[0].image.shape == (540, 960, 3)
    assert {p.name for p in (out / "vis").glob("*.jpg")} == {p.name for p in images}
    _no_partial_files(out)


def test_infer_mixed_folder_names_each_bad_file(tmp_path):
    folder = tmp_path / "mixed"
    paths = {kind: make(kind, folder) for kind in [*IMAGE_CASES, "truncated_video"]}
    out = tmp_path / "out"
    result = run_posekit("infer", str(folder), "--out", str(out), "--no-vis", cache=Path(os.environ["POSEKIT_CACHE"]))
    assert result.returncode == 1
    bad = [k for k, (works, _) in IMAGE_CASES.items() if not works] + ["truncated_video"]
    for kind in bad:
        assert f"WARNING posekit.infer: {paths[kind]}" in result.stderr, kind
        assert f"failed: {paths[kind]}" in result.stdout
    assert f"{len(bad)} failed" in result.stdout
    records = json.loads((out / "results.json").read_text())
    good_names = {paths[k].name for k, (works, _) in IMAGE_CASES.items() if works}
    with_people = {r["file_name"] for r in records}
    assert with_people == good_names - {"dot.png"}  # every good picture of the skier; nobody in one pixel
    assert not (out / "vis").exists() and not (out / "cut.jsonl").exists()
    _no_partial_files(out)


@pytest.mark.parametrize("kind", [*IMAGE_CASES, "truncated_video"])
def test_infer_each_input_alone(kind, tmp_path, estimator):
    works = IMAGE_CASES.get(kind, (False, None))[0]
    path = make(kind, tmp_path / "in")
    summary = infer([str(path)], tmp_path / "out", estimator=estimator)
    assert (len(summary.failures) == 0) is works
    if not works:
        assert str(path) in summary.failures[0]
    written = sorted(p.name for p in (tmp_path / "out").rglob("*") if p.is_file())
    # A failed image still leaves a complete (empty) results.json and the journal to --resume
    # from; a video that cannot be opened leaves only the journal naming it.
    results = ["results.json", "results.images.json"]
    expected = (["results.journal.jsonl"] if kind == "truncated_video" else [*results, path.name] if works
                else [*results, "results.journal.jsonl"])
    assert written == sorted(expected)


def test_infer_nothing_matched(tmp_path):
    result = run_posekit("infer", str(tmp_path / "missing" / "*.jpg"), "--out", str(tmp_path / "out"),
                     cache=Path(os.environ["POSEKIT_CACHE"]))
    assert result.returncode == 1
    assert "pattern matched no image or video files" in result.stderr
    assert not (tmp_path / "out").exists()


def test_eval_detected_boxes_reaches_the_target(tmp_path):
    report = tmp_path / "eval.json"
    result = run_posekit("eval", "--ann", str(COCO_ANN), "--images", str(COCO_IMAGES), "--json", str(report),
                     "--boxes", "both", cache=Path(os.environ["POSEKIT_CACHE"]))
    assert result.returncode == 0, result.stderr
    assert "keypoints, detected boxes" in result.stdout and "Average Precision" in result.stdout
    data = json.loads(report.read_text())
    assert set(data) >= {"AP", "AP50", "AP75", "APm", "APl", "AR", "images", "people", "seconds"}
    assert data["images"] == 19
    # default models (PicoDet-S-320 + TinyPose-256x192 fp32: AP 0.770 here), detected boxes, the 19-image set
    assert data["AP"] >= 0.76, data
    assert data["gt_boxes"]["AP"] >= 0.80, data  # the pose model alone (0.816; PaddleDetection's figure 0.816)
    assert 0.4 <= data["person_box_AP"] <= 1.0


def test_bench_pipeline_reports_both(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for n in (785, 40083, 163746):
        (images / f"{n:012d}.jpg").symlink_to(COCO_IMAGES / f"{n:012d}.jpg")
    report = tmp_path / "bench.json"
    result = run_posekit("bench", "--stage", "pipeline", "--images", str(images), "--ann", str(COCO_ANN), "--repeat", "1",
                     "--json", str(report), cache=Path(os.environ["POSEKIT_CACHE"]))
    assert result.returncode == 0, result.stderr
    data = json.loads(report.read_text())
    for name in ("plain", "posekit"):
        assert data[name]["images_per_s"] > 0 and data[name]["people"] >= 3 and 0 <= data[name]["AP"] <= 1
    assert data["posekit"]["speedup"] > 0 and "speed-up" in result.stdout


@pytest.mark.parametrize("counts, expected", [
    ((1, 1, 0, 1, 1), "1 input (1 image, 0 videos): 1 frame, 1 person,"),
    ((4, 3, 1, 8, 0), "4 inputs (3 images, 1 video): 8 frames, 0 people,"),
    ((2, 0, 2, 30, 2), "2 inputs (0 images, 2 videos): 30 frames, 2 people,"),
])
def test_summary_counts_read_in_the_singular_and_plural(counts, expected):
    from posekit.infer import InferSummary

    inputs, images, videos, frames, people = counts
    text = InferSummary(inputs=inputs, images=images, videos=videos, frames=frames, people=people).text()
    assert text.startswith(expected), text


def test_same_file_name_in_two_folders_keeps_both(tmp_path, estimator):
    """Two inputs called img.jpg (two folders) get two renders and two names in results.json,
    not one overwriting the other; the --ann image_id still comes from the file name."""
    for folder, source in (("day1", "000000000785.jpg"), ("day2", "000000040083.jpg")):
        (tmp_path / "in" / folder).mkdir(parents=True)
        (tmp_path / "in" / folder / "000000000785.jpg").write_bytes((COCO_IMAGES / source).read_bytes())
    summary = infer([str(tmp_path / "in")], tmp_path / "out", ann=COCO_ANN, estimator=estimator)
    assert summary.images == 2 and not summary.failures
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert {r["file_name"] for r in results} == {"day1/000000000785.jpg", "day2/000000000785.jpg"}
    assert {r["image_id"] for r in results} == {785}
    renders = sorted(p.relative_to(tmp_path / "out" / "vis").as_posix() for p in (tmp_path / "out" / "vis").rglob("*.jpg"))
    assert renders == ["day1/000000000785.jpg", "day2/000000000785.jpg"]
    people = {name: sum(r["file_name"] == name for r in results) for name in renders}
    assert people["day1/000000000785.jpg"] >= 1 and people["day2/000000000785.jpg"] >= 2  # the skier; two people
