"""The tracker's assignment (lap) gives scipy's optimum on every shape, ties included."""

from __future__ import annotations

import numpy as np
import pytest

from posekit.ops.assignment import linear_assignment


@pytest.mark.parametrize("cost, rows, cols", [
    (np.zeros((0, 3)), [], []),
    (np.array([[5.0]]), [0], [0]),
    (np.array([[1.0, 2.0, 3.0], [2.0, 0.0, 5.0]]), [0, 1], [0, 1]),   # wide
    (np.array([[4.0], [1.0], [3.0]]), [1], [0]),                      # tall: the cheapest row
    (np.array([[0.0, 9.0], [9.0, 0.0]]), [0, 1], [0, 1]),
])
def test_known_assignments(cost, rows, cols):
    r, c = linear_assignment(cost)
    assert r.tolist() == rows and c.tolist() == cols


def test_same_total_cost_as_scipy_on_random_and_tied_matrices():
    scipy_optimize = pytest.importorskip("scipy.optimize")
    rng = np.random.default_rng(0)
    for trial in range(500):
        n, m = rng.integers(1, 15, 2)
        cost = rng.random((n, m))
        if trial % 2:
            cost = np.round(cost, 1)  # many ties
        r1, c1 = scipy_optimize.linear_sum_assignment(cost)
        r2, c2 = linear_assignment(cost)
        assert len(r2) == min(n, m) == len(set(c2.tolist()))
        assert cost[r2, c2].sum() == pytest.approx(cost[r1, c1].sum(), abs=1e-9)


@pytest.mark.parametrize("cost, message", [
    (np.ones(3), "expected an \\(N, M\\) cost matrix"),
    (np.array([[1.0, np.nan]]), "NaN or infinite"),
])
def test_bad_cost_matrices(cost, message):
    with pytest.raises(ValueError, match=message):
        linear_assignment(cost)
