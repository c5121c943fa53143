"""Keypoint heatmap decoding (PP-TinyPose, HRNet-style top-down models) in numpy.

Reproduces PaddleDetection's deploy decoding (``deploy/python/keypoint_postprocess.py``,
``HRNetPostProcess`` with ``use_dark=True``):

1. each keypoint is the argmax of its heatmap (first maximum in row-major order), its score the
   heatmap value there; a keypoint whose maximum is <= 0 is put at cell (0, 0);
2. DARK sub-pixel refinement: the heatmap is blurred with OpenCV's 3x3 Gaussian (kernel
   [0.25, 0.5, 0.25] each way, zero padding), rescaled so its maximum is the original maximum,
   clipped at 1e-10 and log-ed; the argmax then moves by -H^-1 g (g, H: the central-difference
   gradient and Hessian of the log heatmap there), when the cell is at least 2 cells from every
   border and H is not singular.

Coordinates. PaddleDetection's affine transforms (crop and back) work on pixel indices: heatmap
cell i is input pixel index i * stride (stride = input size / heatmap size, 4 for TinyPose), and
that is what the network was trained to produce. posekit's frames are continuous (pixel j covers
[j, j+1), its centre at j + 0.5; see `posekit.ops.crop`), so the keypoints returned here are
``cell * stride + 0.5`` in network-input pixels, ready for `posekit.ops.crop.crop_to_image`.

Flip test (PaddleDetection ``TopDownHRNet``, ``flip=True, shift_heatmap=True``): run the
mirrored crop too, `flip_heatmaps_back` its heatmaps (mirror, swap left/right channels, shift
one column right), average with the plain heatmaps, then decode.
"""

from __future__ import annotations

import numpy as np

# COCO-17 left/right keypoint pairs (PaddleDetection's flip_perm)
COCO_FLIP_PAIRS: tuple[tuple[int, int], ...] = ((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16))

# OpenCV's fixed small Gaussian kernels (getGaussianKernel with sigma <= 0)
_CV_SMALL_KERNELS = {
    1: (1.0,),
    3: (0.25, 0.5, 0.25),
    5: (0.0625, 0.25, 0.375, 0.25, 0.0625),
    7: (0.03125, 0.109375, 0.21875, 0.28125, 0.21875, 0.109375, 0.03125),
}


def gaussian_kernel(size: int) -> np.ndarray:
    """OpenCV's ``getGaussianKernel(size, 0)`` (float64): the fixed table up to 7, else sigma from the size."""
    if size in _CV_SMALL_KERNELS:
        return np.array(_CV_SMALL_KERNELS[size], np.float64)
    if size < 1 or size % 2 == 0:
        raise ValueError(f"expected an odd kernel size >= 1, got {size}")
    sigma = 0.3 * ((size - 1) * 0.5 - 1) + 0.8
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2
    k = np.exp(-(x * x) / (2 * sigma * sigma))
    return k / k.sum()


def _check(heatmaps: np.ndarray) -> np.ndarray:
    heatmaps = np.asarray(heatmaps)
    if heatmaps.ndim != 4:
        raise ValueError(f"expected (N, K, h, w) heatmaps, got shape {heatmaps.shape}")
    return heatmaps.astype(np.float32, copy=False)


def blur_heatmaps(heatmaps: np.ndarray, kernel: int = 3) -> np.ndarray:
    """PaddleDetection's ``gaussian_blur``: zero-padded separable Gaussian blur, each map rescaled
    to its original maximum. (N, K, h, w) float32 -> float32."""
    hm = _check(heatmaps)
    k = gaussian_kernel(kernel)
    border = (kernel - 1) // 2
    n, c, h, w = hm.shape
    padded = np.zeros((n, c, h + 2 * border, w + 2 * border), np.float64)
    padded[:, :, border:border + h, border:border + w] = hm
    rows = sum(k[i] * padded[:, :, :, i:i + w] for i in range(kernel))  # (n, c, h + 2b, w)
    out = sum(k[i] * rows[:, :, i:i + h, :] for i in range(kernel)).astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = hm.reshape(n, c, -1).max(-1) / out.reshape(n, c, -1).max(-1)
    return out * ratio[:, :, None, None]


