"""Box geometry: IoU and non-maximum suppression, numpy only."""

from __future__ import annotations

import numpy as np


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU. a: (N, 4), b: (M, 4) xyxy -> (N, M) float32."""
    a = np.asarray(a, np.float32).reshape(-1, 4)
    b = np.asarray(b, np.float32).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area_a = np.clip(a[:, 2:] - a[:, :2], 0, None).prod(-1)
    area_b = np.clip(b[:, 2:] - b[:, :2], 0, None).prod(-1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0).astype(np.float32)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float = 0.45, max_det: int | None = None) -> np.ndarray:
    """Greedy NMS. Returns the kept indices into `boxes`, highest score first."""
    order = np.argsort(-np.asarray(scores), kind="stable")
    boxes = np.asarray(boxes, np.float32)
    keep: list[int] = []
    while order.size:
        i = order[0]
        keep.append(int(i))
        if max_det is not None and len(keep) >= max_det:
            break
        iou = box_iou(boxes[i : i + 1], boxes[order[1:]])[0]
        order = order[1:][iou <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


def batched_nms(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, iou_threshold: float = 0.45,
                max_det: int | None = None) -> np.ndarray:
    """Class-aware NMS: boxes of different classes never suppress each other."""
    boxes = np.asarray(boxes, np.float32)
    if boxes.size == 0:
        return np.zeros((0,), np.int64)
    # Shift each class into its own region, far enough apart that no two classes overlap
    # (the span covers boxes off the top/left edge, with negative coordinates, too).
    span = float(boxes.max() - boxes.min()) + 1.0
    offset = (np.asarray(classes, np.float32) * span)[:, None]
    return nms(boxes - boxes.min() + offset, scores, iou_threshold, max_det)
