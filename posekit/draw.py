"""Drawing poses on images: skeleton lines, keypoints, boxes; one colour per track id when tracked."""

from __future__ import annotations

import numpy as np

from posekit.skeleton import COCO_SKELETON
from posekit.structures import Poses

# BGR; tracks cycle through these, untracked people share the first.
PALETTE = np.array([
    (0, 200, 255), (255, 128, 0), (60, 220, 60), (220, 60, 220), (0, 80, 255), (255, 220, 0),
    (160, 80, 255), (0, 255, 170), (255, 0, 100), (128, 128, 255), (80, 180, 120), (200, 200, 200),
], np.uint8)


def track_colour(track_id: int | None) -> tuple[int, int, int]:
    if track_id is None:
        return tuple(int(c) for c in PALETTE[0])
    return tuple(int(c) for c in PALETTE[int(track_id) % len(PALETTE)])


def draw_poses(image: np.ndarray, poses: Poses, keypoint_threshold: float = 0.3, boxes: bool = True,
               skeleton: tuple[tuple[int, int], ...] = COCO_SKELETON, copy: bool = True,
               min_box_score: float = 0.0) -> np.ndarray:
    """Draw the people of `poses` whose detector box score reaches `min_box_score` on an
    (H, W, 3) uint8 BGR image; returns the drawn image.

    Keypoints scoring at or below `keypoint_threshold` and the limbs touching them are left out.
    copy=False draws in place.
    """
    import cv2

    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 image, got {image.shape} {image.dtype}")
    canvas = image.copy() if copy else image
    if min_box_score > 0 and len(poses):
        poses = poses[poses.box_scores >= min_box_score]
    thickness = max(1, int(round(max(image.shape[:2]) / 400)))
    for i in range(len(poses)):
        colour = track_colour(None if poses.track_ids is None else poses.track_ids[i])
        if boxes:
            x0, y0, x1, y1 = (int(round(v)) for v in poses.boxes[i])
            cv2.rectangle(canvas, (x0, y0), (x1, y1), colour, thickness)
            label = f"{poses.scores[i]:.2f}" if poses.track_ids is None else f"#{poses.track_ids[i]}"
            cv2.putText(canvas, label, (x0, max(y0 - 4, 10)), cv2.FONT_HERSHEY_SIMPLEX, 0.4 * thickness,
                        colour, thickness, cv2.LINE_AA)
        points = np.round(poses.keypoints[i]).astype(np.int32)
        visible = poses.keypoint_scores[i] > keypoint_threshold
        for a, b in skeleton:
            if visible[a] and visible[b]:
                cv2.line(canvas, tuple(int(v) for v in points[a]), tuple(int(v) for v in points[b]), colour,
                         thickness + 1, cv2.LINE_AA)
        for k in np.flatnonzero(visible):
            cv2.circle(canvas, tuple(int(v) for v in points[k]), thickness + 2, (255, 255, 255), -1, cv2.LINE_AA)
            cv2.circle(canvas, tuple(int(v) for v in points[k]), thickness + 1, colour, -1, cv2.LINE_AA)
    return canvas
