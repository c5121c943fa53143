"""Person detectors on real weights and real COCO images."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from posekit.detectors import Detector
from posekit.ops.boxes import box_iou
from posekit.registry import UnknownModel

from badinputs import shared_models
from paths import COCO_IMAGES


@pytest.fixture(scope="module")
def rtmdet(tmp_path_factory):
    with shared_models(tmp_path_factory):
        yield Detector("rtmdet-nano-person")


@pytest.fixture(scope="module")
def yolox(tmp_path_factory):
    with shared_models(tmp_path_factory):
        yield Detector("yolox-nano", score_threshold=0.3)


def _gt_people(coco_annotations, min_area):
    by_file = {im["id"]: im["file_name"] for im in coco_annotations["images"]}
    out: dict[str, list] = {}
    for a in coco_annotations["annotations"]:
        if a["iscrowd"] or a["area"] < min_area:
            continue
        x, y, w, h = a["bbox"]
        out.setdefault(by_file[a["image_id"]], []).append([x, y, x + w, y + h])
    return out


@pytest.mark.parametrize("name", ["rtmdet", "yolox"])
def test_detector_finds_the_large_annotated_people(name, request, coco_annotations):
    detector = request.getfixturevalue(name)
    people = _gt_people(coco_annotations, min_area=96 * 96)
    found = total = 0
    for file_name, boxes in people.items():
        image = cv2.imread(str(COCO_IMAGES / file_name))
        detected = detector(image)
        assert detected.boxes.dtype == np.float32 and detected.keypoints.shape == (len(detected), 17, 2)
        assert (detected.boxes[:, [0, 2]] >= 0).all() and (detected.boxes[:, [2]] <= image.shape[1]).all()
        assert (detected.boxes[:, [3]] <= image.shape[0]).all()
        iou = box_iou(np.array(boxes), detected.boxes)
        found += int((iou.max(1, initial=0) >= 0.6).sum())
        total += len(boxes)
    assert total >= 12
    assert found / total >= 0.85, f"{name}: {found} of {total} large people found"


def test_batched_detection_equals_one_by_one(rtmdet, coco_image_paths):
    images = [cv2.imread(str(p)) for p in coco_image_paths[:4]]
    together = rtmdet.detect_batch(images)
    for image, batch_result in zip(images, together):
        alone = rtmdet(image)
        assert len(alone) == len(batch_result)
        np.testing.assert_allclose(batch_result.boxes, alone.boxes, atol=0.05)
        np.testing.assert_allclose(batch_result.box_scores, alone.box_scores, atol=1e-4)


@pytest.mark.parametrize("image", [
    np.full((480, 640, 3), 114, np.uint8),   # nobody: a flat grey frame
    np.zeros((1, 1, 3), np.uint8),           # a single pixel
    np.zeros((2000, 8, 3), np.uint8),        # an extreme aspect ratio
])
def test_no_person_gives_empty_poses(rtmdet, image):
    found = rtmdet(image)
    assert len(found) == 0 and found.boxes.shape == (0, 4)


def test_score_threshold_filters(coco_image_paths):
    image = cv2.imread(str(coco_image_paths[0]))
    low = Detector("rtmdet-nano-person", score_threshold=0.05)(image)
    high = Detector("rtmdet-nano-person", score_threshold=0.5)(image)
    assert len(low) > len(high) >= 1
    assert (high.box_scores >= 0.5).all() and (low.box_scores >= 0.05).all()


@pytest.mark.parametrize("name, error, message", [
    ("movenet-thunder", ValueError, "movenet-thunder is a pose model, not a detector"),
    ("rtmdet-nano-persn", UnknownModel, "did you mean rtmdet-nano-person"),
])
def test_bad_detector_names(name, error, message):
    with pytest.raises(error, match=message):
        Detector(name)


def test_explicit_weights_must_be_onnx(tmp_path):
    fake = tmp_path / "rtmdet.pth"
    fake.write_bytes(b"not onnx")
    with pytest.raises(ValueError, match=r"expected an \.onnx detector file, got .*rtmdet\.pth"):
        Detector("rtmdet-nano-person", weights=fake)
