"""`--backend` / `--precision` of `posekit infer`, `eval` and `track`, and the factory behind them."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from posekit.ops.boxes import box_iou

from badinputs import shared_models
from runner import run_posekit
from paths import COCO_ANN, COCO_IMAGES, DEMO_VIDEO

# one skier, three people, a crowd of eleven
IMAGES = [COCO_IMAGES / f"{n:012d}.jpg" for n in (785, 40083, 163746)]


def _people(results: Path) -> dict[tuple, np.ndarray]:
    """(file name, rounded box) -> (17, 3) keypoints x, y, score."""
    records = json.loads(results.read_text())
    return {(r["file_name"], *np.round(r["bbox"], 0)): np.reshape(r["keypoints"], (17, 3)) for r in records}


def test_infer_int8_is_close_to_fp32_and_cached(tmp_path):
    runs = {}
    for precision in ("fp32", "int8"):
        out = tmp_path / precision
        result = run_posekit("infer", *map(str, IMAGES), "--out", str(out), "--no-vis", "--pose", "movenet-thunder",
                         "--det", "rtmdet-nano-person", "--backend", "onnxruntime", "--precision", precision)
        assert result.returncode == 0, result.stderr
        runs[precision] = _people(out / "results.json")
    # the cached INT8 build of MoveNet is what ran (built by the first int8 use, reused after)
    cache = Path(os.environ["POSEKIT_CACHE"]) / "engines" / "movenet-thunder"
    assert list(cache.glob("onnxruntime-int8-*/model.int8.onnx")), sorted(cache.glob("*"))
    # the detector is fp32 in both runs, so the same boxes (the same people) come out, but for a box
    # in which one precision sees no keypoint at all (then it is not reported as a person)
    fp32, int8 = runs["fp32"], runs["int8"]
    assert len(fp32) >= 13 and len(set(fp32) ^ set(int8)) <= 2, (sorted(fp32), sorted(int8))
    errors, per_person = [], []
    for key, ref in fp32.items():
        if key not in int8:
            continue
        confident = ref[:, 2] > 0.3
        d = np.linalg.norm(int8[key][:, :2] - ref[:, :2], axis=1)[confident]
        errors.extend(d)
        if d.size:
            per_person.append(np.median(d))
    # INT8 MoveNet: ~1.3 px median keypoint error on 256 px crops; in image pixels (crops of these
    # people are scaled up to ~2x) the median here is ~1.5 px; 3 px / 10 px leave room, a broken
    # build (wrong preprocessing, uncalibrated scales) is off by tens of pixels.
    assert np.median(errors) < 3.0, np.median(errors)
    assert max(per_person) < 10.0, per_person


def test_eval_int8_ap(tmp_path):
    report = tmp_path / "ap.json"
    result = run_posekit("eval", "--ann", str(COCO_ANN), "--images", str(COCO_IMAGES), "--boxes", "detector",
                     "--backend", "onnxruntime", "--precision", "int8", "--json", str(report))
    assert result.returncode == 0, result.stderr
    ap = json.loads(report.read_text())
    # measured here: INT8 AP 0.662 (FP32 0.713) on the 19 images
    assert ap["images"] == 19 and 0.55 <= ap["AP"] <= 0.8, ap


ERRORS = [
    # (command, extra arguments, what the one-line error says, whether it lists what is available)
    ("infer", ["--backend", "tensorrt"], "backend tensorrt is not installed here", True),
    ("infer", ["--backend", "torch", "--precision", "int8"], "backend torch runs fp32/fp16/bf16, not 'int8'", True),
    ("infer", ["--backend", "onnxruntime", "--precision", "fp16"], "backend onnxruntime runs fp32/int8, not 'fp16'", True),
    ("infer", ["--backend", "openvino"], "unknown backend 'openvino'", True),
    ("infer", ["--backend", "torch", "--det", "rtmdet-nano-person"], "that have torch decoders, got rtmdet-nano-person (rtmdet)", False),
    ("eval", ["--backend", "tensorrt"], "backend tensorrt is not installed here", True),
    ("eval", ["--backend", "torch", "--precision", "int8"], "backend torch runs fp32/fp16/bf16, not 'int8'", True),
    ("track", ["--backend", "tensorrt"], "backend tensorrt is not installed here", True),
    ("track", ["--backend", "onnxruntime", "--precision", "bf16"], "backend onnxruntime runs fp32/int8, not 'bf16'", True),
]
COMMANDS = {
    "infer": lambda out: ["infer", str(IMAGES[0]), "--out", str(out)],
    "eval": lambda out: ["eval", "--ann", str(COCO_ANN), "--images", str(COCO_IMAGES), "--json", str(out / "ap.json")],
    "track": lambda out: ["track", str(DEMO_VIDEO), "--out", str(out)],
}


@pytest.mark.parametrize("command, extra, message, lists_available", ERRORS,
                         ids=[f"{e[0]} {' '.join(e[1])}" for e in ERRORS])
def test_refused_combinations_fail_in_one_line(command, extra, message, lists_available, tmp_path):
    out = tmp_path / "out"
    result = run_posekit(*COMMANDS[command](out), *extra)
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith(f"posekit {command}: error: ") and message in lines[0], lines[0]
    if lists_available:
        assert "available here: onnxruntime (fp32/int8)" in lines[0]
    assert not out.exists()


@pytest.mark.parametrize("command", list(COMMANDS))
def test_help_explains_backends(command):
    result = run_posekit(command, "--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    for words in ("--backend NAME", "(default onnxruntime)", "int8", "tensorrt", "torch / inductor", "--crop-shape {fit,square}",
                  "(default: int8 for MoveNet on onnxruntime on the CPU, fp32 otherwise",
                  "INT8 RTMDet measured slower and less accurate"):
        assert words in text, words


# --- the factory ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def gpu_estimator(tmp_path_factory):
    from posekit.estimators import make_estimator

    with shared_models(tmp_path_factory):
        yield make_estimator(device="cpu", backend="torch", precision="fp32")


@pytest.mark.parametrize("backend, precision, kind, detector, pose_model", [
    ("onnxruntime", "fp32", "PoseEstimator", "picodet-s-320-pedestrian", "TopDownModel"),
    ("onnxruntime", "int8", "PoseEstimator", "picodet-s-320-pedestrian", "TopDownModel"),
])
def test_factory_picks_the_estimator_and_engine(backend, precision, kind, detector, pose_model):
    from posekit.estimators import make_estimator

    estimator = make_estimator(backend=backend, precision=precision)
    assert type(estimator).__name__ == kind and estimator.detector.name == detector
    assert type(estimator.pose).__name__ == pose_model
    pose_file = estimator.pose.engine.path
    assert (pose_file.name == "model.int8.onnx") == (precision == "int8"), pose_file
    assert estimator.detector.engine.path.suffix == ".onnx" and "int8" not in estimator.detector.engine.path.name  # fp32
    # 000000040083.jpg: the two annotated people (with keypoints) are the two best-scored poses
    poses = estimator(IMAGES[1])
    best = poses.boxes[np.argsort(-poses.scores)[:2]]
    annotated = np.array([[38.08, 110.95, 212.79, 285.66], [257.76, 139.06, 397.81, 293.27]], np.float32)
    assert box_iou(best, annotated).max(1).min() > 0.8, poses.boxes


def test_torch_pipeline_logs_its_building_time_apart_from_compiling(tmp_path_factory, caplog):
    """bench --stage product splits a command's start-up by these log lines."""
    import logging

    from posekit.estimators import make_estimator
    from posekit.product_bench import build_seconds, compile_seconds

    with shared_models(tmp_path_factory), caplog.at_level(logging.INFO, logger="posekit"):
        make_estimator(device="cpu", backend="torch", precision="fp32")
    assert "yolox-nano + movenet-thunder built on cpu in " in caplog.text
    assert build_seconds(caplog.text) is not None and build_seconds(caplog.text) >= 0
    assert compile_seconds(caplog.text) is None  # eager: nothing compiled, and building is not taken for it


