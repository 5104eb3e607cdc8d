"""Sampling by cluster under a storage budget: which rows to keep, and what each stands for.

Pure arithmetic on arrays, no I/O and no clock: the rows' own times drive the windows.
The rule, and why it keeps counts and percentiles honest, is in docs/sampling.md; in short,
for each source with a budget F:

* Counts per cluster decay over a window of at least `window_rows` rows and at least
  `window_s` seconds of row time (the longer of the two): `n_c` estimates how many rows
  cluster c sends per window, `N` all of them.
* A water level `tau` shares the budget fairly: `sum_c min(n_c, tau) = G` over the
  clusters active in the last segment, with G about F * N (a controller corrects it). A
  cluster below the level is kept whole; one above it with probability `p_c = tau / n_c`.
* A new cluster is kept row by row until its rows reach the level, and each cluster keeps
  a sure row every `slot_s` of row time (and a fifth of the row window): a new or rare
  kind is never lost.
* Rows in a cluster's latency tail are kept `TAIL_BOOST` times as often (same expected
  rows), so weighted percentiles rest on many tail rows.
* The draw is systematic per cluster and stratum, from a phase seeded by (seed, source,
  cluster): each row is kept with probability exactly p, and weight 1/p (0 when dropped).
  p is fixed before the row is drawn, so summed weights estimate true counts without bias.

Rows are decided in segments at fixed positions of each source's stream, with the level
and estimates set at a segment's start: decisions do not depend on how rows were split
into batches nor on how sources interleave.
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from logclust.sidecar.config import SamplingConfig

# Rows of one source decided with one water level and one decay step: short segments
# while a source is young (its counts change fast), then `SEGMENT_ROWS`.
FIRST_SEGMENT_ROWS = 16
SEGMENT_ROWS = 4096
# The controller: a gain on F * N in GAIN_RANGE, moved by CONTROL_RATE per window of rows
# and unit of a segment's relative error, times one plus the window's relative error
# (both errors clipped to CONTROL_CLIP).
CONTROL_RATE = 1.0
CONTROL_CLIP = 0.5
GAIN_RANGE = (0.25, 4.0)
# Rows above their cluster's running latency quantile TAIL_QUANTILE are kept TAIL_BOOST
# times as often as the others (same expected kept rows); the quantile follows each
# segment's, weighted by the cluster's rows there over TAIL_MEMORY_ROWS.
TAIL_QUANTILE = 0.9
TAIL_BOOST = 8.0
TAIL_MEMORY_ROWS = 256.0
_M1, _M2, _GOLDEN = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB), 0x9E3779B97F4A7C15
_NEVER = np.iinfo(np.int64).min // 2  # a time or position long before any


@dataclass(frozen=True)
class Decisions:
    """The sampling of one batch, in row order.

    Attributes:
        keep: `(n,)` bool, whether the row is kept.
        weight: `(n,)` float64, the rows a kept row stands for (1/p); 0 for dropped rows.
    """

    keep: np.ndarray
    weight: np.ndarray


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer on uint64 values (wrapping arithmetic)."""
    x = x ^ (x >> np.uint64(30))
    x = x * _M1
    x = x ^ (x >> np.uint64(27))
    x = x * _M2
    return x ^ (x >> np.uint64(31))


def cluster_phases(key: int, ids: np.ndarray) -> np.ndarray:
    """A uniform phase in [0, 1) per cluster id, from a hash of (key, id)."""
    with np.errstate(over="ignore"):
        x = _mix(ids.astype(np.uint64) * _M2 + np.uint64(key) + np.uint64(_GOLDEN))
    return (x >> np.uint64(11)).astype(np.float64) * 2.0**-53


class _Groups:
    """The rows of a segment grouped by cluster id, from one stable sort.

    Attributes:
        ids: `(u,)` distinct cluster ids, ascending.
        inv: `(m,)` each row's index into `ids`.
        per: `(u,)` rows per cluster.
        order: `(m,)` rows by cluster, stream order within.
        starts: `(u,)` where each cluster begins in `order`.
        first_at: `(u,)` each cluster's first row.
        rank: `(m,)` each row's place among its cluster's rows.
    """

    def __init__(self, ids: np.ndarray) -> None:
        m = ids.size
        self.order = np.argsort(ids, kind="stable")
        ordered = ids[self.order]
        new = np.empty(m, bool)
        new[0] = True
        np.not_equal(ordered[1:], ordered[:-1], out=new[1:])
        self.starts = np.flatnonzero(new)
        self.ids = ordered[self.starts]
        self.first_at = self.order[self.starts]
        self.per = np.diff(np.append(self.starts, m))
        group = np.cumsum(new) - 1  # (m,) in sorted order
        self.inv = np.empty(m, np.int64)
        self.inv[self.order] = group
        self.rank = np.empty(m, np.int64)
        self.rank[self.order] = np.arange(m) - self.starts[group]


