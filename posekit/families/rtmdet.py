"""RTMDet (OpenMMLab) as exported by MMDeploy with NMS inside: a person-only detector.

Input: letterboxed (grey 114, right/bottom) BGR with ImageNet mean/std (in the registry entry).
Raw outputs: dets (B, N, 5) x0 y0 x1 y1 score in input pixels, labels (B, N). No torch network.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from posekit.families import DetectorFamily


def _postprocess(outputs: Sequence[np.ndarray], input_size: tuple[int, int], score_threshold: float,
                 iou_threshold: float, max_det: int) -> list[tuple[np.ndarray, np.ndarray]]:
    dets, labels = outputs[0], outputs[1]
    result = []
    for d, lab in zip(dets, labels):
        keep = lab == 0  # the person-only model labels everything 0; keep that contract explicit
        result.append((d[keep, :4], d[keep, 4]))
    return result


FAMILY = DetectorFamily(
    name="rtmdet",
    output_names=("dets", "labels"),
    postprocess=_postprocess,
    resize="letterbox",
    pad_value=114,
)
