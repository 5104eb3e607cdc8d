"""A uniform sample of a stream's rows, kept for refits (reservoir sampling).

While the reservoir fills, every row goes in (Algorithm R). Once it is full, Li's
Algorithm L draws the gap to the next accepted row instead of one random number per row,
in blocks, so a batch costs a few random numbers per *accepted* row: at 300,000 rows seen
and 4,096 slots, about 14 of a 1,000-row batch. Every row of the stream ends up in the
sample with the same chance (`tests/test_reservoir.py`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

_MAX_GAP = float(2**40)


class Reservoir:
    """At most `capacity` rows: each row's embedding and masked text.

    Args:
        capacity: rows kept.
        dim: embedding width.
        seed: seeds the sampling.
    """

    def __init__(self, capacity: int, dim: int, seed: int = 0) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be positive. Received: capacity={capacity}")
        self.capacity = capacity
        self._emb = np.zeros((capacity, dim), np.float32)  # pages touched as it fills
        self._text = np.empty(capacity, object)
        self._rng = np.random.default_rng(seed)
        self._next_take = -1  # stream index of the next accepted row once full
        self._w = 0.0  # Algorithm L's running maximum of the uniform keys

    def offer(
        self, seen: int, keys: list[str], embed: Callable[[np.ndarray], np.ndarray], inv: np.ndarray
    ) -> None:
        """Samples a batch's rows.

        Args:
            seen: rows of the stream before this batch.
            keys: the batch's distinct masked texts.
            embed: embeddings `(m, dim)` of `keys[idx]`; asked only for accepted rows.
            inv: `(n,)` index into `keys` of each row.
        """
        cap, n = self.capacity, inv.size
        filling = min(max(cap - seen, 0), n)
        slots = [np.arange(seen, seen + filling)]
        rows = [np.arange(filling)]
        if seen + n > cap:
            if self._next_take < 0:  # just filled (or restored from a state without it)
                self._w = float(np.exp(np.log(1.0 - self._rng.random()) / cap))
                self._next_take = max(seen, cap) - 1 + int(self._gaps(np.array([self._w]))[0])
            while self._next_take < seen + n:
                # About 1.5 times the acceptances expected in the rest of the batch.
                expected = cap * np.log((seen + n) / max(seen, cap, self._next_take))
                block = max(8, int(1.5 * expected))
                w = self._w * np.cumprod(np.exp(np.log(1.0 - self._rng.random(block)) / cap))
                gaps = self._gaps(w)
                at = self._next_take + np.concatenate(([0], np.cumsum(gaps[:-1])))
                m = int(np.searchsorted(at, seen + n))  # acceptances inside this batch (>= 1)
                slots.append(self._rng.integers(cap, size=m))
                rows.append(at[:m] - seen)
                self._w = float(w[m - 1])
                self._next_take = int(at[m - 1] + gaps[m - 1])
        slot, row = np.concatenate(slots), np.concatenate(rows)
        if slot.size:
            # A slot drawn twice keeps the later row.
            last = slot.size - 1 - np.unique(slot[::-1], return_index=True)[1]
            slot, row = slot[last], inv[row[last]]
            self._emb[slot] = embed(row)
            self._text[slot] = [keys[i] for i in row.tolist()]

    def contents(self, seen: int) -> tuple[np.ndarray, np.ndarray]:
        """Copies of the sampled embeddings `(m, dim)` and texts `(m,)` after `seen` rows."""
        fill = min(seen, self.capacity)
        return self._emb[:fill].copy(), self._text[:fill].copy()

    def _gaps(self, w: np.ndarray) -> np.ndarray:
        """Rows from an accepted row to the next under Algorithm L (at least 1 each)."""
        u = 1.0 - self._rng.random(w.size)
        with np.errstate(divide="ignore"):  # w may underflow to 0: an endless gap
            gaps = np.floor(np.log(u) / np.log1p(-w)) + 1
        # Clipped so that a block's sum stays far inside int64 (no stream gets that long).
        return np.minimum(gaps, _MAX_GAP).astype(np.int64)
