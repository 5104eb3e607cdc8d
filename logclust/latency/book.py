"""Per-cluster latency quantiles: a DDSketch with 1% relative accuracy, kept per window.

`LatencyBook` keeps one `DDSketch` (`logclust/latency/ddsketch.py`: every quantile within 1% of
`np.quantile` of the same values, exact merges) per (source, cluster id, base window)
with bounded retention, and answers range queries as Arrow tables.

Recorded rows wait as arrays (`logclust.latency.pending`) until `pending_rows` of them
have come, or until anything reads the book (a query, the flush, a forget, an expiry),
and then enter the sketches together: one grouping and one binning with numpy, then one
bucket-count update per (source, cluster, window) group.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pyarrow as pa

from logclust.latency.ddsketch import ZERO_BUCKET, DDSketch
from logclust.latency.pending import PENDING_ROWS, PendingRows
from logclust.wire.contract import (
    DEFAULT_QUANTILES,
    MAX_LATENCY_MS,
    ContractError,
    over_max_latency,
)

logger = logging.getLogger(__name__)

SketchKey = tuple[str, int, int]  # (source, cluster id, window start in Unix ms)


def quantile_column_name(q: float) -> str:
    """`0.99` -> `p99`, `0.999` -> `p99_9`, `0.5` -> `p50`."""
    return "p" + f"{q * 100:.6g}".replace(".", "_")


# Quantiles one query may ask for (each is a column of the answer).
MAX_QUANTILES = 64
# Resident bytes of a sketch besides its bucket counts (the object and its fields, its key
# and entries in the book), and of each bucket: fitted to what `python -m bench.memory_costs`
# measures for a sketch of 64 log-normal latencies (BENCHMARKS.md, "Memory budget").
SKETCH_FIXED_BYTES = 2_900
SKETCH_BUCKET_BYTES = 8
# Once over `max_bytes`, the oldest windows go until the sketches take this share of it
# (a sort of the keys per eviction round, not per batch).
_EVICT_TO = 0.9


def check_window(window: int, retention: int, unit: str = "s") -> None:
    """The check of a base latency window and its retention, in `unit` (the names in the
    message are `window_<unit>` and `retention_<unit>`).

    Raises:
        ValueError: the window is not positive, or the retention is shorter than it.
    """
    if window < 1 or retention < window:
        raise ValueError(
            f"window_{unit} must be positive and retention_{unit} at least one window. "
            f"Received: window_{unit}={window}, retention_{unit}={retention}"
        )


class LatencyBook:
    """Sketches per (source, cluster id, base window), thread-safe, with bounded retention.

    Args:
        window_ms: base window; query windows must be multiples of it.
        retention_ms: windows older than this (by wall clock) are dropped.
        relative_accuracy: accuracy of every sketch.
        max_skew_ms: rows dated further ahead of the receive time are not recorded.
        max_bytes: resident bytes the sketches may take (estimated per sketch:
            `SKETCH_FIXED_BYTES` plus `SKETCH_BUCKET_BYTES` a bucket); past it the oldest
            windows leave memory before their retention (counted in `evicted_sketches`;
            the store keeps them until the retention). None: no bound.
        pending_rows: rows recorded before they enter the sketches together (every
            reader of the book merges them first).
        max_latency_ms: larger latencies are not recorded (counted in `over_max_rows`):
            one absurd value (1e30) would otherwise stretch a sketch past its bucket cap,
            and the cap's collapse would move every quantile.
    """

    def __init__(
        self,
        window_ms: int = 10_000,
        retention_ms: int = 6 * 3600_000,
        relative_accuracy: float = 0.01,
        max_skew_ms: int = 300_000,
        max_bytes: int | None = None,
        pending_rows: int = PENDING_ROWS,
        max_latency_ms: float = MAX_LATENCY_MS,
    ) -> None:
        if max_bytes is not None and max_bytes < 1:
            raise ValueError(f"max_bytes must be positive. Received: max_bytes={max_bytes}")
        check_window(window_ms, retention_ms, unit="ms")
        if max_skew_ms < 0:
            raise ValueError(f"max_skew_ms must be >= 0. Received: max_skew_ms={max_skew_ms}")
        self.window_ms = window_ms
        self.retention_ms = retention_ms
        self.relative_accuracy = relative_accuracy
        # Rows dated further ahead of the receive time are not recorded (clock skew).
        self.max_skew_ms = max_skew_ms
        self.max_latency_ms = max_latency_ms
        self.late_rows = 0
        self.early_rows = 0
        self.over_max_rows = 0
        self.max_bytes = max_bytes
        self.bytes = 0  # estimated resident bytes of the sketches
        self.evicted_sketches = 0
        self._sketches: dict[SketchKey, DDSketch] = {}
        self._dirty: set[SketchKey] = set()
        self._lock = threading.Lock()
        # Rows not yet in the sketches: source, cluster id, window, latency.
        self._pending = PendingRows(pending_rows)

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

        Rows without latency (NaN) are skipped; so are rows older than the retention
        horizon (counted in `late_rows`), rows more than `max_skew_ms` in the future
        (`early_rows`): a clock far ahead must not open windows that never expire, and
        latencies above `max_latency_ms` (`over_max_rows`).
        """
        over = over_max_latency(latency_ms, self.max_latency_ms)
        if over.any():
            self.over_max_rows += int(over.sum())
        measured = ~np.isnan(latency_ms) & ~over
        late = measured & (time_ms < now_ms - self.retention_ms)
        early = measured & (time_ms > now_ms + self.max_skew_ms)
        keep = measured & ~late & ~early
        self.late_rows += int(late.sum())
        self.early_rows += int(early.sum())
        if not keep.any():
            return 0
        values = np.asarray(latency_ms[keep], np.float64)
        if not (np.all(values >= 0.0) and np.all(np.isfinite(values))):
            raise ValueError(f"Values must be finite and >= 0. Received: min={values.min()}")
        window = time_ms[keep] // self.window_ms * self.window_ms
        with self._lock:
            if self._pending.add(
                source_names, source_codes[keep], values, cluster_ids[keep], window
            ):
                self._merge_pending()
        return int(values.size)

    def _merge_pending(self) -> None:
        """Adds the waiting rows to the sketches (lock held)."""
        taken = self._pending.take()
        if taken is None:
            return
        names, (src, cid, win, values) = taken
        groups, g = group_rows(src, cid, win)
        binned = _bin_groups(DDSketch(self.relative_accuracy), g, len(groups), values)
        for (code, c, w), summary in zip(groups.tolist(), binned, strict=True):
            key = (names[code], c, w)
            sketch = self._sketches.get(key)
            if sketch is None:
                sketch = self._sketches[key] = DDSketch(self.relative_accuracy)
                self.bytes += SKETCH_FIXED_BYTES
            buckets = sketch.counts.size
            sketch.add_summary(*summary)
            self.bytes += SKETCH_BUCKET_BYTES * (sketch.counts.size - buckets)
            self._dirty.add(key)
        self._bound()

    def merge_pending(self) -> None:
        """Adds the rows recorded so far to the sketches now (readers do it themselves)."""
        with self._lock:
            self._merge_pending()

    def _bound(self) -> None:
        """Drops the oldest windows while the sketches exceed `max_bytes` (lock held)."""
        if self.max_bytes is None or self.bytes <= self.max_bytes:
            return
        target = self.max_bytes * _EVICT_TO
        for key in sorted(self._sketches, key=lambda k: k[2]):
            if self.bytes <= target:
                break
            self._drop(key)
            self.evicted_sketches += 1

    def _drop(self, key: SketchKey) -> None:
        sketch = self._sketches.pop(key)
        self.bytes -= SKETCH_FIXED_BYTES + SKETCH_BUCKET_BYTES * sketch.counts.size
        self._dirty.discard(key)

    def forget(self, source: str) -> None:
        """Drops every sketch of `source`."""
        with self._lock:
            self._merge_pending()
            for key in [k for k in self._sketches if k[0] == source]:
                self._drop(key)

    def expire(self, now_ms: int) -> int:
        """Drops windows past retention; returns the cutoff (window starts below it go)."""
        cutoff = now_ms - self.retention_ms
        with self._lock:
            self._merge_pending()
            for key in [k for k in self._sketches if k[2] + self.window_ms <= cutoff]:
                self._drop(key)
        return cutoff

    def take_dirty(self) -> dict[SketchKey, bytes]:
        """Encodes and clears the sketches changed since the last call."""
        with self._lock:
            self._merge_pending()
            out = {k: self._sketches[k].to_bytes() for k in self._dirty if k in self._sketches}
            self._dirty.clear()
        return out

    def mark_dirty(self, keys: Iterable[SketchKey]) -> None:
        """Puts keys back after a failed save so the next flush retries them."""
        with self._lock:
            self._dirty.update(k for k in keys if k in self._sketches)

    def load(self, items: dict[SketchKey, bytes]) -> int:
        """Restores persisted sketches (replacing same keys); past `max_bytes` the
        newest windows are kept. A record that does not decode (truncated, damaged, of
        another accuracy) is skipped with a warning, like a source's; returns how many."""
        skipped = 0
        with self._lock:
            self._merge_pending()
            for key, data in items.items():
                try:
                    sketch = DDSketch.from_bytes(data)
                    if sketch.relative_accuracy != self.relative_accuracy:
                        raise ValueError(
                            f"accuracy {sketch.relative_accuracy}, not {self.relative_accuracy}"
                        )
                except ValueError as e:
                    skipped += 1
                    logger.warning("ignoring stored latency window %s: %s", key, e)
                    continue
                if key in self._sketches:
                    self._drop(key)
                self._sketches[key] = sketch
                self.bytes += SKETCH_FIXED_BYTES + SKETCH_BUCKET_BYTES * sketch.counts.size
            self._bound()
        return skipped

    def query(
        self,
        quantiles: Sequence[float] = DEFAULT_QUANTILES,
        start_ms: int | None = None,
        end_ms: int | None = None,
        window_ms: int | None = None,
        source: str | None = None,
        aliases: Mapping[tuple[str, int], int] | None = None,
        sketches: bool = False,
    ) -> pa.Table:
        """Per-cluster counts and quantiles over [start_ms, end_ms), merged per window.

        Base windows that overlap the range are included whole. `window_ms` buckets are
        aligned to multiples of `window_ms` since the Unix epoch. `aliases` maps
        `(source, merged id)` to the id that now stands for it: the sketches of both are
        merged under that id (exactly, as DDSketches merge).

        Returns:
            Columns `source`, `cluster_id`, `window_start` (only when windowed), `count`,
            `min`, `max`, `mean` and one float64 column per quantile (`p50`, ...); with
            `sketches`, a `sketch` column too (`DDSketch.to_bytes`: merged exactly by a
            fleet query).
        """
        qs = list(quantiles) or list(DEFAULT_QUANTILES)
        if len(qs) > MAX_QUANTILES:
            raise ContractError(
                f"At most {MAX_QUANTILES} quantiles per query. Received: {len(qs)} quantiles"
            )
        for q in qs:
            if not 0.0 <= q <= 1.0:
                raise ContractError(f"Quantiles must be in [0, 1]. Received: q={q}")
        if window_ms is not None and (window_ms <= 0 or window_ms % self.window_ms):
            raise ContractError(
                f"window must be a positive multiple of the base window {self.window_ms} ms. "
                f"Received: window_ms={window_ms}"
            )
        merged: dict[tuple[str, int, int], DDSketch] = {}
        with self._lock:
            self._merge_pending()
            for (src, cid, win), sketch in self._sketches.items():
                if source is not None and src != source:
                    continue
                if start_ms is not None and win + self.window_ms <= start_ms:
                    continue
                if end_ms is not None and win >= end_ms:
                    continue
                bucket = win // window_ms * window_ms if window_ms else 0
                if aliases:
                    cid = aliases.get((src, cid), cid)
                acc = merged.setdefault((src, cid, bucket), DDSketch(self.relative_accuracy))
                acc.merge(sketch)
        table = _to_table(merged, qs, windowed=window_ms is not None)
        if sketches:
            blobs = [merged[k].to_bytes() for k in sorted(merged)]
            table = table.append_column("sketch", pa.array(blobs, pa.binary()))
        return table