def heatmap_argmax(heatmaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(cells (N, K, 2) float32 x, y of each map's first maximum, scores (N, K) float32 the maximum).
    A map whose maximum is <= 0 gives cell (0, 0), as PaddleDetection's get_max_preds does."""
    hm = _check(heatmaps)
    n, c, h, w = hm.shape
    flat = hm.reshape(n, c, -1)
    idx = flat.argmax(-1)
    scores = np.take_along_axis(flat, idx[..., None], -1)[..., 0]
    cells = np.stack([idx % w, idx // w], -1).astype(np.float32)
    cells *= (scores > 0)[..., None]
    return cells, scores.astype(np.float32)


def dark_refine(heatmaps: np.ndarray, cells: np.ndarray, kernel: int = 3) -> np.ndarray:
    """DARK: move each integer cell (N, K, 2) by -H^-1 g of the blurred log heatmap. Returns float32."""
    hm = np.log(np.maximum(blur_heatmaps(heatmaps, kernel), np.float32(1e-10))).astype(np.float64)
    n, c, h, w = hm.shape
    px = cells[..., 0].astype(np.int64)
    py = cells[..., 1].astype(np.int64)
    inside = (px > 1) & (px < w - 2) & (py > 1) & (py < h - 2)
    pxc, pyc = np.clip(px, 2, max(w - 3, 2)), np.clip(py, 2, max(h - 3, 2))
    ni, ki = np.meshgrid(np.arange(n), np.arange(c), indexing="ij")

    def at(dy: int, dx: int) -> np.ndarray:
        return hm[ni, ki, np.clip(pyc + dy, 0, h - 1), np.clip(pxc + dx, 0, w - 1)]

    centre = at(0, 0)
    dx = 0.5 * (at(0, 1) - at(0, -1))
    dy = 0.5 * (at(1, 0) - at(-1, 0))
    dxx = 0.25 * (at(0, 2) - 2 * centre + at(0, -2))
    dxy = 0.25 * (at(1, 1) - at(-1, 1) - at(1, -1) + at(-1, -1))
    dyy = 0.25 * (at(2, 0) - 2 * centre + at(-2, 0))
    det = dxx * dyy - dxy * dxy
    ok = inside & (det != 0)
    safe = np.where(ok, det, 1.0)
    off_x = -(dyy * dx - dxy * dy) / safe
    off_y = -(dxx * dy - dxy * dx) / safe
    offset = np.stack([off_x, off_y], -1) * ok[..., None]
    return (cells.astype(np.float64) + offset).astype(np.float32)


def decode_heatmaps(heatmaps: np.ndarray, input_size: tuple[int, int] | None = None, dark: bool = True,
                    kernel: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Heatmaps -> keypoints, PaddleDetection's deploy decoding (see the module docstring).

    heatmaps:   (N, K, h, w) float
    input_size: (height, width) of the network input; default 4x the heatmap
    dark:       DARK refinement (else the integer argmax cell)
    Returns keypoints (N, K, 2) float32 in network-input pixels (x then y, continuous: cell i is
    at i * stride + 0.5) and scores (N, K) float32 (the heatmap maximum).
    """
    hm = _check(heatmaps)
    h, w = hm.shape[2:]
    in_h, in_w = input_size if input_size is not None else (4 * h, 4 * w)
    if hm.shape[0] == 0:
        return np.zeros((0, hm.shape[1], 2), np.float32), np.zeros((0, hm.shape[1]), np.float32)
    cells, scores = heatmap_argmax(hm)
    if dark:
        cells = dark_refine(hm, cells, kernel)
    stride = np.array([in_w / w, in_h / h], np.float32)
    return (cells * stride + np.float32(0.5)).astype(np.float32), scores


def flip_heatmaps_back(heatmaps: np.ndarray, flip_pairs=COCO_FLIP_PAIRS, shift: bool = True) -> np.ndarray:
    """Heatmaps of a horizontally mirrored crop -> heatmaps of the crop itself, PaddleDetection's
    way: mirror the width axis, swap each left/right channel pair, and (shift) move every column
    one to the right (column 0 kept), which offsets the mirror's index shift. (N, K, h, w)."""
    hm = _check(heatmaps)[:, :, :, ::-1].copy()
    for a, b in flip_pairs:
        hm[:, [a, b]] = hm[:, [b, a]]
    if shift:
        hm[:, :, :, 1:] = hm[:, :, :, :-1].copy()
    return hm
