"""DDSketch: mergeable quantiles with a relative accuracy guarantee (non-negative values).

DDSketch (Masson et al., VLDB 2019) maps a value x > 0 to the bucket
`i = ceil(log_gamma(x))` with `gamma = (1 + a) / (1 - a)`; every value of a bucket lies in
`(gamma^(i-1), gamma^i]`, and reporting `2 gamma^i / (gamma + 1)` is within relative error
`a` of each of them. Sketches with the same `a` merge exactly by adding bucket counts, so
10 s windows roll up into minutes and replicas combine without losing accuracy.

Quantiles follow numpy's default (linear) definition: the estimate interpolates between
the estimates of the order statistics at `floor(q (n-1))` and `ceil(q (n-1))`. Each is
within `a` of the true order statistic, so the interpolation is within `a` of
`np.quantile(x, q)` too (values are non-negative; values below `MIN_INDEXABLE` count as 0).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence

import numpy as np

# Values at or below this (ms) are counted in the zero bucket; they are reported as 0.
MIN_INDEXABLE = 1e-6
# Bucket index standing for the zero bucket in `bucket_index` (below any real bucket).
ZERO_BUCKET = np.iinfo(np.int64).min
_MAGIC = b"DDS1"
_HEADER = struct.Struct("<4sdIqIqqddd")


class DDSketch:
    """Quantile sketch with relative accuracy guarantees (non-negative values).

    Args:
        relative_accuracy: `a` in (0, 1); every quantile is within a factor `1 +- a`.
        max_bins: bucket cap; beyond it the lowest buckets collapse (low quantiles lose
            accuracy first, the high ones that matter for latency keep it). 2048 bins at
            1% cover 18 orders of magnitude, so collapsing does not happen in practice.
    """

    def __init__(self, relative_accuracy: float = 0.01, max_bins: int = 2048) -> None:
        if not 0.0 < relative_accuracy < 1.0:
            raise ValueError(f"relative_accuracy must be in (0, 1). Received: {relative_accuracy}")
        if max_bins < 16:
            raise ValueError(f"max_bins must be at least 16. Received: max_bins={max_bins}")
        self.relative_accuracy = relative_accuracy
        self.max_bins = max_bins
        self.gamma = (1.0 + relative_accuracy) / (1.0 - relative_accuracy)
        self._log_gamma = math.log(self.gamma)
        self.offset = 0  # bucket index of counts[0]
        self.counts = np.zeros(0, np.int64)
        self.zero_count = 0
        self.count = 0
        self.sum = 0.0
        self.min = math.inf
        self.max = -math.inf

    def add(self, values: np.ndarray | Sequence[float]) -> None:
        """Adds values (vectorized); NaN means "not measured" and is skipped.

        Raises:
            ValueError: a value is negative or infinite.
        """
        v = np.asarray(values, np.float64).ravel()
        v = v[~np.isnan(v)]
        if v.size == 0:
            return
        if not (np.all(v >= 0.0) and np.all(np.isfinite(v))):
            raise ValueError(f"Values must be finite and >= 0. Received: min={v.min()}")
        idx = self.bucket_index(v)
        pos = idx[idx != ZERO_BUCKET]
        offset = int(pos.min()) if pos.size else 0
        self.add_summary(
            offset,
            np.bincount(pos - offset) if pos.size else np.zeros(0, np.int64),
            int(v.size - pos.size),
            int(v.size),
            float(v.sum()),
            float(v.min()),
            float(v.max()),
        )

    def bucket_index(self, values: np.ndarray) -> np.ndarray:
        """Bucket of each value (float64, >= 0); `ZERO_BUCKET` for the zero bucket."""
        zero = values <= MIN_INDEXABLE
        safe = np.where(zero, 1.0, values)
        idx = np.ceil(np.log(safe) / self._log_gamma).astype(np.int64)
        idx[zero] = ZERO_BUCKET
        return idx

    def add_summary(
        self,
        offset: int,
        counts: np.ndarray,
        zero_count: int,
        count: int,
        total: float,
        lo: float,
        hi: float,
    ) -> None:
        """Adds already-binned values: `counts[i]` values in bucket `offset + i`."""
        if count == 0:
            return
        size = counts.size
        if size:
            start = offset - self.offset
            if start < 0 or start + size > self.counts.size:
                self._cover(offset, offset + size - 1)
                start = offset - self.offset
            if size == 1:
                self.counts[start] += counts[0]
            else:
                self.counts[start : start + size] += counts
            if self.counts.size > self.max_bins:
                self._collapse()
        self.zero_count += zero_count
        self.count += count
        self.sum += total
        self.min = min(self.min, lo)
        self.max = max(self.max, hi)

    def merge(self, other: DDSketch) -> None:
        """Adds `other` into this sketch (exact: bucket counts add)."""
        if other.relative_accuracy != self.relative_accuracy:
            raise ValueError(
                "Only sketches with the same accuracy merge. Received: "
                f"{self.relative_accuracy} and {other.relative_accuracy}"
            )
        self.add_summary(
            other.offset,
            other.counts,
            other.zero_count,
            other.count,
            other.sum,
            other.min,
            other.max,
        )

    def quantiles(self, qs: Sequence[float]) -> list[float]:
        """Estimates of `np.quantile(values, q)` for each q; NaN when empty."""
        for q in qs:
            if not 0.0 <= q <= 1.0:
                raise ValueError(f"Quantiles must be in [0, 1]. Received: q={q}")
        if self.count == 0:
            return [math.nan] * len(qs)
        cum = np.cumsum(self.counts)
        out = []
        for q in qs:
            rank = q * (self.count - 1)
            lo, hi = math.floor(rank), math.ceil(rank)
            v_lo, v_hi = self._value_at_rank(lo, cum), self._value_at_rank(hi, cum)
            out.append(v_lo + (rank - lo) * (v_hi - v_lo))
        return out

    def _value_at_rank(self, rank: int, cum: np.ndarray) -> float:
        if rank < self.zero_count:
            return 0.0
        j = int(np.searchsorted(cum, rank - self.zero_count, side="right"))
        value = 2.0 * self.gamma ** (self.offset + j) / (self.gamma + 1.0)
        # The true value lies in [min, max]; clamping only brings the estimate closer.
        return float(min(max(value, self.min), self.max))

    def _cover(self, lo: int, hi: int) -> None:
        if self.counts.size == 0:
            self.offset, self.counts = lo, np.zeros(hi - lo + 1, np.int64)
            return
        new_lo = min(lo, self.offset)
        new_hi = max(hi, self.offset + self.counts.size - 1)
        if new_lo == self.offset and new_hi == self.offset + self.counts.size - 1:
            return
        grown = np.zeros(new_hi - new_lo + 1, np.int64)
        grown[self.offset - new_lo : self.offset - new_lo + self.counts.size] = self.counts
        self.offset, self.counts = new_lo, grown

    def _collapse(self) -> None:
        excess = self.counts.size - self.max_bins
        if excess > 0:
            self.counts[excess] += self.counts[:excess].sum()
            self.counts = self.counts[excess:].copy()
            self.offset += excess

    def to_bytes(self) -> bytes:
        """Pickle-free encoding: a fixed header then little-endian int64 bucket counts."""
        header = _HEADER.pack(
            _MAGIC,
            self.relative_accuracy,
            self.max_bins,
            self.offset,
            self.counts.size,
            self.zero_count,
            self.count,
            self.sum,
            self.min,
            self.max,
        )
        return header + self.counts.astype("<i8").tobytes()

    @classmethod
    def from_bytes(cls, data: bytes) -> DDSketch:
        """Decodes `to_bytes` output.

        Raises:
            ValueError: the bytes are not a sketch of this format.
        """
        if len(data) < _HEADER.size:
            raise ValueError(f"Sketch bytes too short. Received: {len(data)} bytes")
        magic, acc, max_bins, offset, nbins, zero, count, total, lo, hi = _HEADER.unpack_from(data)
        if magic != _MAGIC or len(data) != _HEADER.size + 8 * nbins:
            raise ValueError(
                f"Not a DDSketch of format {_MAGIC!r}. Received: magic={magic!r}, {len(data)} bytes"
            )
        sketch = cls(acc, max_bins)
        sketch.offset = offset
        sketch.counts = np.frombuffer(data, "<i8", count=nbins, offset=_HEADER.size).astype(
            np.int64
        )
        sketch.zero_count, sketch.count, sketch.sum, sketch.min, sketch.max = (
            zero,
            count,
            total,
            lo,
            hi,
        )
        return sketch
