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
    if not len(poses):
        return canvas
    thickness = max(1, int(round(max(image.shape[:2]) / 400)))
    # Every call below draws what the one-shape-at-a-time loop drew, pixel for pixel: a limb is a
    # 2-point polyline (cv2.line's end caps), so one polylines call draws a person's limbs; the
    # per-call Python work is what a frame of ten people costs.
    pairs = np.asarray(skeleton, np.int64).reshape(-1, 2)
    points = np.round(poses.keypoints).astype(np.int32)  # (N, K, 2)
    visible = poses.keypoint_scores > keypoint_threshold  # (N, K)
    limbs = visible[:, pairs[:, 0]] & visible[:, pairs[:, 1]]  # (N, L)
    segments = points[:, pairs]  # (N, L, 2, 2)
    ids = None if poses.track_ids is None else poses.track_ids.tolist()
    corners = np.round(poses.boxes.astype(np.float64)).astype(np.int64).tolist() if boxes else None
    scores = poses.scores.tolist()
    white = (255, 255, 255)
    for i in range(len(poses)):
        colour = track_colour(None if ids is None else ids[i])
        if boxes:
            x0, y0, x1, y1 = corners[i]
            cv2.rectangle(canvas, (x0, y0), (x1, y1), colour, thickness)
            label = f"{scores[i]:.2f}" if ids is None else f"#{ids[i]}"
            cv2.putText(canvas, label, (x0, max(y0 - 4, 10)), cv2.FONT_HERSHEY_SIMPLEX, 0.4 * thickness,
                        colour, thickness, cv2.LINE_AA)
        if limbs[i].any():
            cv2.polylines(canvas, list(segments[i][limbs[i]]), False, colour, thickness + 1, cv2.LINE_AA)
        for x, y in points[i][visible[i]].tolist():
            cv2.circle(canvas, (x, y), thickness + 2, white, -1, cv2.LINE_AA)
            cv2.circle(canvas, (x, y), thickness + 1, colour, -1, cv2.LINE_AA)
    return canvas
