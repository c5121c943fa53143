"""PP-TinyPose (PaddleDetection): a top-down heatmap model (a wider naive Lite-HRNet), read from
its OpenVINO IR.

Input: the crop as RGB, pixels/255 then ImageNet mean/std (registry entry); one fixed size per
model (256x192 or 128x96). Crops follow PaddleDetection's deploy convention: the box widened to
the input's aspect (3:4) and scaled 1.25, a plain affine crop, in PaddleDetection's pixel-index
coordinates (`posekit.ops.topdown.paddle_crop`: half a pixel is worth 1-4 AP points here).
Raw output: 17 heatmaps at stride 4, decoded by argmax + DARK sub-pixel refinement
(`posekit.ops.heatmaps`). Flip test: the mirrored crop's heatmaps, left/right swapped and shifted
one pixel, averaged with the plain ones.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from posekit.families import TopDownFamily
from posekit.skeleton import COCO_FLIP_PAIRS


def _crop(image: np.ndarray, boxes: np.ndarray, size: tuple[int, int], scale: float):
    """PaddleDetection's crop: boxes read as PaddleDetection reads COCO boxes (pixel-index
    convention: clipped, width and height minus one), keypoints back in the same numbers."""
    from posekit.ops.topdown import clean_boxes, paddle_crop

    return paddle_crop(image, clean_boxes(boxes, image.shape), size, scale)


def _decode(outputs: Sequence[np.ndarray], input_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    from posekit.ops.heatmaps import decode_heatmaps

    return decode_heatmaps(outputs[0], input_size=input_size, dark=True)


def _merge_flip(outputs: Sequence[np.ndarray], flipped: Sequence[np.ndarray],
                flip_pairs: Sequence[tuple[int, int]]) -> list[np.ndarray]:
    from posekit.ops.heatmaps import flip_heatmaps_back

    return [(outputs[0] + flip_heatmaps_back(flipped[0], flip_pairs, shift=True)) / 2]


def decode_torch(outputs, input_size: tuple[int, int]):
    """The GPU pipeline's decoder (argmax + DARK in torch)."""
    from posekit.models.heatmaps_torch import decode_heatmaps_torch

    return decode_heatmaps_torch(outputs[0], input_size=input_size)


# INT8 does not hold here: on the shared val set with PicoDet-S-320 boxes (scripts/int8_isa.py,
# BENCHMARKS.md) FP32 scores 0.795 AP; INT8 with every op quantised 0.673 (u8s8; 0.632 on an
# emulated CPU without VNNI), 0.710 with 7-bit weights (reduce_range; the same without VNNI),
# 0.686 u8u8, 0.662 Conv only, 0.687-0.710 with the first and/or last convs in float; none
# within a point of FP32, and none clearly faster on the CPU. So FP32 is the family's CPU default;
# INT8 (built when asked) takes posekit.build's ISA-safe settings.
FAMILY = TopDownFamily(
    name="tinypose",
    output_names=("heatmaps",),
    torch_network="posekit.models.openvino_ir:build_openvino_ir",
    decode=_decode,
    decode_torch="posekit.families.tinypose:decode_torch",
    flip_pairs=COCO_FLIP_PAIRS,
    merge_flip=_merge_flip,
    any_size=False,
    crop=_crop,
    int8_on_cpu=False,
)
