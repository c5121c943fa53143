"""PicoDet-S pedestrian from its OpenVINO IR: the torch network and its dynamic-batch ONNX export
against the independent reference ONNX on real frames, the NMS post-processing, person recall on
the COCO mini set, and the builder refusing another model's files."""

from __future__ import annotations

import numpy as np
import pytest

from ir_models import (IR_XML, coco, coco_images, export_dynamic, max_rel_error, resized_frames, run_onnx,
                       run_reference, run_torch)
from paths import session_cache
from posekit.ops.boxes import box_iou
from posekit.ops.crop import stretch as resize_image
from posekit.ops.picodet import postprocess_picodet

SIZES = {"picodet-s-320-pedestrian": 320, "picodet-s-192-pedestrian": 192}
ANCHORS = {"picodet-s-320-pedestrian": 2125, "picodet-s-192-pedestrian": 765}
TOL = 1e-3  # relative to each output's largest magnitude


@pytest.fixture(scope="session")
def exported(tmp_path_factory):
    folder = session_cache(tmp_path_factory) / "ir-onnx"
    folder.mkdir(exist_ok=True)
    return lambda name: export_dynamic(name, folder)


def _compare(got, want):
    scores, boxes = got
    ref_scores, ref_boxes = want
    assert scores.shape == ref_scores.shape and boxes.shape == ref_boxes.shape
    assert max_rel_error(scores, ref_scores) < TOL
    assert max_rel_error(boxes, ref_boxes) < TOL


@pytest.mark.parametrize("name", SIZES)
def test_torch_matches_reference_batch_of_7(name):
    frames = resized_frames(SIZES[name])[:7]
    want = run_reference(name, frames)  # outputs: scores (1, 1, N), boxes (1, N, 4)
    got = run_torch(name, frames)
    assert got[0].shape == (7, 1, ANCHORS[name]) and got[1].shape == (7, ANCHORS[name], 4)
    _compare(got, want)
    _compare(run_torch(name, frames[2:3]), tuple(w[2:3] for w in want))
    assert want[0].max() > 0.5  # real frames with people in them


@pytest.mark.parametrize("name, batch", [("picodet-s-320-pedestrian", 1), ("picodet-s-320-pedestrian", 7),
                                         ("picodet-s-192-pedestrian", 1), ("picodet-s-192-pedestrian", 7),
                                         ("picodet-s-192-pedestrian", 64)])
def test_exported_dynamic_batch(exported, name, batch):
    frames = resized_frames(SIZES[name])
    idx = np.arange(batch) % len(frames)
    want = run_reference(name, frames)
    _compare(run_onnx(exported(name), frames[idx]), tuple(w[idx] for w in want))


@pytest.fixture(scope="module")
def detections():
    """name -> [(image id, image boxes (M, 4), scores (M,))] over the mini set, through the torch network."""
    out = {}
    for name, size in SIZES.items():
        scores, boxes = run_torch(name, resized_frames(size))
        per_image = postprocess_picodet(scores, boxes)
        out[name] = [(image_id, resize_image(image, (size, size))[1].boxes_to_image(b), s)
                     for (image_id, image), (b, s) in zip(coco_images(), per_image)]
    return out


# Measured on the 48 non-crowd people of the mini set (the torch network, PaddleDetection's NMS):
# recall at IoU > 0.5 with every kept box 0.854 (320) and 0.792 (192); of the boxes scoring over
# 0.5, 31 of 33 (320) and 24 of 26 (192) overlap an annotated person.
@pytest.mark.parametrize("name, min_recall, min_precision", [("picodet-s-320-pedestrian", 0.82, 0.9),
                                                             ("picodet-s-192-pedestrian", 0.75, 0.9)])
def test_person_recall_on_coco_mini(detections, name, min_recall, min_precision):
    from posekit.evaluate import gt_boxes

    found = total = confident = matched = 0
    for image_id, boxes, scores in detections[name]:
        assert len(boxes) <= 100 and (np.diff(scores) <= 0).all() and (scores > 0.025).all()
        gt = gt_boxes(coco(), image_id).boxes
        total += len(gt)
        if len(gt) and len(boxes):
            found += int((box_iou(gt, boxes).max(1) > 0.5).sum())
        sure = boxes[scores > 0.5]
        confident += len(sure)
        if len(sure) and len(gt):
            matched += int((box_iou(sure, gt).max(1) > 0.5).sum())
    assert total == 48
    assert found / total >= min_recall, f"recall {found}/{total}"
    assert confident >= 20 and matched / confident >= min_precision, f"{matched} of {confident} confident boxes match a person"


