"""YOLOX (Megvii): anchor-free detector, 80 COCO classes, person = class 0.

Input: letterboxed (grey 114, right/bottom) BGR 0..255, no normalisation. Raw output: one
(B, N, 5 + 80) grid prediction, decoded, thresholded and NMS'd by `posekit.ops.yolox`.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from posekit.families import DetectorFamily


def _postprocess(outputs: Sequence[np.ndarray], input_size: tuple[int, int], score_threshold: float,
                 iou_threshold: float, max_det: int) -> list[tuple[np.ndarray, np.ndarray]]:
    from posekit.ops.yolox import postprocess_yolox

    per_image = postprocess_yolox(outputs[0], input_size=input_size, score_threshold=score_threshold,
                                  iou_threshold=iou_threshold, classes=(0,), max_det=max_det)
    return [(boxes, scores) for boxes, scores, _labels in per_image]


FAMILY = DetectorFamily(
    name="yolox",
    output_names=("output",),
    torch_network="posekit.models.yolox:build_yolox",
    postprocess=_postprocess,
    resize="letterbox",
    pad_value=114,
    boxes_torch="posekit.gpu_pipeline:yolox_person_boxes",
)
