"""PicoDet (PaddleDetection's pedestrian detector) pre- and post-processing in numpy.

Input (PaddleDetection's deploy config for the pedestrian PicoDet): a plain resize of the whole
image to S x S (no letterbox, cubic), RGB, pixels/255 then ImageNet mean/std
(`posekit.ops.normalise`). `posekit.ops.crop.stretch` does the resize and returns the transform back.

The network (exported without NMS) gives, per anchor point, a sigmoid person score (B, 1, N)
and a box (B, N, 4) x0, y0, x1, y1 in input pixels. `postprocess_picodet` applies
PaddleDetection's MultiClassNMS settings for it: score > 0.025, the 1000 best, greedy NMS at
IoU 0.6, keep 100.
"""

from __future__ import annotations

import numpy as np

from posekit.ops.boxes import nms


def postprocess_picodet(scores: np.ndarray, boxes: np.ndarray, score_threshold: float = 0.025,
                        iou_threshold: float = 0.6, top_k: int = 1000, keep: int = 100) -> list[tuple[np.ndarray, np.ndarray]]:
    """Raw PicoDet outputs -> per image (boxes (M, 4) float32 x0, y0, x1, y1 input pixels,
    scores (M,) float32), highest score first.

    scores: (B, 1, N) (or (B, N)) sigmoid person scores; boxes: (B, N, 4) input pixels.
    """
    scores = np.asarray(scores, np.float32)
    boxes = np.asarray(boxes, np.float32)
    if scores.ndim == 3:
        if scores.shape[1] != 1:
            raise ValueError(f"expected (B, 1, N) person scores, got shape {scores.shape}")
        scores = scores[:, 0]
    if scores.ndim != 2 or boxes.ndim != 3 or boxes.shape[-1] != 4 or boxes.shape[:2] != scores.shape:
        raise ValueError(f"expected scores (B, 1, N) and boxes (B, N, 4) of one N, got {scores.shape} and {boxes.shape}")
    out = []
    for s, b in zip(scores, boxes):
        idx = np.flatnonzero(s > score_threshold)
        idx = idx[np.argsort(-s[idx], kind="stable")[:top_k]]
        kept = idx[nms(b[idx], s[idx], iou_threshold, max_det=keep)] if idx.size else idx
        out.append((b[kept].reshape(-1, 4), s[kept]))
    return out
