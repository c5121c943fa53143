"""PicoDet-S pedestrian (PaddleDetection, LCNet backbone), read from its OpenVINO IR exported
without NMS: the PP-TinyPose pipeline's person detector.

Input: the frame resized to SxS without keeping its aspect (bicubic), RGB, pixels/255 then
ImageNet mean/std (registry entry). Raw outputs: scores (B, 1, N) after sigmoid and decoded
boxes (B, N, 4) x0 y0 x1 y1 in input pixels; PaddleDetection's NMS follows (`posekit.ops.picodet`).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from posekit.families import DetectorFamily


def _postprocess(outputs: Sequence[np.ndarray], input_size: tuple[int, int], score_threshold: float,
                 iou_threshold: float, max_det: int) -> list[tuple[np.ndarray, np.ndarray]]:
    from posekit.ops.picodet import postprocess_picodet

    scores, boxes = outputs
    return postprocess_picodet(scores, boxes, score_threshold=score_threshold, iou_threshold=iou_threshold,
                               keep=max_det)


FAMILY = DetectorFamily(
    name="picodet",
    output_names=("scores", "boxes"),
    torch_network="posekit.models.openvino_ir:build_openvino_ir",
    postprocess=_postprocess,
    resize="stretch",
    boxes_torch="posekit.gpu_pipeline:picodet_person_boxes",
)