def test_factory_picks_the_torch_pipeline_on_cpu(gpu_estimator):
    from posekit.gpu_pipeline import GpuPoseEstimator, GpuPosePipeline

    assert isinstance(gpu_estimator, GpuPoseEstimator) and isinstance(gpu_estimator.pipeline, GpuPosePipeline)
    assert gpu_estimator.pipeline.det_spec.name == "yolox-nano"
    assert gpu_estimator.pipeline.pose_engine.backend == "torch"


def test_torch_pipeline_finds_people_in_images_of_different_sizes(gpu_estimator):
    images = [cv2.imread(str(p)) for p in IMAGES[:2]]
    assert images[0].shape != images[1].shape
    found = list(gpu_estimator.stream(images))  # one batch per frame size
    assert [len(p) for p in found] == [len(gpu_estimator(im)) for im in images]
    assert len(found[0]) >= 1 and len(found[1]) >= 2, [len(p) for p in found]
    for image, poses in zip(images, found):
        h, w = image.shape[:2]
        confident = poses.keypoints[poses.keypoint_scores > 0.3]
        assert len(confident) >= 10 and (confident >= -1).all() and (confident[:, 0] <= w + 1).all()
        assert np.all(poses.scores <= poses.box_scores + 1e-6)  # person score = box x keypoints, as the CPU pipeline


def test_torch_pipeline_on_given_boxes_matches_the_onnx_pipeline(gpu_estimator):
    from posekit.evaluate import gt_boxes, load_annotations
    from posekit.pipeline import PoseEstimator

    coco = load_annotations(COCO_ANN)
    image_id = int(IMAGES[1].stem)
    image = cv2.imread(str(IMAGES[1]))
    boxes = gt_boxes(coco, image_id)
    reference = PoseEstimator(det="rtmdet-nano-person", pose="movenet-thunder", oks_threshold=None).estimate_boxes(
        [image], [boxes])[0]
    gpu_estimator.finish["oks_threshold"] = None
    try:
        got = gpu_estimator.estimate_boxes([image], [boxes])[0]
    finally:
        gpu_estimator.finish["oks_threshold"] = 0.8
    np.testing.assert_array_equal(got.boxes, reference.boxes)
    confident = reference.keypoint_scores > 0.3
    d = np.linalg.norm(got.keypoints - reference.keypoints, axis=-1)[confident]
    # the same fp32 MoveNet on the same crop windows (grid_sample vs warpAffine resampling)
    assert confident.sum() >= 20 and np.median(d) < 2.0, np.median(d)
    detected = gpu_estimator.detector(image)
    assert len(detected) >= 2 and (detected.keypoint_scores == 0).all()
