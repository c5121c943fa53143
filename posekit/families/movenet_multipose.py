"""MoveNet MultiPose Lightning (Google): a bottom-up model that finds up to 6 people in a frame.

Input: the whole frame letterboxed to any height and width that are multiples of 32 (256 on the
long side is Google's suggestion), RGB 0..255. Raw outputs: the heads before Google's in-graph
decoding, decoded by posekit (`posekit.ops.multipose`) as Google's graph does.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from posekit.families import BottomUpFamily


def _decode(outputs: Sequence[np.ndarray], input_size: tuple[int, int]):
    """Per image: keypoints (P, 17, 2), keypoint scores (P, 17), boxes (P, 4), scores (P,), input
    pixels, the people Google's graph reports (person score above 0), best first."""
    from posekit.ops.multipose import decode_multipose

    decoded = decode_multipose(*outputs)
    return [tuple(decoded.people(i)) for i in range(len(decoded.scores))]


FAMILY = BottomUpFamily(
    name="movenet_multipose",
    output_names=("centre", "heatmaps", "regression", "offsets", "box_scale", "box_offset"),
    torch_network="posekit.models.movenet_multipose:build_movenet_multipose",
    decode=_decode,
    multiple=32,
)
