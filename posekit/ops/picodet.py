"""PicoDet (PaddleDetection's pedestrian detector) pre- and post-processing in numpy.

Input (PaddleDetection's deploy config for the pedestrian PicoDet): a plain resize of the whole
image to S x S (no letterbox, cubic), RGB, pixels/255 then ImageNet mean/std
(`posekit.ops.normalise`). `resize_image` does the resize and returns the transform back.

The network (exported without NMS) gives, per anchor point, a sigmoid person score (B, 1, N)
and a box (B, N, 4) x0, y0, x1, y1 in input pixels. `postprocess_picodet` applies
PaddleDetection's MultiClassNMS settings for it: score > 0.025, the 1000 best, greedy NMS at
IoU 0.6, keep 100.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from posekit.ops.boxes import nms


@dataclass(frozen=True)
class ResizeTransform:
    """input_xy = image_xy * (scale_x, scale_y): a plain (aspect-changing) resize."""

    scale_x: float
    scale_y: float

    def boxes_to_image(self, boxes: np.ndarray) -> np.ndarray:
        """(N, 4) xyxy in network-input pixels -> image pixels."""
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        return boxes / np.array([self.scale_x, self.scale_y, self.scale_x, self.scale_y], np.float32)


def resize_image(image: np.ndarray, size: tuple[int, int], interpolation: int = cv2.INTER_CUBIC) -> tuple[np.ndarray, ResizeTransform]:
    """Resize `image` (H, W, C) to (height, width) = `size`, ignoring its aspect ratio.

    cv2.resize is centre-aligned, so continuous coordinates scale exactly: input = image * scale.
    """
    if image.ndim != 3 or image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"expected an (H, W, C) image, got shape {image.shape}")
    h, w = image.shape[:2]
    out_h, out_w = size
    resized = image if (h, w) == (out_h, out_w) else cv2.resize(image, (out_w, out_h), interpolation=interpolation)
    return resized, ResizeTransform(scale_x=out_w / w, scale_y=out_h / h)


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