def source_key(seed: int, source: str) -> int:
    """The 64-bit hash key of a source under `seed` (stable across processes)."""
    digest = hashlib.blake2b(f"{seed}\0{source}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def tilt(p: np.ndarray, tail: np.ndarray, split: np.ndarray) -> np.ndarray:
    """Probabilities with tail rows `TAIL_BOOST` times the body rows' (capped at 1), at
    the same expected kept rows when a tenth of the rows are tail rows, among the rows
    that `split` marks (their cluster has a tail estimate; its rows without a latency
    are body rows): percentiles are then estimated from many more tail rows than a plain
    sample holds. Other rows keep `p`."""
    share = 1.0 - TAIL_QUANTILE
    body = p / (1.0 - share + share * TAIL_BOOST)
    tilted = np.where(tail, np.minimum(1.0, body * TAIL_BOOST), body)
    return np.where(split, tilted, p)


def segment_end(rows: int) -> int:
    """The row count where the segment holding row `rows` of a source ends: powers of
    two from `FIRST_SEGMENT_ROWS` up to `SEGMENT_ROWS`, then every `SEGMENT_ROWS`
    (fixed positions: decisions do not depend on the batches)."""
    if rows < SEGMENT_ROWS:
        end = FIRST_SEGMENT_ROWS
        while end <= rows:
            end *= 2
        return end
    return (rows // SEGMENT_ROWS + 1) * SEGMENT_ROWS


def water_level(counts: np.ndarray, target: float) -> float:
    """The level tau with `sum(min(counts, tau)) == target`; inf when the counts fit.

    Args:
        counts: `(k,)` non-negative rows per cluster.
        target: rows to keep, > 0.
    """
    total = float(counts.sum())
    if target >= total:
        return math.inf
    s = np.sort(counts)[::-1]  # (k,) largest first
    capped = np.arange(1, s.size + 1)
    # With the j largest capped at tau: j * tau + (total - their sum) = target.
    taus = (target - total + np.cumsum(s)) / capped
    nxt = np.append(s[1:], 0.0)
    j = int(np.argmax(taus >= nxt))  # the first j whose tau is above the rest
    return float(taus[j])


class SourceBudget:
    """The sampling state of one source: decayed counts per cluster and the controller.

    Args:
        fraction: share of rows to keep, in (0, 1].
        config: windows, slot and seed.
        key: the source's hash key (`source_key`).
    """

    def __init__(self, fraction: float, config: SamplingConfig, key: int) -> None:
        self.fraction = fraction
        self.config = config
        self.key = key
        self._index: dict[int, int] = {}  # cluster id -> index into the arrays
        self._lut = np.full(0, -1, np.int64)  # the same as a table: id -> index, -1
        self.counts = np.zeros(0)  # (k,) decayed rows per cluster
        self.in_segment = np.zeros(0)  # (k,) rows per cluster in the current segment
        self.last_segment = np.zeros(0, np.int64)  # (k,) the last segment with its rows
        self.segments = 0  # segments begun
        # (k,) time and position of each cluster's last row kept for certain
        self.sure_ms = np.zeros(0, np.int64)
        self.sure_row = np.zeros(0, np.int64)
        self.slot_ms = int(config.slot_s * 1000)
        # The slot in rows: the window's rows in the ratio of the slot to the window in
        # time, at least a segment (one sure row per cluster and segment).
        self.slot_rows = max(
            SEGMENT_ROWS, int(config.window_rows * config.slot_s / config.window_s)
        )
        self.tail_at = np.zeros(0)  # (k,) running TAIL_QUANTILE of latency, NaN: none yet
        self.phase = np.zeros((0, 2))  # (k, 2) sampling phase of body and tail rows
        self.rows = 0  # rows decided: the position of the next one
        self.total = 0.0  # decayed rows
        self.expected = 0.0  # decayed sum of p: rows expected kept
        self.gain = 1.0  # the controller's factor on F * N
        self.tau = math.inf  # the water level of the current segment
        self._segment_end = 0  # where the current segment ends (row count)
        # (cluster slot per row, latency, rows, sum of p) of the current segment's parts
        self._pending: list[tuple[np.ndarray, np.ndarray, int, float]] = []
        self.clock_ms: int | None = None  # latest row time seen
        self.kept = 0
        self.dropped = 0

    def decide(self, ids: np.ndarray, time_ms: np.ndarray, latency: np.ndarray) -> Decisions:
        """Keeps or drops each row of this source, in stream order.

        Args:
            ids: `(n,)` cluster id of each row.
            time_ms: `(n,)` int64 row times.
            latency: `(n,)` float64 latencies, NaN where not measured.
        """
        n = ids.size
        keep = np.empty(n, bool)
        weight = np.empty(n, np.float64)
        start = 0
        while start < n:
            stop = min(n, start + segment_end(self.rows) - self.rows)
            part = slice(start, stop)
            keep[part], weight[part] = self._segment(ids[part], time_ms[part], latency[part])
            start = stop
        kept = int(keep.sum())
        self.kept += kept
        self.dropped += n - kept
        return Decisions(keep, weight)

    def _segment(
        self, ids: np.ndarray, time_ms: np.ndarray, latency: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Decides rows of one segment (or the part of it in this batch): the level, the
        decay and the tail estimates are set at the segment's start, counts run row by
        row, so a segment split over batches decides as one."""
        m = ids.size
        if self.rows == self._segment_end:  # a segment begins
            self._close_segment()
            self._segment_end = segment_end(self.rows)
            self._decay(self._segment_end - self.rows, int(time_ms[0]))
            # Kinds that sent no row in the last segment send none now: their counts
            # would hold the level down for the others until they decay.
            active = self.last_segment >= self.segments - 1
            self.tau = water_level(self.counts[active], self._target())
            self.in_segment[:] = 0.0
            self.segments += 1
        self.clock_ms = max(self.clock_ms or 0, int(time_ms.max()))
        g = _Groups(ids)
        cix = self._index_of(g.ids)  # (u,) cluster cix
        # (m,) the row's cluster's rows in the window, or its rows so far in the segment
        # when more (a new or bursting kind is thinned as it grows, its first rows kept).
        before = self.in_segment[cix][g.inv]  # rows of earlier parts of the segment
        seen = np.maximum(self.counts[cix][g.inv] - before, before + g.rank)
        with np.errstate(divide="ignore"):
            p = np.minimum(1.0, self.tau / seen)  # nothing counted yet: 1
        at = self.tail_at[cix][g.inv]
        tail = latency > at  # NaN on either side: False
        p = tilt(p, tail, ~np.isnan(at))
        p[self._sure(cix, g, time_ms)] = 1.0
        keep = self._draw(p, cix, g, tail)
        weight = np.where(keep, 1.0 / p, 0.0)
        self.counts[cix] += g.per
        self.in_segment[cix] += g.per
        self.last_segment[cix] = self.segments
        self.rows += m
        expected = float(p.sum())
        self.total += m
        self.expected += expected
        self._pending.append((cix[g.inv], latency, m, expected))
        return keep, weight

    def _close_segment(self) -> None:
        """At a segment's end: moves each cluster's tail estimate towards the segment's
        quantile and the controller's gain by the segment's error."""
        if not self._pending:
            return
        rows_cix = np.concatenate([part[0] for part in self._pending])
        latency = np.concatenate([part[1] for part in self._pending])
        rows = sum(part[2] for part in self._pending)
        expected = sum(part[3] for part in self._pending)
        self._pending = []
        self._account(rows, expected)
        if np.isnan(latency).all():
            return
        g = _Groups(rows_cix)
        q = self._segment_quantiles(latency, g)  # (u,) NaN where no latency
        known = ~np.isnan(q)
        at = g.ids[known]
        old = self.tail_at[at]
        blend = np.minimum(1.0, g.per[known] / TAIL_MEMORY_ROWS)
        self.tail_at[at] = np.where(np.isnan(old), q[known], old + blend * (q[known] - old))

    def _segment_quantiles(self, latency: np.ndarray, g: _Groups) -> np.ndarray:
        """The `TAIL_QUANTILE` of each cluster's latencies in the segment (NaN if none)."""
        finite = ~np.isnan(latency)
        out = np.full(g.per.size, np.nan)
        if not finite.any():
            return out
        filled = np.where(finite, latency, np.inf)
        order = np.lexsort((filled, g.inv))  # by cluster, then latency (NaN last)
        n_fin = np.bincount(g.inv, weights=finite, minlength=g.per.size).astype(np.int64)
        has = n_fin > 0
        pick = g.starts[has] + (TAIL_QUANTILE * (n_fin[has] - 1)).astype(np.int64)
        out[has] = filled[order[pick]]
        return out

    def _draw(self, p: np.ndarray, cix: np.ndarray, g: _Groups, tail: np.ndarray) -> np.ndarray:
        """Systematic sampling per cluster and stratum (tail or body rows): a row is kept
        when its stratum's running sum of p, from a seeded random phase, crosses an
        integer. Each row is kept with probability exactly p (the phase is uniform), and
        a stratum's kept rows track the sum of its p within one row, so its weighted
        count is within one weight of the truth."""
        ps = p[g.order]  # (m,) grouped by cluster, stream order within
        in_tail = tail[g.order]
        group = g.inv[g.order]
        end = np.empty(p.size)
        strata = ((0, ~in_tail), (1, in_tail)) if in_tail.any() else ((0, None),)
        for stratum, rows in strata:
            cs = np.cumsum(ps if rows is None else np.where(rows, ps, 0.0))
            edges = np.zeros(g.starts.size + 1)
            edges[:-1] = np.concatenate([[0.0], cs])[g.starts]  # sum before each cluster
            edges[-1] = cs[-1]
            phase = self.phase[cix, stratum]
            run = phase[group] + cs - edges[group]
            if rows is None:
                end = run
            else:
                end[rows] = run[rows]
            self.phase[cix, stratum] = np.mod(phase + np.diff(edges), 1.0)
        keep = np.empty(p.size, bool)
        keep[g.order] = np.floor(end) > np.floor(end - ps)
        return keep

    def _index_of(self, ids: np.ndarray) -> np.ndarray:
        """The cix of cluster ids; clusters not seen before get one (count 0, their
        own seeded phases)."""
        top = int(ids.max()) + 1
        if top > self._lut.size:  # ids are small non-negative ints: a dense table
            self._lut = np.concatenate([self._lut, np.full(max(top, 2 * self._lut.size), -1)])
        cix = self._lut[ids]
        new = np.flatnonzero(cix < 0)
        if not new.size:
            return cix
        for i in new.tolist():
            cix[i] = self._lut[ids[i]] = len(self._index)
            self._index[int(ids[i])] = int(cix[i])
        k = len(self._index)
        if k > self.counts.size:
            grow = max(k - self.counts.size, 16, self.counts.size // 2)
            self.counts = np.concatenate([self.counts, np.zeros(grow)])
            self.in_segment = np.concatenate([self.in_segment, np.zeros(grow)])
            self.last_segment = np.concatenate([self.last_segment, np.full(grow, -1)])
            self.sure_ms = np.concatenate([self.sure_ms, np.full(grow, _NEVER)])
            self.sure_row = np.concatenate([self.sure_row, np.full(grow, _NEVER)])
            self.tail_at = np.concatenate([self.tail_at, np.full(grow, np.nan)])
            self.phase = np.concatenate([self.phase, np.zeros((grow, 2))])
        new_ids = ids[new].astype(np.uint64)
        other = self.key ^ 0xFFFFFFFFFFFFFFFF  # the tail stratum's phases
        self.phase[cix[new], 0] = cluster_phases(self.key, new_ids)
        self.phase[cix[new], 1] = cluster_phases(other, new_ids)
        return cix

    def _sure(self, cix: np.ndarray, g: _Groups, time_ms: np.ndarray) -> np.ndarray:
        """Rows kept for certain: a cluster's first row once `slot_s` seconds of row time
        and `slot_rows` rows of the source have passed since its last such row (its
        first row ever included); at most one per cluster and segment."""
        i = cix[g.inv]
        due = (time_ms - self.sure_ms[i] >= self.slot_ms) & (
            self.rows + np.arange(time_ms.size) - self.sure_row[i] >= self.slot_rows
        )
        sure = np.zeros(time_ms.size, bool)
        if due.any():
            rows = np.flatnonzero(due)
            _, at = np.unique(g.inv[rows], return_index=True)  # first due row per cluster
            rows = rows[at]
            sure[rows] = True
            self.sure_ms[i[rows]] = time_ms[rows]
            self.sure_row[i[rows]] = self.rows + rows
        return sure

    def _decay(self, rows: int, now_ms: int) -> None:
        """Ages the counts by `rows` rows or by the time since the last segment,
        whichever ages them less (the window is the longer of the two)."""
        elapsed_s = 0.0 if self.clock_ms is None else max(0, now_ms - self.clock_ms) / 1000
        factor = max(
            math.exp(-rows / self.config.window_rows), math.exp(-elapsed_s / self.config.window_s)
        )
        if factor < 1.0:
            self.counts *= factor
            self.total *= factor
            self.expected *= factor

    def _target(self) -> float:
        """Rows the level shares out: F * N times the controller's gain, and times one
        plus the window's relative error (clipped): rows kept above or below F over the
        window are paid back, within `CONTROL_CLIP`."""
        fair = self.fraction * self.total
        if fair <= 0.0:
            return 1e-9
        err = min(CONTROL_CLIP, max(-CONTROL_CLIP, (fair - self.expected) / fair))
        return max(self.gain * fair * (1.0 + err), 1e-9)

    def _account(self, rows: int, expected: float) -> None:
        """Moves the gain by the segment's share of the window's rows times its relative
        error (the rows expected kept against F of its rows, clipped): it learns what
        the rule keeps beyond the level (first rows, sure rows, a long tail of kinds
        near it) and corrects for it, without paying back a burst later."""
        fair = self.fraction * rows
        err = min(CONTROL_CLIP, max(-CONTROL_CLIP, (fair - expected) / fair))
        step = CONTROL_RATE * rows / self.config.window_rows * err
        lo, hi = GAIN_RANGE
        self.gain = min(hi, max(lo, self.gain * math.exp(step)))


class Sampler:
    """The budgets of every source: decisions for whole batches. Thread-safe.

    Args:
        config: the budgets (`fraction`, `source_fractions`), windows, slot and seed.
    """

    def __init__(self, config: SamplingConfig) -> None:
        self.config = config
        self._budgets: dict[str, SourceBudget] = {}
        self._whole: dict[str, int] = {}  # rows of sources without a budget
        self._lock = threading.Lock()

    def decide(
        self,
        source_names: Sequence[str],
        source_codes: np.ndarray,
        ids: np.ndarray,
        time_ms: np.ndarray,
        latency: np.ndarray,
    ) -> Decisions:
        """Keeps or drops every row of a batch.

        Args:
            source_names: the batch's distinct sources.
            source_codes: `(n,)` index into `source_names` of each row.
            ids: `(n,)` cluster id of each row.
            time_ms: `(n,)` int64 row times.
            latency: `(n,)` float64 latencies, NaN where not measured.
        """
        keep = np.ones(ids.size, bool)
        weight = np.ones(ids.size, np.float64)
        with self._lock:
            if len(source_names) == 1:  # the common case: no copies
                budget = self._budget(source_names[0])
                if budget is not None:
                    return budget.decide(ids, time_ms, latency)
                self._whole[source_names[0]] = self._whole.get(source_names[0], 0) + ids.size
                return Decisions(keep, weight)
            for code, name in enumerate(source_names):
                rows = np.flatnonzero(source_codes == code)
                budget = self._budget(name)
                if budget is None:
                    self._whole[name] = self._whole.get(name, 0) + rows.size
                    continue
                d = budget.decide(ids[rows], time_ms[rows], latency[rows])
                keep[rows], weight[rows] = d.keep, d.weight
        return Decisions(keep, weight)

    def _budget(self, source: str) -> SourceBudget | None:
        """The state of `source`, created when new; None when it is kept whole."""
        budget = self._budgets.get(source)
        if budget is None:
            fraction = self.config.fraction_for(source)
            if fraction is None or fraction >= 1.0:
                return None
            key = source_key(self.config.seed, source)
            budget = self._budgets[source] = SourceBudget(fraction, self.config, key)
        return budget

    def totals(self) -> dict[str, tuple[int, int]]:
        """Rows kept and dropped per source since it was first seen (or forgotten)."""
        with self._lock:
            out = {name: (b.kept, b.dropped) for name, b in self._budgets.items()}
            out.update({name: (n, 0) for name, n in self._whole.items()})
        return out

    def forget(self, source: str) -> None:
        """Drops the state of a forgotten or evicted source."""
        with self._lock:
            self._budgets.pop(source, None)
            self._whole.pop(source, None)
