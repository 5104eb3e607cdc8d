"""Minimum-cost assignment (the Hungarian method) in numpy alone.

Used to keep cluster ids stable across refits by matching new centroids to old ones;
SciPy's `linear_sum_assignment` would pull SciPy into the serving process for a matrix
that is at most a few dozen rows on a side.
"""

from __future__ import annotations

import numpy as np


def linear_sum_assignment(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of a minimum-cost matching, like `scipy.optimize.linear_sum_assignment`.

    Every row is matched when there are no more rows than columns (and every column
    otherwise). Shortest augmenting paths with potentials, `O(n^2 m)` for `n <= m`.

    Returns:
        `(rows, cols)`: int64 arrays of equal length, sorted by row.

    Raises:
        ValueError: `cost` is not 2-D or holds a non-finite value.
    """
    c = np.asarray(cost, np.float64)
    if c.ndim != 2:
        raise ValueError(f"cost must be a 2-D matrix. Received: shape={c.shape}")
    if not np.isfinite(c).all():
        raise ValueError("cost must be finite. Received: a NaN or infinite entry")
    transposed = c.shape[0] > c.shape[1]
    if transposed:
        c = c.T
    n, m = c.shape
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    # 1-based as in the classic formulation: column 0 is a virtual start, row 0 "none".
    u = np.zeros(n + 1)
    v = np.zeros(m + 1)
    row_of = np.zeros(m + 1, np.int64)  # row matched to each column
    way = np.zeros(m + 1, np.int64)  # previous column on the shortest path
    for i in range(1, n + 1):
        row_of[0] = i
        j0 = 0
        minv = np.full(m + 1, np.inf)
        used = np.zeros(m + 1, bool)
        while True:
            used[j0] = True
            i0 = row_of[j0]
            free = ~used
            free[0] = False
            reduced = c[i0 - 1] - u[i0] - v[1:]  # (m,)
            better = free[1:] & (reduced < minv[1:])
            minv[1:][better] = reduced[better]
            way[1:][better] = j0
            masked = np.where(free, minv, np.inf)
            j1 = int(np.argmin(masked))
            delta = masked[j1]
            u[row_of[used]] += delta
            v[used] -= delta
            minv[free] -= delta
            j0 = j1
            if row_of[j0] == 0:
                break
        while j0:  # flip the matching along the path
            j1 = int(way[j0])
            row_of[j0] = row_of[j1]
            j0 = j1
    cols = np.flatnonzero(row_of[1:]).astype(np.int64)
    rows = row_of[1:][cols] - 1
    if transposed:
        rows, cols = cols, rows
    order = np.argsort(rows, kind="stable")
    return rows[order], cols[order]
