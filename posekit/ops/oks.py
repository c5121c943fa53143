"""Object keypoint similarity (COCO's OKS) and pose NMS built on it."""

from __future__ import annotations

import numpy as np

from posekit.skeleton import COCO_SIGMAS


def oks(kpts_a: np.ndarray, kpts_b: np.ndarray, areas: np.ndarray, visible_b: np.ndarray | None = None,
        sigmas: np.ndarray = COCO_SIGMAS) -> np.ndarray:
    """Pairwise OKS as in pycocotools' computeOks.

    kpts_a:    (N, K, 2) keypoints, image pixels (e.g. predictions)
    kpts_b:    (M, K, 2) keypoints, image pixels (e.g. references)
    areas:     (M,) object areas of the references (box area times 0.53 is a common stand-in)
    visible_b: (M, K) bool, which reference keypoints count; all when None
    returns    (N, M) float32 in [0, 1]
    """
    a = np.asarray(kpts_a, np.float32)
    b = np.asarray(kpts_b, np.float32)
    if a.shape[0] == 0 or b.shape[0] == 0:
        return np.zeros((a.shape[0], b.shape[0]), np.float32)
    var = (2.0 * sigmas) ** 2  # (K,)
    d2 = ((a[:, None] - b[None]) ** 2).sum(-1)  # (N, M, K)
    areas = np.maximum(np.asarray(areas, np.float32), 1e-6)
    e = d2 / var[None, None, :] / (areas[None, :, None] + np.spacing(1)) / 2.0
    sim = np.exp(-e)
    if visible_b is None:
        return sim.mean(-1).astype(np.float32)
    vis = np.asarray(visible_b, bool)[None].astype(np.float32)  # (1, M, K)
    count = vis.sum(-1)
    return np.where(count > 0, (sim * vis).sum(-1) / np.maximum(count, 1), 0.0).astype(np.float32)


def oks_nms(keypoints: np.ndarray, scores: np.ndarray, areas: np.ndarray, threshold: float = 0.9,
            keypoint_scores: np.ndarray | None = None, keypoint_threshold: float = 0.0) -> np.ndarray:
    """Greedy pose NMS: drop a pose whose OKS with a better-scored kept pose exceeds `threshold`.

    Returns the kept indices, highest score first.
    """
    order = np.argsort(-np.asarray(scores), kind="stable")
    keypoints = np.asarray(keypoints, np.float32)
    if order.size < 2:
        return order.astype(np.int64)
    visible = None if keypoint_scores is None else np.asarray(keypoint_scores) > keypoint_threshold
    # Every pair's OKS at once (column i: each pose against pose i, with i's area and visible
    # keypoints), the same elementwise arithmetic as comparing the rest with one pose at a time.
    sim = oks(keypoints, keypoints, np.asarray(areas), visible)
    dropped = np.zeros(order.size, bool)
    keep: list[int] = []
    for i in order.tolist():
        if dropped[i]:
            continue
        keep.append(i)
        dropped |= ~(sim[:, i] <= threshold)  # (a NaN similarity drops, as `rest[sim <= threshold]` did)
    return np.asarray(keep, dtype=np.int64)
