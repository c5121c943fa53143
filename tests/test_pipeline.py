"""PoseEstimator end to end on real weights and real COCO images."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from posekit.evaluate import gt_boxes, load_annotations
from posekit.io import InputError
from posekit.ops.oks import oks
from posekit.ops.poses import PERSON_SCORES
from posekit.pipeline import PoseEstimator
from posekit.structures import Poses

from badinputs import shared_models, GOOD_JPEG, make
from paths import COCO_ANN, COCO_IMAGES


@pytest.fixture(scope="module")
def estimator(tmp_path_factory):
    with shared_models(tmp_path_factory):
        yield PoseEstimator()


@pytest.fixture(scope="module")
def coco():
    return load_annotations(COCO_ANN)


def _gt_keypoints(coco, file_name):
    image_id = next(i for i, im in coco.imgs.items() if im["file_name"] == file_name)
    anns = [a for a in coco.imgToAnns[image_id] if a["num_keypoints"] > 0 and not a["iscrowd"]]
    return anns


def test_one_person_matches_the_annotation(estimator, coco):
    image = cv2.imread(str(GOOD_JPEG))
    poses = estimator(image)
    (ann,) = _gt_keypoints(coco, GOOD_JPEG.name)
    gt = np.array(ann["keypoints"], np.float32).reshape(17, 3)
    best = poses[int(np.argmax(poses.scores))]
    similarity = oks(best.keypoints, gt[None, :, :2], np.array([ann["area"]]), gt[None, :, 2] > 0)[0, 0]
    assert similarity > 0.85, f"OKS {similarity:.3f} with the annotated skier"
    h, w = image.shape[:2]
    assert ((best.keypoints >= 0) & (best.keypoints <= [w, h])).all()
    assert 0 < best.scores[0] <= best.box_scores[0]  # box x mean visible keypoint score


def test_path_input_equals_array_input(estimator):
    a = estimator(str(GOOD_JPEG))
    b = estimator(cv2.imread(str(GOOD_JPEG)))
    np.testing.assert_allclose(a.keypoints, b.keypoints, atol=1e-4)


@pytest.mark.parametrize("kind", ["grayscale", "rgba", "png16"])
def test_awkward_formats_give_the_same_person(estimator, kind, tmp_path):
    reference = estimator(str(GOOD_JPEG))
    poses = estimator(make(kind, tmp_path))
    assert len(poses) >= 1
    i, j = int(np.argmax(poses.scores)), int(np.argmax(reference.scores))
    # A grey image loses colour, so only nearly the same keypoints; RGBA / 16-bit are the same pixels.
    tolerance = 12.0 if kind == "grayscale" else 1.5
    assert np.median(np.abs(poses.keypoints[i] - reference.keypoints[j])) < tolerance


@pytest.mark.parametrize("image", [np.full((240, 320, 3), 114, np.uint8), np.zeros((1, 1, 3), np.uint8)])
def test_nobody_there(estimator, image):
    poses = estimator(image)
    assert len(poses) == 0 and poses.keypoints.shape == (0, 17, 2)


def test_stream_equals_one_at_a_time_and_keeps_order(estimator, coco_image_paths):
    paths = coco_image_paths[:7]  # an odd count: the last chunk is short
    streamed = list(estimator.stream([str(p) for p in paths]))
    assert len(streamed) == len(paths)
    for path, poses in zip(paths, streamed):
        alone = estimator(cv2.imread(str(path)))
        assert len(alone) == len(poses)
        np.testing.assert_allclose(poses.keypoints, alone.keypoints, atol=0.05)
        np.testing.assert_allclose(poses.scores, alone.scores, atol=1e-4)


def test_stream_reports_a_bad_frame(estimator, tmp_path):
    frames = [str(GOOD_JPEG), str(make("text", tmp_path)), str(GOOD_JPEG)]
    with pytest.raises(InputError, match=r"notes\.jpg: not a decodable image"):
        list(estimator.stream(frames))


def test_gt_boxes_and_oks_nms_remove_duplicates(coco):
    image = cv2.imread(str(GOOD_JPEG))
    image_id = next(i for i, im in coco.imgs.items() if im["file_name"] == GOOD_JPEG.name)
    box = gt_boxes(coco, image_id)
    doubled = box[[0, 0]].replace(box_scores=np.array([0.9, 0.8], np.float32))
    with_nms = PoseEstimator(oks_threshold=0.8).estimate_boxes([image], [doubled])[0]
    without = PoseEstimator(oks_threshold=None).estimate_boxes([image], [doubled])[0]
    assert len(without) == 2 and len(with_nms) == 1
    assert with_nms.box_scores[0] == pytest.approx(0.9)


@pytest.mark.parametrize("person_score", sorted(PERSON_SCORES))
def test_person_score_choices(person_score):
    poses = PoseEstimator(person_score=person_score)(cv2.imread(str(GOOD_JPEG)))
    visible = poses.keypoint_scores > 0.2
    mean_visible = np.where(visible, poses.keypoint_scores, 0).sum(1) / np.maximum(visible.sum(1), 1)
    expected = {"box": poses.box_scores, "keypoints": mean_visible, "box*keypoints": poses.box_scores * mean_visible}
    np.testing.assert_allclose(poses.scores, expected[person_score], atol=1e-6)


@pytest.mark.parametrize("kwargs, message", [
    ({"person_score": "median"}, "unknown person_score 'median'"),
    ({"workers": 0}, "must be >= 1"),
    ({"crop_shape": "round"}, "unknown crop_shape 'round'; use one of fit, square"),
    ({"pose": "rtmdet-nano-person"}, "rtmdet-nano-person is a detector model, not a top-down pose model"),
])
def test_bad_options(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PoseEstimator(**kwargs)


def test_lightning_is_the_fast_choice(coco):
    poses = PoseEstimator(pose="movenet-lightning")(str(GOOD_JPEG))
    assert poses.keypoints.shape[1:] == (17, 2) and len(poses) >= 1


def test_yolox_as_the_detector():
    poses = PoseEstimator(det="yolox-nano")(str(GOOD_JPEG))
    assert len(poses) >= 1 and poses.keypoint_scores.max() > 0.5


# --- crops shaped like the person ---------------------------------------------------------------

def test_default_is_tinypose_fp32_on_picodet_boxes(estimator):
    # chosen by `posekit bench --stage models` (BENCHMARKS.md): the most accurate combination at
    # 2x the plain loop; TinyPose keeps fp32 (INT8 lost 12 AP points) and its fixed input size
    assert estimator.detector.name == "picodet-s-320-pedestrian" and estimator.detector.score_threshold == 0.35
    assert estimator.pose.name == "tinypose-256x192" and estimator.precision == "fp32"
    assert estimator.crop_shape == "square" and estimator.pose.engine.inputs[0].shape == (None, 3, 256, 192)


def test_movenet_runs_int8_with_crops_shaped_like_the_person():
    estimator = PoseEstimator(det="rtmdet-nano-person", pose="movenet-thunder")
    assert estimator.precision == "int8" and estimator.crop_shape == "fit"
    assert estimator.detector.score_threshold == 0.2
    assert estimator.pose.engine.path.name == "model.int8.onnx"
    assert estimator.pose.engine.inputs[0].shape == (None, 3, None, None)


def test_fit_and_square_crops_find_the_same_people(coco):
    """On annotated boxes, crops shaped like each person (about half the pixels here) give the
    poses square crops give: OKS between the two above 0.9 for nearly every annotated person."""
    fit, square = (PoseEstimator(det="rtmdet-nano-person", pose="movenet-thunder", precision="fp32", crop_shape=shape,
                                 oks_threshold=None) for shape in ("fit", "square"))
    similarities, fit_pixels, square_pixels = [], 0, 0
    for image_id in sorted(coco.getImgIds()):
        people = [a for a in coco.imgToAnns[image_id] if a["num_keypoints"] >= 5 and not a["iscrowd"]]
        if not people:
            continue
        image = cv2.imread(str(COCO_IMAGES / coco.imgs[image_id]["file_name"]))
        xywh = np.array([a["bbox"] for a in people], np.float32)
        boxes = Poses(boxes=np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], 1),
                      box_scores=np.ones(len(people), np.float32),
                      keypoints=np.zeros((len(people), 17, 2), np.float32),
                      keypoint_scores=np.zeros((len(people), 17), np.float32))
        a = fit.estimate_boxes([image], [boxes])[0]
        b = square.estimate_boxes([image], [boxes])[0]
        fit_pixels += fit._input_shapes(boxes.boxes).prod(1).sum()
        square_pixels += 256 * 256 * len(boxes)
        visible = b.keypoint_scores > 0.3
        area = np.prod(boxes.boxes[:, 2:] - boxes.boxes[:, :2], 1) * 0.53
        similarities += [oks(a.keypoints[i:i + 1], b.keypoints[i:i + 1], area[i:i + 1], visible[i:i + 1])[0, 0]
                         for i in range(len(boxes))]
    similarities = np.array(similarities)
    print(f"fit vs square OKS: median {np.median(similarities):.3f}, > 0.9: {(similarities > 0.9).mean():.2f}, "
          f"pixels {fit_pixels / square_pixels:.2f} of square")
    assert len(similarities) >= 20
    assert np.median(similarities) > 0.95 and (similarities > 0.9).mean() >= 0.85, np.round(similarities, 2)
    assert fit_pixels < 0.75 * square_pixels


def test_fit_falls_back_to_square_on_a_fixed_size_engine(tmp_path):
    from posekit.engines.onnxruntime import OnnxRuntimeEngine
    from posekit.export import ensure_onnx
    from posekit.pose_models import TopDownModel

    fixed = TopDownModel(OnnxRuntimeEngine(ensure_onnx("movenet-lightning")))
    estimator = PoseEstimator(pose=fixed)
    assert not fixed.any_size and estimator.crop_shape == "square"
    poses = estimator(str(GOOD_JPEG))
    assert len(poses) >= 1 and poses.keypoint_scores.max() > 0.5
