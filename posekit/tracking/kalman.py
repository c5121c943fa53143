"""Constant-velocity Kalman filter on a person box, as in SORT/ByteTrack (xywh variant).

State (8,): cx, cy, w, h and their velocities, image pixels and pixels per frame. Noise scales
with the box size so that near and far people are treated alike. Time steps are in frames at the
tracker's nominal frame rate and may be fractional (a dropped frame is a step of 2).
"""

from __future__ import annotations

from typing import Sequence

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


def _size(mean: np.ndarray) -> np.ndarray:
    """(4,) the box's (w, h, w, h), at least 1 pixel: the scale of every noise term."""
    w, h = float(mean[2]), float(mean[3])
    return np.array([w if w > 1.0 else 1.0, h if h > 1.0 else 1.0] * 2)


class BoxKalman:
    """One track's box state: `mean` (8,) and `covariance` (8, 8).

    Each of cx, cy, w, h moves with its own velocity and the noise terms are diagonal, so the
    covariance stays four independent 2x2 blocks (position, velocity of one coordinate); they are
    kept as three (4,) arrays, which is the full 8x8 filter's arithmetic at a fraction of its cost
    (a tracker runs one filter per person per frame).
    """

    def __init__(self, box_xyxy: np.ndarray) -> None:
        z = xyxy_to_cxcywh(box_xyxy)
        self.mean = np.concatenate([z, np.zeros(4)])
        size = _size(self.mean)
        self._pp = (2 * STD_POSITION * size) ** 2  # var(position)
        self._pv = np.zeros(4)  # cov(position, velocity)
        self._vv = (10 * STD_VELOCITY * size) ** 2  # var(velocity)

    @property
    def covariance(self) -> np.ndarray:
        """The (8, 8) covariance (position block, then velocity block)."""
        cov = np.zeros((8, 8))
        i = np.arange(4)
        cov[i, i], cov[i + 4, i + 4] = self._pp, self._vv
        cov[i, i + 4] = cov[i + 4, i] = self._pv
        return cov

    def predict(self, step: float = 1.0) -> None:
        """Advance `step` frames (0 leaves the state as it is)."""
        if step <= 0:
            return
        mean = self.mean
        size2 = _size(mean) ** 2
        # Random-walk noise grows linearly with the time elapsed.
        mean[:4] += step * mean[4:]
        if mean[2] < 1.0 or mean[3] < 1.0:  # a shrinking box never turns inside out
            mean[2:4] = np.maximum(mean[2:4], 1.0)
        self._pp = self._pp + (2 * step) * self._pv + (step * step) * self._vv + (STD_POSITION ** 2 * step) * size2
        self._pv = self._pv + step * self._vv
        self._vv = self._vv + (STD_VELOCITY ** 2 * step) * size2

    def update(self, box_xyxy: np.ndarray) -> None:
        z = xyxy_to_cxcywh(box_xyxy)
        s = self._pp + (STD_POSITION * _size(self.mean)) ** 2  # innovation variance
        k_p, k_v = self._pp / s, self._pv / s  # Kalman gains
        y = z - self.mean[:4]
        self.mean[:4] += k_p * y
        self.mean[4:] += k_v * y
        self._pp, self._pv, self._vv = (self._pp - self._pp * k_p, self._pv - self._pv * k_p,
                                        self._vv - self._pv * k_v)

    def rescale(self, sx: float, sy: float) -> None:
        """Follow a change of image resolution (x scaled by sx, y by sy)."""
        s = np.array([sx, sy, sx, sy], np.float64)
        self.mean = self.mean * np.tile(s, 2)
        self._pp, self._pv, self._vv = self._pp * s * s, self._pv * s * s, self._vv * s * s

    @property
    def box(self) -> np.ndarray:
        """The current box estimate, (4,) xyxy."""
        return cxcywh_to_xyxy(self.mean[:4])


def _sizes(mean: np.ndarray) -> np.ndarray:
    """(T, 4) `_size` of every row of a (T, 8) state."""
    wh = mean[:, 2:4]
    wh = np.where(wh > 1.0, wh, 1.0)
    return np.concatenate([wh, wh], 1)


def predict_all(filters: Sequence[BoxKalman], step: float = 1.0) -> None:
    """``f.predict(step)`` for every filter as one computation over a (T, 8) state (the same
    arithmetic, row by row): a tracker predicts every track every frame."""
    if step <= 0 or not filters:
        return
    mean = np.array([f.mean for f in filters])
    pp, pv, vv = (np.array(a) for a in zip(*((f._pp, f._pv, f._vv) for f in filters)))
    size2 = _sizes(mean) ** 2
    mean[:, :4] += step * mean[:, 4:]
    mean[:, 2:4] = np.maximum(mean[:, 2:4], 1.0)  # a shrinking box never turns inside out
    pp = pp + (2 * step) * pv + (step * step) * vv + (STD_POSITION ** 2 * step) * size2
    pv = pv + step * vv
    vv = vv + (STD_VELOCITY ** 2 * step) * size2
    for r, f in enumerate(filters):
        f.mean, f._pp, f._pv, f._vv = mean[r], pp[r], pv[r], vv[r]


def update_all(filters: Sequence[BoxKalman], boxes_xyxy: np.ndarray) -> None:
    """``f.update(box)`` for every filter and its (T, 4) box, as one computation."""
    if not filters:
        return
    z = xyxy_to_cxcywh(boxes_xyxy)
    mean = np.array([f.mean for f in filters])
    pp, pv, vv = (np.array(a) for a in zip(*((f._pp, f._pv, f._vv) for f in filters)))
    s = pp + (STD_POSITION * _sizes(mean)) ** 2
    k_p, k_v = pp / s, pv / s
    y = z - mean[:, :4]
    mean[:, :4] += k_p * y
    mean[:, 4:] += k_v * y
    pp, pv, vv = pp - pp * k_p, pv - pv * k_p, vv - pv * k_v
    for r, f in enumerate(filters):
        f.mean, f._pp, f._pv, f._vv = mean[r], pp[r], pv[r], vv[r]
