"""MoveNet MultiPose decoding in numpy: the six raw heads -> up to 6 people.

This is Google's decoding, read from the tail of the TF.js graph (the ops after the heads), in
the graph's float32 arithmetic:

1. **Centres**: a cell of the centre heatmap is a peak when it equals the 5x5 max-pool around it
   (|c - maxpool(c)| < 1e-6, zero elsewhere); the 6 highest peaks are the candidates (top-k,
   ties to the lower index), whatever their score.
2. **Boxes**: at each centre cell, box_offset moves the centre and box_scale (clamped at 0) gives
   height and width; the box is clipped to the heatmap, in cells.
3. **Keypoints**: the regression head at the centre gives each keypoint's coarse cell. Every
   keypoint heatmap is weighted by ``exp(-d^2 / (0.3 * min(h, w)))`` (d: distance in cells to
   that coarse location) and zeroed outside the person's box; the argmax is the keypoint's cell
   (first in row-major order on ties, so (0, 0) when the box holds nothing), refined by the
   offset head there.
4. **Keypoint score**: at that cell, the largest weighted value over all 6 candidates (a
   neighbour's weighting can raise it).
5. **Person score**: the centre peak times the mean of the keypoint scores above 0.127 (0 when
   none is).

The TF.js copy stores its constants as float16; they are used as stored (0.3 is 0.30004883,
0.127 is 0.12695312, 1e-6 is 1.0132790e-06).
"""

from __future__ import annotations

from typing import NamedTuple

import math

import numpy as np

# the network's raw heads, in posekit's order (the torch network and the TF.js converter both give these)
OUTPUT_NAMES = ("centre", "heatmaps", "regression", "offsets", "box_scale", "box_offset")
OUTPUT_LAYOUT = (
    "centre (B,1,H/4,W/4) sigmoid person-centre heatmap; "
    "heatmaps (B,17,H/4,W/4) sigmoid keypoint heatmaps, COCO-17 order; "
    "regression (B,34,H/4,W/4) channel 2k=dy, 2k+1=dx of keypoint k from the centre cell, in cells; "
    "offsets (B,34,H/4,W/4) channel 2k=dy, 2k+1=dx sub-cell refinement of keypoint k, in cells; "
    "box_scale (B,2,H/4,W/4) person box height, width in cells (raw: negatives clamp to 0); "
    "box_offset (B,2,H/4,W/4) dy, dx of the box centre from the centre cell, in cells"
)

MAX_PEOPLE = 6
STRIDE = 4
PEAK_POOL = 5
# float16-rounded constants as stored in the TF.js graph
PEAK_TOLERANCE = np.float32(1.013279e-06)  # Less/y
SPREAD = np.float32(0.30004883)  # mul_6/y: the Gaussian's variance, as a fraction of min(h, w)
VISIBLE = np.float32(0.12695312)  # Greater_1/y: keypoints above it count towards the person score


class MultiPoses(NamedTuple):
    """Decoded people, batched: MAX_PEOPLE candidates per image in the graph's order (centre
    score, highest first), whatever their score; `people` keeps those worth keeping.

    keypoints:       (B, P, 17, 2) float32, input pixels, x then y
    keypoint_scores: (B, P, 17) float32
    boxes:           (B, P, 4) float32, input pixels, x0 y0 x1 y1
    scores:          (B, P) float32, person score
    """

    keypoints: np.ndarray
    keypoint_scores: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray

    def people(self, index: int = 0, min_score: float = 0.0) -> "MultiPoses":
        """Image `index`'s people with score >= min_score (and above 0): (P', ...) arrays, highest score first."""
        scores = self.scores[index]
        keep = np.flatnonzero((scores >= min_score) & (scores > 0))
        keep = keep[np.argsort(-scores[keep], kind="stable")]
        return MultiPoses(self.keypoints[index, keep], self.keypoint_scores[index, keep],
                          self.boxes[index, keep], scores[keep])


