"""YOLOX post-processing in numpy: grid decode, score, class-aware NMS.

Input is what the official YOLOX ONNX export (and posekit's torch YOLOX) returns:
raw (B, N, 5 + C) float32, N = sum over strides 8, 16, 32 of (H / s) * (W / s), anchors in
stride order then row-major over the grid; per anchor (dx, dy, log w, log h) in grid cells,
objectness after sigmoid, C class scores after sigmoid. Boxes come out in network-input pixels
(the letterboxed image); mapping them back to the original image is the caller's job.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np

from posekit.ops.boxes import batched_nms

STRIDES = (8, 16, 32)


class Detections(NamedTuple):
    """Detections of one image: boxes (k, 4) float32 xyxy input pixels, scores (k,) float32,
    labels (k,) int64 COCO class index (person = 0), highest score first."""

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), np.zeros((0,), np.int64))


def yolox_grid(input_size: tuple[int, int], strides: Sequence[int] = STRIDES) -> tuple[np.ndarray, np.ndarray]:
    """Anchor grid of a (height, width) input: cells (N, 2) float32 x, y and strides (N, 1) float32."""
    h, w = input_size
    cells, scales = [], []
    for s in strides:
        if h % s or w % s:
            raise ValueError(f"input size {h}x{w} is not a multiple of stride {s}")
        ys, xs = np.meshgrid(np.arange(h // s), np.arange(w // s), indexing="ij")
        cells.append(np.stack((xs, ys), -1).reshape(-1, 2))
        scales.append(np.full((cells[-1].shape[0], 1), s))
    return np.concatenate(cells).astype(np.float32), np.concatenate(scales).astype(np.float32)


def decode_yolox(raw: np.ndarray, input_size: tuple[int, int],
                 strides: Sequence[int] = STRIDES) -> tuple[np.ndarray, np.ndarray]:
    """Raw predictions (B, N, 5 + C) or (N, 5 + C) -> boxes (B, N, 4) xyxy input pixels and
    scores (B, N, C) = objectness x class score, float32.

    input_size: (height, width) of the network input.
    """
    raw = np.asarray(raw, np.float32)
    if raw.ndim == 2:
        raw = raw[None]
    if raw.ndim != 3 or raw.shape[-1] < 6:
        raise ValueError(f"expected raw YOLOX predictions (B, N, 5 + classes), got {raw.shape}")
    cells, scale = yolox_grid(input_size, strides)
    if cells.shape[0] != raw.shape[1]:
        raise ValueError(f"expected {cells.shape[0]} predictions for a {input_size[0]}x{input_size[1]} input "
                         f"at strides {tuple(strides)}, got {raw.shape[1]}")
    centre = (raw[..., 0:2] + cells) * scale
    half = np.exp(raw[..., 2:4]) * scale / 2
    boxes = np.concatenate([centre - half, centre + half], axis=-1)
    return boxes, raw[..., 4:5] * raw[..., 5:]


def postprocess_yolox(raw: np.ndarray, input_size: tuple[int, int], score_threshold: float = 0.25,
                      iou_threshold: float = 0.45, classes: Sequence[int] | None = (0,), max_det: int = 100,
                      strides: Sequence[int] = STRIDES) -> list[Detections]:
    """Decode, threshold and NMS raw YOLOX predictions; one :class:`Detections` per image.

    As in the official YOLOX postprocess, each anchor is one detection labelled with its best
    class, scored objectness x that class's score, kept when the score >= score_threshold;
    NMS is class-aware. classes: the labels to keep (person = 0), None for all.
    """
    boxes, scores = decode_yolox(raw, input_size, strides)
    out = []
    for b in range(boxes.shape[0]):
        labels = scores[b].argmax(-1)
        best = np.take_along_axis(scores[b], labels[:, None], -1)[:, 0]
        keep = best >= score_threshold
        if classes is not None:
            keep &= np.isin(labels, np.asarray(classes))
        idx = np.flatnonzero(keep)
        if idx.size == 0:
            out.append(Detections.empty())
            continue
        kept = idx[batched_nms(boxes[b, idx], best[idx], labels[idx], iou_threshold, max_det)]
        out.append(Detections(boxes[b, kept].astype(np.float32), best[kept].astype(np.float32),
                              labels[kept].astype(np.int64)))
    return out
