"""MoveNet SinglePose (Lightning, Thunder): Google's top-down model, from its TF.js weights.

Input: the crop as RGB 0..255, no normalisation; fully convolutional, so any height and width
that are multiples of 32 (posekit's "fit" crops). Raw outputs: four heads at stride 4, decoded
as Google's graph does (`posekit.ops.movenet.decode_movenet`).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from posekit.families import TopDownFamily
from posekit.ops.movenet import decode_movenet
from posekit.skeleton import COCO_FLIP_PAIRS

# Kept in float in INT8 builds: the stem (input normalisation and first conv), the FPN (lateral
# 1x1 convs, upsampling, adds, smoothing convs) and the four heads. The FPN and heads are where
# 8-bit rounding moves keypoints; the backbone, ~90% of the time, stays INT8.
# scripts/int8_ap.py measures the AP of each choice (BENCHMARKS.md).
FLOAT_PREFIXES = ("/Mul", "/Sub", "/stem/", "/lateral.", "/smooth.", "/Resize", "/Add",
                  "/centre/", "/heatmaps/", "/regression/", "/offsets/")


def _decode(outputs: Sequence[np.ndarray], input_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    keypoints, scores = decode_movenet(*outputs, input_size=input_size)
    return np.asarray(keypoints, np.float32), np.asarray(scores, np.float32)


def decode_torch(outputs, input_size: tuple[int, int]):
    """The GPU pipeline's decoder: `posekit.models.movenet.decode_movenet_torch` on the four heads."""
    from posekit.models.movenet import decode_movenet_torch

    return decode_movenet_torch(*outputs, input_size=input_size)


def _keep_float(node_names: Sequence[str]) -> tuple[str, ...]:
    return tuple(n for n in node_names if n.startswith(FLOAT_PREFIXES))


FAMILY = TopDownFamily(
    name="movenet",
    output_names=("centre", "heatmaps", "regression", "offsets"),
    torch_network="posekit.models.movenet:build_movenet",
    decode=_decode,
    decode_torch="posekit.families.movenet:decode_torch",
    flip_pairs=COCO_FLIP_PAIRS,
    any_size=True,
    int8_keep_float=_keep_float,
    int8_on_cpu=True,  # AP 0.698 vs 0.708 FP32 on the shared images, 1.6x the speed (BENCHMARKS.md)
)
