"""The last step of every pipeline: person scores, pose NMS (OKS) and the score floor."""

from __future__ import annotations

from typing import Callable

import numpy as np

from posekit.ops.oks import oks_nms
from posekit.structures import Poses


def _box_score(poses: Poses, visible: np.ndarray) -> np.ndarray:
    return poses.box_scores


def _keypoint_score(poses: Poses, visible: np.ndarray) -> np.ndarray:
    s = np.where(visible, poses.keypoint_scores, 0).sum(1)
    return (s / np.maximum(visible.sum(1), 1)).astype(np.float32)


def _box_times_keypoint_score(poses: Poses, visible: np.ndarray) -> np.ndarray:
    return poses.box_scores * _keypoint_score(poses, visible)


# person score -> fn(poses, visible keypoints (N, K) bool) -> (N,)
PERSON_SCORES: dict[str, Callable[[Poses, np.ndarray], np.ndarray]] = {
    "box": _box_score,
    "keypoints": _keypoint_score,
    "box*keypoints": _box_times_keypoint_score,
}


def check_person_score(person_score: str) -> None:
    if person_score not in PERSON_SCORES:
        raise ValueError(f"unknown person_score {person_score!r}; use one of {', '.join(PERSON_SCORES)}")


def finish_poses(poses: Poses, person_score: str = "box*keypoints", keypoint_threshold: float = 0.2,
                 oks_threshold: float | None = 0.8, min_score: float = 0.0) -> Poses:
    """Person scores, pose NMS (OKS) and the score floor. A box in which the pose model sees no
    keypoint above `keypoint_threshold` is not reported as a person (PicoDet, for one, puts a
    0.6 box around a blank frame)."""
    if len(poses) == 0:
        return poses
    visible = poses.keypoint_scores > keypoint_threshold
    if not visible.any(1).all():
        poses, visible = poses[visible.any(1)], visible[visible.any(1)]
        if len(poses) == 0:
            return poses
    poses = poses.replace(scores=PERSON_SCORES[person_score](poses, visible))
    if oks_threshold is not None and len(poses) > 1:
        wh = poses.boxes[:, 2:] - poses.boxes[:, :2]
        keep = oks_nms(poses.keypoints, poses.scores, wh.prod(1) * 0.53, oks_threshold)
        poses = poses[np.sort(keep)]
    if min_score > 0:
        poses = poses[poses.scores >= min_score]
    return poses
