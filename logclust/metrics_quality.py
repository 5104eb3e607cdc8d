"""Clustering quality against ground truth: adjusted Rand index and grouping accuracy."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np
from sklearn.metrics import adjusted_rand_score


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
    _, t = np.unique(np.asarray(truth, dtype=str), return_inverse=True)
    _, p = np.unique(np.asarray(pred, dtype=str), return_inverse=True)
    return float(adjusted_rand_score(t, p))
