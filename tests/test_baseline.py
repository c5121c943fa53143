"""The plain per-person loop `posekit bench` measures posekit against: Google's own MoveNet graph
(tf2onnx), one crop at a time, scored the way the issue defines a person's score."""

from __future__ import annotations

import numpy as np
import pytest

from posekit.baseline import PlainLoop
from posekit.io import read_image
from posekit.pipeline import PoseEstimator

from badinputs import shared_models
from paths import COCO_IMAGES

IMAGES = ["000000000785.jpg", "000000040083.jpg", "000000196141.jpg"]


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    with shared_models(tmp_path_factory):
        yield PlainLoop()


@pytest.mark.parametrize("name", IMAGES)
def test_plain_loop_is_posekit_fp32_one_crop_at_a_time(plain, name):
    """Same boxes (score >= 0.3, no extra NMS), square crops, FP32: the plain loop (Google's graph)
    and posekit (its own export, batched) agree to a fraction of a pixel; the person score is the
    box score times the mean visible keypoint score in both."""
    image = read_image(COCO_IMAGES / name)
    want = plain(image)
    got = PoseEstimator(det="rtmdet-nano-person", pose="movenet-thunder", precision="fp32", crop_shape="square", det_score_threshold=0.3, det_iou_threshold=1.0,
                        oks_threshold=None, workers=1)(image)
    assert len(want) == len(got) >= 1
    np.testing.assert_allclose(got.boxes, want.boxes, atol=1e-3)
    np.testing.assert_allclose(got.keypoints, want.keypoints, atol=0.05)
    np.testing.assert_allclose(got.scores, want.scores, atol=1e-4)
    visible = want.keypoint_scores > 0.2
    mean_visible = np.where(visible, want.keypoint_scores, 0).sum(1) / np.maximum(visible.sum(1), 1)
    np.testing.assert_allclose(want.scores, want.box_scores * mean_visible, atol=1e-6)
