"""Geometry between images and network inputs: letterbox, affine person crops, and back.

numpy + OpenCV only. Coordinates are continuous pixels: the top-left corner of the image is
(0, 0) and pixel (i, j) covers [j, j+1) x [i, i+1); a box or keypoint given in one frame maps to
the other with the transforms returned here.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class LetterboxTransform:
    """input_xy = image_xy * scale + offset (offset is the top-left padding, in input pixels)."""

    scale: float
    offset: tuple[float, float] = (0.0, 0.0)

    def boxes_to_image(self, boxes: np.ndarray) -> np.ndarray:
        """(N, 4) xyxy in network-input pixels -> image pixels."""
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        ox, oy = self.offset
        return (boxes - np.array([ox, oy, ox, oy], np.float32)) / np.float32(self.scale)


def letterbox(image: np.ndarray, size: tuple[int, int], pad_value: int = 114,
              centre: bool = False) -> tuple[np.ndarray, LetterboxTransform]:
    """Resize `image` (H, W, C) to fit (height, width) keeping its aspect ratio, and pad the rest.

    centre=False pads on the right and bottom (what RTMDet and YOLOX were trained with);
    centre=True splits the padding evenly. Returns the padded uint8 image and its transform.
    """
    if image.ndim != 3 or image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"expected an (H, W, C) image, got shape {image.shape}")
    h, w = image.shape[:2]
    out_h, out_w = size
    scale = min(out_h / h, out_w / w)
    new_w, new_h = max(1, int(round(w * scale))), max(1, int(round(h * scale)))
    resized = image if (new_w, new_h) == (w, h) else cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    out = np.full((out_h, out_w, image.shape[2]), pad_value, dtype=image.dtype)
    ox = (out_w - new_w) // 2 if centre else 0
    oy = (out_h - new_h) // 2 if centre else 0
    out[oy : oy + new_h, ox : ox + new_w] = resized
    # The effective scale per axis differs slightly after rounding; use the width's, which is
    # within half a pixel everywhere in the input.
    return out, LetterboxTransform(scale=new_w / w, offset=(float(ox), float(oy)))


@dataclass(frozen=True)
class StretchTransform:
    """input_x = image_x * scale_x, input_y = image_y * scale_y (a plain resize, aspect not kept)."""

    scale_x: float
    scale_y: float

    def boxes_to_image(self, boxes: np.ndarray) -> np.ndarray:
        """(N, 4) xyxy in network-input pixels -> image pixels."""
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        return boxes / np.array([self.scale_x, self.scale_y, self.scale_x, self.scale_y], np.float32)


def stretch(image: np.ndarray, size: tuple[int, int],
            interpolation: int = cv2.INTER_CUBIC) -> tuple[np.ndarray, StretchTransform]:
    """Resize `image` (H, W, C) to (height, width) without keeping its aspect ratio (what
    PaddleDetection's PicoDet deploy does, with cubic interpolation). Returns the image and its transform."""
    if image.ndim != 3 or image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"expected an (H, W, C) image, got shape {image.shape}")
    h, w = image.shape[:2]
    out_h, out_w = size
    resized = image if (out_h, out_w) == (h, w) else cv2.resize(image, (out_w, out_h), interpolation=interpolation)
    return resized, StretchTransform(scale_x=out_w / w, scale_y=out_h / h)


@dataclass(frozen=True)
class CropTransform:
    """Per-crop mapping: image_xy = crop_xy * scales[:, None] + origins.

    scales:  (N,) float32, image pixels per crop pixel
    origins: (N, 2) float32, image position of each crop's top-left corner
    """

    scales: np.ndarray
    origins: np.ndarray

    def __len__(self) -> int:
        return int(self.scales.shape[0])


def crop_regions(boxes: np.ndarray, size: tuple[int, int], scale: float = 1.25) -> CropTransform:
    """The crop window of each box: centred on it, grown to the input's aspect ratio, times `scale`.

    boxes: (N, 4) xyxy image pixels; size: (height, width) of the network input.
    """
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    out_h, out_w = size
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    bw = np.maximum(boxes[:, 2] - boxes[:, 0], 1.0)
    bh = np.maximum(boxes[:, 3] - boxes[:, 1], 1.0)
    # Grow the narrower side so the window has the input's aspect ratio (never squash a person).
    win_w = np.maximum(bw, bh * out_w / out_h) * scale
    scales = (win_w / out_w).astype(np.float32)
    origins = (centre - np.stack([win_w, scales * out_h], 1) / 2).astype(np.float32)
    return CropTransform(scales=scales, origins=origins)


