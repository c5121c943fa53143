"""Optimal one-to-one assignment (the tracker's matching), without scipy.

`lap` (LAPJV, Jonker-Volgenant) is a 2 MB dependency of the base install; scipy (143 MB) is needed
only by the tracking metrics (the `track` extra).
"""

from __future__ import annotations

import numpy as np


def linear_assignment(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of the assignment of minimum total cost, as
    ``scipy.optimize.linear_sum_assignment`` gives them: min(N, M) pairs, rows ascending.

    cost: (N, M) finite float matrix.
    """
    import lap

    cost = np.asarray(cost, np.float64)
    if cost.ndim != 2:
        raise ValueError(f"expected an (N, M) cost matrix, got shape {cost.shape}")
    if cost.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    if not np.isfinite(cost).all():
        raise ValueError("the cost matrix holds NaN or infinite values")
    _, x, _ = lap.lapjv(cost, extend_cost=cost.shape[0] != cost.shape[1])
    rows = np.flatnonzero(x >= 0)
    return rows.astype(np.int64), x[rows].astype(np.int64)
