"""One-Euro filter for keypoints: low jitter when still, little lag when moving.

Casiez, Roussel and Vogel, "1 Euro Filter: A Simple Speed-based Low-pass Filter for Noisy Input
in Interactive Systems", CHI 2012. For display only: the tracker associates on raw detections.
"""

from __future__ import annotations

import math

import numpy as np


def _alpha(cutoff: np.ndarray | float, dt: float) -> np.ndarray | float:
    # Exponential smoothing factor of a first-order low-pass filter at `cutoff` Hz sampled every dt s.
    tau = 1.0 / (2.0 * math.pi * np.asarray(cutoff, np.float64))
    return 1.0 / (1.0 + tau / dt)


class OneEuroFilter:
    """Filters an array signal (e.g. (K, 2) keypoints in pixels) sampled at irregular times.

    min_cutoff: Hz, the cutoff when the signal is still; lower means smoother and more lag.
    beta:       Hz per (unit/s): how fast the cutoff rises with speed; higher means less lag
                when moving. In pixel units a speed of 100 px/s with beta=0.01 adds 1 Hz.
    d_cutoff:   Hz, the cutoff used to smooth the speed estimate itself.
    """

    def __init__(self, *, min_cutoff: float = 1.0, beta: float = 0.01, d_cutoff: float = 1.0) -> None:
        if min_cutoff <= 0 or d_cutoff <= 0 or beta < 0:
            raise ValueError(f"expected min_cutoff > 0, d_cutoff > 0, beta >= 0, got {min_cutoff}, {d_cutoff}, {beta}")
        self.min_cutoff = float(min_cutoff)
        self.beta = float(beta)
        self.d_cutoff = float(d_cutoff)
        self.reset()

    def reset(self) -> None:
        self._x: np.ndarray | None = None
        self._dx: np.ndarray | None = None
        self._t: float | None = None

    def __call__(self, x: np.ndarray, t: float) -> np.ndarray:
        """Filter one sample `x` taken at time `t` (seconds); returns the filtered sample."""
        x = np.asarray(x, np.float64)
        if self._x is None or self._x.shape != x.shape:
            self._x, self._dx, self._t = x.copy(), np.zeros_like(x), float(t)
            return x.astype(np.float32)
        dt = float(t) - self._t
        if dt <= 0:  # a repeated or out-of-order timestamp carries no new timing information
            return self._x.astype(np.float32)
        dx = (x - self._x) / dt
        a_d = _alpha(self.d_cutoff, dt)
        self._dx = a_d * dx + (1.0 - a_d) * self._dx
        cutoff = self.min_cutoff + self.beta * np.abs(self._dx)
        a = _alpha(cutoff, dt)
        self._x = a * x + (1.0 - a) * self._x
        self._t = float(t)
        return self._x.astype(np.float32)

    def rescale(self, scale: np.ndarray) -> None:
        """Follow a change of image resolution: multiply the state by `scale` (broadcast, e.g. (2,))."""
        if self._x is not None:
            self._x = self._x * scale
            self._dx = self._dx * scale
