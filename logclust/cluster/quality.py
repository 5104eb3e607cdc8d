"""Clustering quality against ground truth: adjusted Rand index and grouping accuracy.

Numpy only: the demo and the benchmarks score the serving path without scikit-learn.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np


def grouping_accuracy(truth: Sequence[object], pred: Sequence[object]) -> float:
    """Share of lines whose predicted group holds exactly the lines of their true group
    (the loghub parsing benchmark's grouping accuracy)."""
    if len(truth) != len(pred):
        raise ValueError(f"Lengths differ. Received: {len(truth)} and {len(pred)}")
    if not truth:
        return 0.0
    by_pred: dict[object, set[int]] = defaultdict(set)
    by_true: dict[object, set[int]] = defaultdict(set)
    for i, (t, p) in enumerate(zip(truth, pred, strict=True)):
        by_pred[p].add(i)
        by_true[t].add(i)
    correct = 0
    for members in by_pred.values():
        first = next(iter(members))
        if by_true[truth[first]] == members:
            correct += len(members)
    return correct / len(truth)


def ari(truth: Sequence[object], pred: Sequence[object]) -> float:
    """Adjusted Rand index of two labellings (labels compared as strings).

    Computed from the pair-confusion counts in exact integers, as scikit-learn's
    `adjusted_rand_score` does, so the two agree to the last bit.
    """
    if len(truth) != len(pred):
        raise ValueError(f"Lengths differ. Received: {len(truth)} and {len(pred)}")
    _, t = np.unique(np.asarray(truth, dtype=str), return_inverse=True)
    _, p = np.unique(np.asarray(pred, dtype=str), return_inverse=True)
    t, p = t.ravel().astype(np.int64), p.ravel().astype(np.int64)
    n = int(t.size)
    # Non-zero cells of the contingency table, and its row and column sums.
    _, cells = np.unique(t * (int(p.max(initial=0)) + 1) + p, return_counts=True)
    sum_squares = int(np.sum(cells.astype(np.int64) ** 2))
    rows_sq = int(np.sum(np.bincount(t).astype(np.int64) ** 2))
    cols_sq = int(np.sum(np.bincount(p).astype(np.int64) ** 2))
    tp = sum_squares - n
    fp = cols_sq - sum_squares
    fn = rows_sq - sum_squares
    tn = n * n - fp - fn - sum_squares
    if fn == 0 and fp == 0:
        return 1.0
    return 2.0 * (tp * tn - fn * fp) / ((tp + fn) * (fn + tn) + (tp + fp) * (fp + tn))
