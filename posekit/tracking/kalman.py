"""Constant-velocity Kalman filter on a person box, as in SORT/ByteTrack (xywh variant).

State (8,): cx, cy, w, h and their velocities, image pixels and pixels per frame. Noise scales
with the box size so that near and far people are treated alike. Time steps are in frames at the
tracker's nominal frame rate and may be fractional (a dropped frame is a step of 2).
"""

from __future__ import annotations

import numpy as np

# Standard deviations relative to box size, the values SORT-family trackers use.
STD_POSITION = 1.0 / 20
STD_VELOCITY = 1.0 / 160


def xyxy_to_cxcywh(box: np.ndarray) -> np.ndarray:
    box = np.asarray(box, np.float64)
    wh = box[..., 2:] - box[..., :2]
    return np.concatenate([box[..., :2] + wh / 2, wh], axis=-1)


def cxcywh_to_xyxy(box: np.ndarray) -> np.ndarray:
    box = np.asarray(box, np.float64)
    half = box[..., 2:] / 2
    return np.concatenate([box[..., :2] - half, box[..., :2] + half], axis=-1)


def _size_std(w: float, h: float, weight: float) -> np.ndarray:
    return weight * np.array([w, h, w, h], np.float64)


class BoxKalman:
    """One track's box state: `mean` (8,) and `covariance` (8, 8)."""

    def __init__(self, box_xyxy: np.ndarray) -> None:
        z = xyxy_to_cxcywh(box_xyxy)
        self.mean = np.concatenate([z, np.zeros(4)])
        w, h = max(z[2], 1.0), max(z[3], 1.0)
        std = np.concatenate([_size_std(w, h, 2 * STD_POSITION), _size_std(w, h, 10 * STD_VELOCITY)])
        self.covariance = np.diag(std**2)

    def predict(self, step: float = 1.0) -> None:
        """Advance `step` frames (0 leaves the state as it is)."""
        if step <= 0:
            return
        f = np.eye(8)
        f[:4, 4:] = step * np.eye(4)
        w, h = max(self.mean[2], 1.0), max(self.mean[3], 1.0)
        # Random-walk noise grows linearly with the time elapsed.
        q = np.diag(np.concatenate([_size_std(w, h, STD_POSITION), _size_std(w, h, STD_VELOCITY)]) ** 2) * step
        self.mean = f @ self.mean
        self.mean[2:4] = np.maximum(self.mean[2:4], 1.0)  # a shrinking box never turns inside out
        self.covariance = f @ self.covariance @ f.T + q

    def update(self, box_xyxy: np.ndarray) -> None:
        z = xyxy_to_cxcywh(box_xyxy)
        w, h = max(self.mean[2], 1.0), max(self.mean[3], 1.0)
        r = np.diag(_size_std(w, h, STD_POSITION) ** 2)
        hm = np.eye(4, 8)
        s = hm @ self.covariance @ hm.T + r
        gain = np.linalg.solve(s, hm @ self.covariance).T  # (8, 4); s is symmetric
        self.mean = self.mean + gain @ (z - hm @ self.mean)
        self.covariance = self.covariance - gain @ s @ gain.T

    def rescale(self, sx: float, sy: float) -> None:
        """Follow a change of image resolution (x scaled by sx, y by sy)."""
        s = np.array([sx, sy, sx, sy] * 2, np.float64)
        self.mean = self.mean * s
        self.covariance = self.covariance * np.outer(s, s)

    @property
    def box(self) -> np.ndarray:
        """The current box estimate, (4,) xyxy."""
        return cxcywh_to_xyxy(self.mean[:4])