def group_rows(*columns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct rows of integer columns and each row's group: `(groups (g, c), (n,))`.

    One 1-D `np.unique` over a mixed-radix key when it fits in int64 (the usual case: a
    few sources, clusters and windows). Wide columns (a fleet's 63-bit local ids) are
    numbered by their distinct values first; past that, the slower `np.unique(axis=0)`.
    """
    cols = [np.asarray(c, np.int64) for c in columns]
    lows = [int(c.min()) for c in cols]
    spans = [int(c.max()) - lo + 1 for c, lo in zip(cols, lows, strict=True)]
    if math.prod(spans) >= 2**62:
        values, codes = zip(*(np.unique(c, return_inverse=True) for c in cols), strict=True)
        if math.prod(v.size for v in values) < 2**62:
            small, inv = group_rows(*(c.ravel() for c in codes))
            wide = np.stack([v[small[:, j]] for j, v in enumerate(values)], 1)
            return wide, inv
        groups, inv = np.unique(np.stack(cols, 1), axis=0, return_inverse=True)
        return groups, inv.ravel()
    key = np.zeros(cols[0].size, np.int64)
    for c, lo, span in zip(cols, lows, spans, strict=True):
        key = key * span + (c - lo)
    uniq, inv = np.unique(key, return_inverse=True)
    groups = np.empty((uniq.size, len(cols)), np.int64)
    for j in range(len(cols) - 1, -1, -1):
        uniq, groups[:, j] = np.divmod(uniq, spans[j])
        groups[:, j] += lows[j]
    return groups, inv.ravel()


def _bin_groups(
    sketch: DDSketch, g: np.ndarray, n_groups: int, values: np.ndarray
) -> list[tuple[int, np.ndarray, int, int, float, float, float]]:
    """`DDSketch.add_summary` arguments of each group of `values` (all groups at once)."""
    idx = sketch.bucket_index(values)
    indexed = idx != ZERO_BUCKET
    count = np.bincount(g, minlength=n_groups)
    zero = count - np.bincount(g[indexed], minlength=n_groups)
    total = np.bincount(g, weights=values, minlength=n_groups)
    lo = np.full(n_groups, np.inf)
    hi = np.full(n_groups, -np.inf)
    np.minimum.at(lo, g, values)
    np.maximum.at(hi, g, values)
    # Bucket counts of every group from one sort of (group, bucket) pairs.
    starts_l = [0] * (n_groups + 1)
    if indexed.any():
        pairs, pinv = group_rows(g[indexed], idx[indexed])
        pair_counts = np.bincount(pinv, minlength=len(pairs))
        starts_l = np.searchsorted(pairs[:, 0], np.arange(n_groups + 1)).tolist()
        buckets_l, counts_l = pairs[:, 1].tolist(), pair_counts.tolist()
    empty = np.zeros(0, np.int64)
    out = []
    # Plain Python numbers per group: numpy scalars cost a conversion each, and most
    # groups (a cluster's rows of one batch in one window) fall in one bucket.
    for i, (z, n, t, a, b) in enumerate(
        zip(zero.tolist(), count.tolist(), total.tolist(), lo.tolist(), hi.tolist(), strict=True)
    ):
        s0, s1 = starts_l[i], starts_l[i + 1]
        if s1 - s0 == 1:
            counts, offset = np.array(counts_l[s0 : s0 + 1], np.int64), buckets_l[s0]
        elif s1 > s0:
            offset = buckets_l[s0]
            counts = np.zeros(buckets_l[s1 - 1] - offset + 1, np.int64)
            counts[np.asarray(buckets_l[s0:s1]) - offset] = counts_l[s0:s1]
        else:
            counts, offset = empty, 0
        out.append((offset, counts, z, n, t, a, b))
    return out


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
