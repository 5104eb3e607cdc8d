"""Rows of many batches that wait to be added together (`PendingRows`).

Adding a batch's latencies to structures kept per group (a sketch per source, cluster
and window; a histogram series per source and cluster) costs a Python step per group,
and a batch of 1,000 replay lines holds hundreds of groups. 16,384 rows hold only a few
times more (a cluster's rows span many batches), so the latency book and the per-cluster
histogram keep rows as arrays and add them together: per row, a fraction of the cost.
Not thread-safe: the owner holds its own lock around every call.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# Rows that wait at most (32 bytes a row in the book while they wait).
PENDING_ROWS = 16_384


class PendingRows:
    """Waiting rows: a source (names numbered across batches), integer columns, a value.

    Args:
        limit: rows after which `add` says to add them (at least 1).
    """

    def __init__(self, limit: int = PENDING_ROWS) -> None:
        self.limit = max(1, limit)
        self.rows = 0
        self._chunks: list[tuple[np.ndarray, ...]] = []
        self._names: dict[str, int] = {}

    def add(
        self,
        source_names: Sequence[str],
        source_codes: np.ndarray,
        values: np.ndarray,
        *columns: np.ndarray,
    ) -> bool:
        """Appends rows (`source_names[source_codes[i]]`, `columns[j][i]`, `values[i]`);
        True once `limit` rows wait."""
        names = self._names
        ids = np.array([names.setdefault(n, len(names)) for n in source_names], np.int64)
        ints = [np.asarray(c, np.int64) for c in columns]
        sources = ids[np.asarray(source_codes, np.int64)]
        self._chunks.append((sources, *ints, np.asarray(values, np.float64)))
        self.rows += len(values)
        return self.rows >= self.limit

    def take(self) -> tuple[list[str], list[np.ndarray]] | None:
        """`(source names, [sources, *columns, values])` of every waiting row, which then
        no longer wait; None when none wait. `sources` index the names."""
        if not self._chunks:
            return None
        arrays = [np.concatenate(c) for c in zip(*self._chunks, strict=True)]
        names = list(self._names)
        self._chunks.clear()
        self._names = {}
        self.rows = 0
        return names, arrays
