"""Percentiles of timings."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def pct(values: np.ndarray | Sequence[float], q: float) -> float:
    """The `q`-th percentile (0-100) of `values`; NaN when there are none."""
    a = np.asarray(values, dtype=np.float64)
    return float(np.percentile(a, q)) if a.size else float("nan")