def _raw(boxes, scores):
    return np.asarray(scores, np.float32)[None, None], np.asarray(boxes, np.float32)[None]


@pytest.mark.parametrize("boxes, scores, kwargs, want", [
    ([[0, 0, 10, 10], [1, 0, 11, 10]], [0.9, 0.8], {}, [0]),                                  # IoU 0.82 > 0.6: one
    ([[0, 0, 10, 10], [3, 0, 13, 10]], [0.8, 0.9], {}, [1, 0]),                               # IoU 0.54: both, best first
    ([[0, 0, 10, 10], [20, 0, 30, 10]], [0.02, 0.01], {}, []),                                # all under 0.025
    ([[0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10]], [0.5, 0.7, 0.6], {"keep": 2}, [1, 2]),
    ([[0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10]], [0.5, 0.7, 0.6], {"top_k": 1}, [1]),
    ([[0, 0, 10, 10], [20, 0, 30, 10]], [0.3, 0.2], {"score_threshold": 0.25}, [0]),
])
def test_postprocess_rules(boxes, scores, kwargs, want):
    (got_boxes, got_scores), = postprocess_picodet(*_raw(boxes, scores), **kwargs)
    np.testing.assert_array_equal(got_boxes, np.asarray(boxes, np.float32).reshape(-1, 4)[want])
    np.testing.assert_array_equal(got_scores, np.asarray(scores, np.float32)[want])
    assert got_boxes.shape == (len(want), 4)


def test_postprocess_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match=r"expected scores \(B, 1, N\) and boxes \(B, N, 4\) of one N, got \(1, 5\) and \(1, 4, 4\)"):
        postprocess_picodet(np.zeros((1, 1, 5)), np.zeros((1, 4, 4)))


def test_resize_transform_round_trip():
    image = np.zeros((480, 640, 3), np.uint8)
    resized, transform = resize_image(image, (320, 320))
    assert resized.shape == (320, 320, 3)
    np.testing.assert_allclose(transform.boxes_to_image([[0, 0, 320, 320], [80, 40, 160, 80]]),
                               [[0, 0, 640, 480], [160, 60, 320, 120]])


def _spec(name, task, size, xml):
    from posekit.registry import ModelSpec, WeightFile

    return ModelSpec(name=name, family="openvino-test", task=task, input_size=size, colour="RGB",
                     mean=(123.675, 116.28, 103.53), std=(58.395, 57.12, 57.375),
                     files=(WeightFile(str(xml)), WeightFile(str(xml.with_suffix(".bin")))),
                     source="test", licence="Apache-2.0", accuracy="")


@pytest.mark.parametrize("spec_name, task, size, given, error", [
    ("picodet-s-320-pedestrian", "detector", (320, 320), "picodet-s-320-pedestrian", None),
    ("picodet-s-320-pedestrian", "detector", (320, 320), "picodet-s-192-pedestrian", r"declares a 192x192 input, picodet-s-320-pedestrian expects 320x320"),
    ("picodet-s-192-pedestrian", "detector", (256, 192), "tinypose-256x192", r"gives outputs \('heatmaps',\), picodet-s-192-pedestrian \(detector\) expects \('scores', 'boxes'\)"),
    ("tinypose-256x192", "pose", (256, 192), "picodet-s-192-pedestrian", r"declares a 192x192 input, tinypose-256x192 expects 256x192"),
])
def test_builder_refuses_another_models_files(spec_name, task, size, given, error):
    from posekit.models.openvino_ir import ArchitectureMismatch, build_openvino_ir

    spec = _spec(spec_name, task, size, IR_XML[spec_name])
    if error is None:
        net = build_openvino_ir(spec, weights=IR_XML[given], download=False)
        assert net.output_names == ("scores", "boxes") and net.input_size == size
        return
    with pytest.raises(ArchitectureMismatch, match=error) as info:
        build_openvino_ir(spec, weights=IR_XML[given], download=False)
    assert str(IR_XML[given]) in str(info.value) and "\n" not in str(info.value)
