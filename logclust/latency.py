"""Mergeable latency quantiles: a DDSketch with 1% relative accuracy, kept per window.

DDSketch (Masson et al., VLDB 2019) maps a value x > 0 to the bucket
`i = ceil(log_gamma(x))` with `gamma = (1 + a) / (1 - a)`; every value of a bucket lies in
`(gamma^(i-1), gamma^i]`, and reporting `2 gamma^i / (gamma + 1)` is within relative error
`a` of each of them. Sketches with the same `a` merge exactly by adding bucket counts, so
10 s windows roll up into minutes and replicas combine without losing accuracy.

Quantiles follow numpy's default (linear) definition: the estimate interpolates between
the estimates of the order statistics at `floor(q (n-1))` and `ceil(q (n-1))`. Each is
within `a` of the true order statistic, so the interpolation is within `a` of
`np.quantile(x, q)` too (values are non-negative; values below `MIN_INDEXABLE` count as 0).

`LatencyBook` keeps one sketch per (source, cluster id, base window) with bounded
retention and answers range queries as Arrow tables.
"""

from __future__ import annotations

import math
import struct
import threading
from collections.abc import Iterable, Sequence

import numpy as np
import pyarrow as pa

DEFAULT_QUANTILES: tuple[float, ...] = (0.5, 0.9, 0.99)
# Values at or below this (ms) are counted in the zero bucket; they are reported as 0.
MIN_INDEXABLE = 1e-6
_MAGIC = b"DDS1"
_HEADER = struct.Struct("<4sdIqIqqddd")

SketchKey = tuple[str, int, int]  # (source, cluster id, window start in Unix ms)


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
        zero = v <= MIN_INDEXABLE
        pos = v[~zero]
        self.zero_count += int(zero.sum())
        self.count += int(v.size)
        self.sum += float(v.sum())
        self.min = min(self.min, float(v.min()))
        self.max = max(self.max, float(v.max()))
        if pos.size:
            idx = np.ceil(np.log(pos) / self._log_gamma).astype(np.int64)
            lo, hi = int(idx.min()), int(idx.max())
            self._cover(lo, hi)
            self.counts += np.bincount(idx - self.offset, minlength=self.counts.size)
            self._collapse()

    def merge(self, other: DDSketch) -> None:
        """Adds `other` into this sketch (exact: bucket counts add)."""
        if other.relative_accuracy != self.relative_accuracy:
            raise ValueError(
                "Only sketches with the same accuracy merge. Received: "
                f"{self.relative_accuracy} and {other.relative_accuracy}"
            )
        if other.count == 0:
            return
        if other.counts.size:
            self._cover(other.offset, other.offset + other.counts.size - 1)
            start = other.offset - self.offset
            self.counts[start : start + other.counts.size] += other.counts
            self._collapse()
        self.zero_count += other.zero_count
        self.count += other.count
        self.sum += other.sum
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)

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


def quantile_column_name(q: float) -> str:
    """`0.99` -> `p99`, `0.999` -> `p99_9`, `0.5` -> `p50`."""
    return "p" + f"{q * 100:.6g}".replace(".", "_")


