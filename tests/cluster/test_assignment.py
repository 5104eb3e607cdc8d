"""The numpy Hungarian method against brute force on small matrices."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from logclust.cluster.assignment import linear_sum_assignment


def _brute_force(cost: np.ndarray) -> float:
    n, m = cost.shape
    if n <= m:
        return min(cost[range(n), list(p)].sum() for p in itertools.permutations(range(m), n))
    return min(cost[list(p), range(m)].sum() for p in itertools.permutations(range(n), m))


@pytest.mark.parametrize("shape", [(1, 1), (3, 3), (5, 5), (2, 5), (5, 2), (4, 6), (6, 4)])
def test_matches_brute_force(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(sum(shape))
    for trial in range(30):
        # Integer costs make ties common, which exercises the zero-delta paths.
        cost = rng.integers(0, 5, shape) if trial % 2 else rng.random(shape)
        rows, cols = linear_sum_assignment(cost)
        assert len(rows) == len(cols) == min(shape)
        assert len(set(rows.tolist())) == len(set(cols.tolist())) == min(shape)
        assert (np.diff(rows) > 0).all()
        assert cost[rows, cols].sum() == pytest.approx(_brute_force(cost))


def test_empty_and_invalid() -> None:
    rows, cols = linear_sum_assignment(np.zeros((0, 3)))
    assert rows.size == cols.size == 0
    with pytest.raises(ValueError, match="2-D"):
        linear_sum_assignment(np.zeros(3))
    with pytest.raises(ValueError, match="finite"):
        linear_sum_assignment(np.array([[0.0, np.inf]]))