def input_size_for(height: int, width: int, long_side: int = 256, multiple: int = 32) -> tuple[int, int]:
    """The network input (height, width) for an image: its long side scaled to `long_side`, the
    short side rounded up to a multiple of `multiple` (letterbox the image into it), as Google
    suggests for MultiPose. A 480x640 frame gets 192x256; a 640x427 portrait 256x192."""
    if height <= 0 or width <= 0:
        raise ValueError(f"expected a positive image size, got {height}x{width}")
    if long_side <= 0 or long_side % multiple:
        raise ValueError(f"long_side must be a positive multiple of {multiple}, got {long_side}")
    scale = long_side / max(height, width)

    def fit(n: int) -> int:
        return min(long_side, max(multiple, math.ceil(n * scale / multiple) * multiple))
    return fit(height), fit(width)


def _max_pool_same(x: np.ndarray, k: int) -> np.ndarray:
    """k x k max-pool with stride 1 over the last two axes, 'SAME' (padding never wins)."""
    pad = k // 2
    padded = np.pad(x, [(0, 0)] * (x.ndim - 2) + [(pad, pad), (pad, pad)], constant_values=-np.inf)
    windows = np.lib.stride_tricks.sliding_window_view(padded, (k, k), axis=(-2, -1))
    return windows.max(axis=(-2, -1))