class LatencyBook:
    """Sketches per (source, cluster id, base window), thread-safe, with bounded retention.

    Args:
        window_ms: base window; query windows must be multiples of it.
        retention_ms: windows older than this (by wall clock) are dropped.
        relative_accuracy: accuracy of every sketch.
    """

    def __init__(
        self,
        window_ms: int = 10_000,
        retention_ms: int = 6 * 3600_000,
        relative_accuracy: float = 0.01,
    ) -> None:
        if window_ms < 1 or retention_ms < window_ms:
            raise ValueError(
                "window_ms must be positive and retention_ms at least one window. "
                f"Received: window_ms={window_ms}, retention_ms={retention_ms}"
            )
        self.window_ms = window_ms
        self.retention_ms = retention_ms
        self.relative_accuracy = relative_accuracy
        self._sketches: dict[SketchKey, DDSketch] = {}
        self._dirty: set[SketchKey] = set()
        self._lock = threading.Lock()

    def record(
        self,
        source_names: Sequence[str],
        source_codes: np.ndarray,
        cluster_ids: np.ndarray,
        time_ms: np.ndarray,
        latency_ms: np.ndarray,
        now_ms: int,
    ) -> int:
        """Adds rows with a measured latency; returns how many were recorded.

        Rows older than the retention horizon or without latency (NaN) are skipped.
        """
        keep = ~np.isnan(latency_ms) & (time_ms >= now_ms - self.retention_ms)
        if not keep.any():
            return 0
        window = time_ms[keep] // self.window_ms * self.window_ms
        keys = np.stack([source_codes[keep].astype(np.int64), cluster_ids[keep], window], 1)
        groups, inv = np.unique(keys, axis=0, return_inverse=True)
        inv = inv.ravel()
        order = np.argsort(inv, kind="stable")
        values = latency_ms[keep][order]
        bounds = np.cumsum(np.bincount(inv, minlength=len(groups)))[:-1]
        with self._lock:
            for (code, cid, win), chunk in zip(groups, np.split(values, bounds), strict=True):
                key = (source_names[int(code)], int(cid), int(win))
                sketch = self._sketches.get(key)
                if sketch is None:
                    sketch = self._sketches[key] = DDSketch(self.relative_accuracy)
                sketch.add(chunk)
                self._dirty.add(key)
        return int(keep.sum())

    def expire(self, now_ms: int) -> int:
        """Drops windows past retention; returns the cutoff (window starts below it go)."""
        cutoff = now_ms - self.retention_ms
        with self._lock:
            for key in [k for k in self._sketches if k[2] + self.window_ms <= cutoff]:
                del self._sketches[key]
                self._dirty.discard(key)
        return cutoff

    def take_dirty(self) -> dict[SketchKey, bytes]:
        """Encodes and clears the sketches changed since the last call."""
        with self._lock:
            out = {k: self._sketches[k].to_bytes() for k in self._dirty if k in self._sketches}
            self._dirty.clear()
        return out

    def mark_dirty(self, keys: Iterable[SketchKey]) -> None:
        """Puts keys back after a failed save so the next flush retries them."""
        with self._lock:
            self._dirty.update(k for k in keys if k in self._sketches)

    def load(self, items: dict[SketchKey, bytes]) -> None:
        """Restores persisted sketches (replacing same keys)."""
        with self._lock:
            for key, data in items.items():
                self._sketches[key] = DDSketch.from_bytes(data)

    def query(
        self,
        quantiles: Sequence[float] = DEFAULT_QUANTILES,
        start_ms: int | None = None,
        end_ms: int | None = None,
        window_ms: int | None = None,
        source: str | None = None,
    ) -> pa.Table:
        """Per-cluster counts and quantiles over [start_ms, end_ms), merged per window.

        Base windows that overlap the range are included whole. `window_ms` buckets are
        aligned to multiples of `window_ms` since the Unix epoch.

        Returns:
            Columns `source`, `cluster_id`, `window_start` (only when windowed), `count`,
            `min`, `max`, `mean` and one float64 column per quantile (`p50`, ...).
        """
        qs = list(quantiles) or list(DEFAULT_QUANTILES)
        for q in qs:
            if not 0.0 <= q <= 1.0:
                raise ValueError(f"Quantiles must be in [0, 1]. Received: q={q}")
        if window_ms is not None and (window_ms <= 0 or window_ms % self.window_ms):
            raise ValueError(
                f"window must be a positive multiple of the base window {self.window_ms} ms. "
                f"Received: window_ms={window_ms}"
            )
        merged: dict[tuple[str, int, int], DDSketch] = {}
        with self._lock:
            for (src, cid, win), sketch in self._sketches.items():
                if source is not None and src != source:
                    continue
                if start_ms is not None and win + self.window_ms <= start_ms:
                    continue
                if end_ms is not None and win >= end_ms:
                    continue
                bucket = win // window_ms * window_ms if window_ms else 0
                acc = merged.setdefault((src, cid, bucket), DDSketch(self.relative_accuracy))
                acc.merge(sketch)
        return _to_table(merged, qs, windowed=window_ms is not None)


def _to_table(
    merged: dict[tuple[str, int, int], DDSketch], qs: list[float], windowed: bool
) -> pa.Table:
    keys = sorted(merged)
    sketches = [merged[k] for k in keys]
    cols: dict[str, pa.Array] = {
        "source": pa.array([k[0] for k in keys], pa.string()),
        "cluster_id": pa.array([k[1] for k in keys], pa.int32()),
    }
    if windowed:
        cols["window_start"] = pa.array([k[2] for k in keys], pa.int64()).cast(
            pa.timestamp("ms", tz="UTC")
        )
    cols["count"] = pa.array([s.count for s in sketches], pa.int64())
    cols["min"] = pa.array([s.min for s in sketches], pa.float64())
    cols["max"] = pa.array([s.max for s in sketches], pa.float64())
    cols["mean"] = pa.array([s.sum / s.count for s in sketches], pa.float64())
    values = np.array([s.quantiles(qs) for s in sketches], np.float64).reshape(len(keys), len(qs))
    for j, q in enumerate(qs):
        cols[quantile_column_name(q)] = pa.array(values[:, j], pa.float64())
    return pa.table(cols)