def affine_crop(image: np.ndarray, boxes: np.ndarray, size: tuple[int, int], scale: float = 1.25,
                pad_value: int = 0) -> tuple[np.ndarray, CropTransform]:
    """Cut one (height, width) crop per box out of `image`, in one array.

    image: (H, W, C) uint8; boxes: (N, 4) xyxy image pixels.
    Returns crops (N, height, width, C) uint8 (same channel order as `image`; outside the image
    is `pad_value`) and the CropTransform mapping crop pixels back to the image.
    """
    if image.ndim != 3:
        raise ValueError(f"expected an (H, W, C) image, got shape {image.shape}")
    out_h, out_w = size
    transform = crop_regions(boxes, size, scale)
    crops = np.empty((len(transform), out_h, out_w, image.shape[2]), dtype=image.dtype)
    for i, (s, (ox, oy)) in enumerate(zip(transform.scales, transform.origins)):
        # warpAffine works on pixel indices (centres at integers): shift by half a pixel each way.
        a = 1.0 / float(s)
        matrix = np.array([[a, 0.0, -ox * a - 0.5 + 0.5 * a], [0.0, a, -oy * a - 0.5 + 0.5 * a]], np.float64)
        cv2.warpAffine(image, matrix, (out_w, out_h), dst=crops[i], flags=cv2.INTER_LINEAR,
                       borderMode=cv2.BORDER_CONSTANT, borderValue=(pad_value,) * 4)
    return crops, transform


def crop_to_image(points: np.ndarray, transform: CropTransform) -> np.ndarray:
    """Map (N, K, 2) points in crop pixels back to image pixels."""
    points = np.asarray(points, np.float32)
    if points.ndim != 3 or points.shape[0] != len(transform) or points.shape[2] != 2:
        raise ValueError(f"expected ({len(transform)}, K, 2) points, got {points.shape}")
    return points * transform.scales[:, None, None] + transform.origins[:, None, :]


def fit_input_sizes(boxes: np.ndarray, size: tuple[int, int], scale: float = 1.25, multiple: int = 32,
                    min_fraction: float = 0.5, min_long: float = 0.75) -> np.ndarray:
    """A network input shaped and sized like each person's crop, for fully convolutional pose
    models that take any height and width (multiples of `multiple`).

    - Shape: the box's longer side gets the long side of the input; the other side is just wide
      enough for the box's aspect ratio, rounded up, and at least `min_fraction` of the long
      side. A standing person (1:2.5) runs at 256x128 instead of 256x256, half the work.
    - Size: the crop is never blown up beyond `multiple` pixels more than the person's window
      (`scale` x the box), nor run below `min_long` of the model's input side. A person 100
      pixels tall (a 125-pixel window) runs at 192 (not 256) x 96-128: upsampling adds no detail.

    `crop_regions` then grows each window to its input's aspect ratio, so every person keeps the
    margin of a square crop or more. `size` is the model's (height, width); returns (N, 2) int
    (height, width) per box.
    """
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    full_h, full_w = size
    bw = np.maximum(boxes[:, 2] - boxes[:, 0], 1.0)
    bh = np.maximum(boxes[:, 3] - boxes[:, 1], 1.0)

    def up(value: np.ndarray | float) -> np.ndarray:
        return (np.ceil(np.asarray(value, np.float64) / multiple) * multiple).astype(int)

    def fit(long_px: np.ndarray, full_long: int, full_short: int, ratio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(long, short) input sides for windows `long_px` long with short/long = `ratio`."""
        long_side = np.clip(up(long_px), up(min_long * full_long), full_long)
        short_side = np.clip(up(long_side * ratio), up(min_fraction * long_side), full_short * long_side // full_long)
        return long_side, short_side

    # A box taller than the input's aspect ratio sets the height; a wider one the width.
    tall = bh * full_w >= bw * full_h
    th, tw = fit(scale * bh, full_h, full_w, bw / bh)
    ww, wh = fit(scale * bw, full_w, full_h, bh / bw)
    return np.stack([np.where(tall, th, wh), np.where(tall, tw, ww)], 1).astype(int)
