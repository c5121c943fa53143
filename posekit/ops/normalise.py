"""Pixels -> network input: channel order, mean/std normalisation, NHWC -> NCHW. numpy only."""

from __future__ import annotations

import numpy as np

# ImageNet statistics in 0..255 units, RGB order (PP-TinyPose, PicoDet: pixels/255, then
# (x - 0.485, 0.456, 0.406) / (0.229, 0.224, 0.225))
IMAGENET_MEAN_RGB = (123.675, 116.28, 103.53)
IMAGENET_STD_RGB = (58.395, 57.12, 57.375)


def to_network_input(images: np.ndarray, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), bgr_to_rgb: bool = False) -> np.ndarray:
    """(N, H, W, 3) or (H, W, 3) uint8/float pixels -> (N, 3, H, W) float32 ``(pixel - mean) / std``.

    bgr_to_rgb: reverse the channels first (OpenCV images are BGR); `mean`/`std` are in the
    order of the result.
    """
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[None]
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"expected (N, H, W, 3) images, got shape {images.shape}")
    if bgr_to_rgb:
        images = images[..., ::-1]
    x = images.astype(np.float32)
    x = (x - np.asarray(mean, np.float32)) * (1.0 / np.asarray(std, np.float32))
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