def decode_multipose(
    centre: np.ndarray,
    heatmaps: np.ndarray,
    regression: np.ndarray,
    offsets: np.ndarray,
    box_scale: np.ndarray,
    box_offset: np.ndarray,
    max_people: int = MAX_PEOPLE,
) -> MultiPoses:
    """Decode MoveNet MultiPose's raw heads, batched, as Google's graph does.

    centre:     (B, 1, h, w) float32, after sigmoid
    heatmaps:   (B, K, h, w) float32, after sigmoid
    regression: (B, 2K, h, w) float32, channel 2k = dy, 2k+1 = dx of keypoint k from the centre, in cells
    offsets:    (B, 2K, h, w) float32, channel 2k = dy, 2k+1 = dx sub-cell refinement, in cells
    box_scale:  (B, 2, h, w) float32, box height, width in cells
    box_offset: (B, 2, h, w) float32, box centre dy, dx from the cell, in cells

    The network input is (4h, 4w); coordinates come out in its pixels (`MultiPoses`).
    """
    centre, heatmaps, regression, offsets, box_scale, box_offset = (
        np.asarray(a, dtype=np.float32) for a in (centre, heatmaps, regression, offsets, box_scale, box_offset)
    )
    if heatmaps.ndim != 4:
        raise ValueError(f"expected (B, K, h, w) heatmaps, got {heatmaps.shape}")
    b, k, h, w = heatmaps.shape
    for label, array, channels in (("centre", centre, 1), ("regression", regression, 2 * k),
                                   ("offsets", offsets, 2 * k), ("box_scale", box_scale, 2),
                                   ("box_offset", box_offset, 2)):
        if array.shape != (b, channels, h, w):
            raise ValueError(f"expected {label} of shape {(b, channels, h, w)}, got {array.shape}")
    if not 1 <= max_people <= h * w:
        raise ValueError(f"max_people must be in 1..{h * w}, got {max_people}")
    p = max_people
    in_h, in_w = STRIDE * h, STRIDE * w
    batch = np.arange(b)[:, None]  # (B, 1)

    # 1. centre peaks, top-k (a stable sort keeps the lower index first on ties, as TopK does)
    c = centre[:, 0]
    peaks = (c * (np.abs(c - _max_pool_same(c, PEAK_POOL)) < PEAK_TOLERANCE)).reshape(b, h * w)
    top = np.argsort(-peaks, axis=1, kind="stable")[:, :p]  # (B, P)
    centre_scores = np.take_along_axis(peaks, top, axis=1)
    cy, cx = top // w, top % w
    cyf, cxf = cy.astype(np.float32), cx.astype(np.float32)

    # 2. boxes in cells, clipped to the heatmap
    size = np.maximum(box_scale[batch, :, cy, cx], np.float32(0))  # (B, P, 2): height, width
    shift = box_offset[batch, :, cy, cx]
    box_cy, box_cx = cyf + shift[..., 0], cxf + shift[..., 1]
    half_h, half_w = size[..., 0] * np.float32(0.5), size[..., 1] * np.float32(0.5)
    y0 = np.clip(box_cy - half_h, 0, np.float32(h))
    x0 = np.clip(box_cx - half_w, 0, np.float32(w))
    y1 = np.clip(box_cy + half_h, 0, np.float32(h))
    x1 = np.clip(box_cx + half_w, 0, np.float32(w))

    # 3. keypoints: heatmaps weighted by a Gaussian around each regressed location, inside the box
    reg = regression[batch, :, cy, cx].reshape(b, p, k, 2)
    reg_y = cyf[..., None] + reg[..., 0]  # (B, P, K)
    reg_x = cxf[..., None] + reg[..., 1]
    grid_y = np.arange(h, dtype=np.float32)[:, None, None, None]  # (h, 1, 1, 1) against (B, 1, 1, P, K)
    grid_x = np.arange(w, dtype=np.float32)[None, :, None, None]
    d2 = (grid_y - reg_y[:, None, None]) ** 2 + (grid_x - reg_x[:, None, None]) ** 2  # (B, h, w, P, K)
    weight = np.exp(-d2 / (np.float32(min(h, w)) * SPREAD))
    in_box = ((grid_y[..., 0] >= y0[:, None, None]) & (grid_y[..., 0] < y1[:, None, None])
              & (grid_x[..., 0] >= x0[:, None, None]) & (grid_x[..., 0] < x1[:, None, None]))  # (B, h, w, P)
    weighted = heatmaps.transpose(0, 2, 3, 1)[:, :, :, None, :] * weight * in_box[..., None]
    cell = weighted.reshape(b, h * w, p, k).argmax(axis=1)  # (B, P, K)
    ky, kx = cell // w, cell % w
    kk = np.arange(k)[None, None, :]
    off = offsets.reshape(b, k, 2, h, w)[batch[..., None], kk, :, ky, kx]  # (B, P, K, 2)
    # the graph normalises by 4 / H in float32; x (4 / H) x H is kept for bit-faithful pixels
    norm_y, norm_x = np.float32(STRIDE) / np.float32(in_h), np.float32(STRIDE) / np.float32(in_w)
    kp_y = (ky.astype(np.float32) + off[..., 0]) * norm_y * np.float32(in_h)
    kp_x = (kx.astype(np.float32) + off[..., 1]) * norm_x * np.float32(in_w)

    # 4. keypoint score: the best weighted value over every candidate, at the chosen cell
    best = weighted.max(axis=3)  # (B, h, w, K)
    kp_scores = best[batch[..., None], ky, kx, kk]  # (B, P, K)

    # 5. person score: centre peak x mean of the visible keypoint scores
    visible = kp_scores > VISIBLE
    count = np.maximum(visible.sum(axis=2).astype(np.float32), np.float32(1))
    scores = (centre_scores[..., None] * np.where(visible, kp_scores, 0)).sum(axis=2) * (np.float32(1) / count)

    boxes = np.stack([x0, y0, x1, y1], axis=-1) * np.float32(STRIDE)
    scale = np.array([in_w, in_h, in_w, in_h], np.float32)
    boxes = np.clip(boxes / scale, 0, 1) * scale  # the graph's normalised box, clipped to [0, 1]
    return MultiPoses(
        keypoints=np.stack([kp_x, kp_y], axis=-1).astype(np.float32),
        keypoint_scores=kp_scores.astype(np.float32),
        boxes=boxes.astype(np.float32),
        scores=scores.astype(np.float32),
    )


def reference_output_to_multiposes(output: np.ndarray, input_size: tuple[int, int]) -> MultiPoses:
    """Google's packed output (B, P, 56) -> `MultiPoses` in input pixels: 17 x (y, x, score)
    normalised to the input, then ymin, xmin, ymax, xmax normalised, then the person score."""
    output = np.asarray(output, np.float32)
    if output.ndim != 3 or output.shape[2] != 56:
        raise ValueError(f"expected a (B, P, 56) MultiPose output, got {output.shape}")
    h, w = input_size
    b, p = output.shape[:2]
    kps = output[..., :51].reshape(b, p, 17, 3)
    keypoints = np.stack([kps[..., 1] * np.float32(w), kps[..., 0] * np.float32(h)], axis=-1)
    y0, x0, y1, x1 = (output[..., 51 + i] for i in range(4))
    boxes = np.stack([x0 * w, y0 * h, x1 * w, y1 * h], axis=-1).astype(np.float32)
    return MultiPoses(keypoints.astype(np.float32), kps[..., 2].copy(), boxes, output[..., 55].copy())
