"""Top-down heatmap pose estimation glue, PP-TinyPose's (PaddleDetection's) convention, numpy only.

    inputs, crops = heatmap_model_inputs(image_bgr, boxes, (256, 192))
    poses = heatmap_poses(run, image_bgr, boxes, (256, 192), flip=True)

`run` is any callable (N, 3, H, W) float32 -> (N, K, h, w) heatmaps (an engine, a torch module
wrapped to numpy).

The crop is PaddleDetection's ``TopDownEvalAffine``: each box widened to the input's aspect
(3:4 for 192x256), times 1.25, one affine warp with bilinear sampling, RGB, ImageNet
normalisation. PaddleDetection (like HRNet) treats image coordinates as pixel indices (pixel
centres at integers): crop pixel j samples image position ``centre + (j - W/2) * s``. posekit's
`affine_crop` puts pixel centres at +0.5 (continuous frame), which moves the window by
0.5 * (s - 1) px and the reported keypoints by 0.5 px. TinyPose was trained in the index
convention, and on the 30-person COCO mini set that half pixel is worth about 1-4 AP points, so
`paddle_crop` here reproduces PaddleDetection exactly: its keypoints are in the same numbers as
the boxes it was given (the COCO annotation numbers, read as pixel indices).

`clean_boxes` is HRNet's / PaddleDetection's clean-up of COCO ground-truth boxes (``clean_bbox``:
clipped to the image, width and height minus one), used when evaluating with ground-truth boxes.

Decoding: `posekit.ops.heatmaps.decode_heatmaps` (argmax + DARK). Person score: the mean keypoint
score (PaddleDetection's deploy score) times the box score.
"""

from __future__ import annotations

from typing import Callable

import cv2
import numpy as np

from posekit.ops.crop import CropTransform, crop_to_image
from posekit.ops.heatmaps import COCO_FLIP_PAIRS, decode_heatmaps, flip_heatmaps_back
from posekit.ops.normalise import IMAGENET_MEAN_RGB, IMAGENET_STD_RGB, to_network_input
from posekit.structures import Poses

CROP_SCALE = 1.25


def clean_boxes(boxes: np.ndarray, image_shape: tuple[int, ...]) -> np.ndarray:
    """COCO xyxy ground-truth boxes as HRNet/PaddleDetection read them: x0, y0 clipped at 0,
    x1 = min(W - 1, x0 + max(0, w - 1)) (likewise y1). (N, 4) float32."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    h, w = image_shape[:2]
    x0 = np.maximum(boxes[:, 0], 0)
    y0 = np.maximum(boxes[:, 1], 0)
    x1 = np.minimum(w - 1, x0 + np.maximum(0, boxes[:, 2] - boxes[:, 0] - 1))
    y1 = np.minimum(h - 1, y0 + np.maximum(0, boxes[:, 3] - boxes[:, 1] - 1))
    return np.stack([x0, y0, x1, y1], 1).astype(np.float32)


def paddle_crop(image: np.ndarray, boxes: np.ndarray, size: tuple[int, int],
                scale: float = CROP_SCALE) -> tuple[np.ndarray, CropTransform]:
    """PaddleDetection's top-down crop of each box (N, 4) xyxy: crops (N, H, W, C) uint8 and the
    transform that takes continuous crop pixels (what `decode_heatmaps` returns) to image
    positions in the numbers the boxes are given in (pixel-index convention; see module doc)."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    out_h, out_w = size
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    bw = boxes[:, 2] - boxes[:, 0]
    bh = boxes[:, 3] - boxes[:, 1]
    win_w = np.maximum(bw, bh * out_w / out_h) * scale  # PaddleDetection's _box2cs, x1.25
    s = (win_w / out_w).astype(np.float64)
    crops = np.zeros((len(boxes), out_h, out_w, image.shape[2]), image.dtype)
    for i in range(len(boxes)):
        # image index -> crop index: j = (x - centre) / s + W/2
        m = np.array([[1 / s[i], 0, out_w / 2 - centre[i, 0] / s[i]],
                      [0, 1 / s[i], out_h / 2 - centre[i, 1] / s[i]]], np.float64)
        cv2.warpAffine(image, m, (out_w, out_h), dst=crops[i], flags=cv2.INTER_LINEAR,
                       borderMode=cv2.BORDER_CONSTANT, borderValue=(0,) * 4)
    # continuous crop x (index x - 0.5) -> centre + (x - 0.5 - W/2) * s
    origins = centre - np.stack([(out_w / 2 + 0.5) * s, (out_h / 2 + 0.5) * s], 1)
    return crops, CropTransform(scales=s.astype(np.float32), origins=origins.astype(np.float32))


def heatmap_model_inputs(image_bgr: np.ndarray, boxes: np.ndarray, size: tuple[int, int],
                         scale: float = CROP_SCALE) -> tuple[np.ndarray, CropTransform]:
    """(N, 3, H, W) float32 RGB ImageNet-normalised crops of `boxes` (N, 4) xyxy, and their transform."""
    crops, transform = paddle_crop(image_bgr, boxes, size, scale=scale)
    return to_network_input(crops, IMAGENET_MEAN_RGB, IMAGENET_STD_RGB, bgr_to_rgb=True), transform


def heatmap_poses(run: Callable[[np.ndarray], np.ndarray], image_bgr: np.ndarray, boxes: np.ndarray,
                  size: tuple[int, int], box_scores: np.ndarray | None = None, flip: bool = False,
                  dark: bool = True, flip_pairs=COCO_FLIP_PAIRS, scale: float = CROP_SCALE) -> Poses:
    """Poses for `boxes` (N, 4) xyxy in `image_bgr` (H, W, 3) uint8; keypoints in the boxes' frame.

    flip: also run the mirrored crops and average the flipped-back heatmaps (one batch of 2N).
    """
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    n = len(boxes)
    box_scores = np.ones(n, np.float32) if box_scores is None else np.asarray(box_scores, np.float32)
    if n == 0:
        return Poses.empty()
    inputs, transform = heatmap_model_inputs(image_bgr, boxes, size, scale)
    if flip:
        both = np.asarray(run(np.concatenate([inputs, inputs[:, :, :, ::-1]])), np.float32)
        heatmaps = 0.5 * (both[:n] + flip_heatmaps_back(both[n:], flip_pairs))
    else:
        heatmaps = np.asarray(run(inputs), np.float32)
    keypoints, scores = decode_heatmaps(heatmaps, size, dark=dark)
    return Poses(boxes=boxes, box_scores=box_scores, keypoints=crop_to_image(keypoints, transform),
                 keypoint_scores=scores, scores=(scores.mean(1) * box_scores).astype(np.float32))
