"""Sampling by cluster under a storage budget: which rows to keep, and what each stands for.

Pure arithmetic on arrays, no I/O and no clock: the rows' own times drive the windows.
The rule, and why it keeps counts and percentiles honest, is in docs/sampling.md; in short,
for each source with a budget F:

* Counts per cluster decay over a window of at least `window_rows` rows and at least
  `window_s` seconds of row time (the longer of the two); a cluster's share of the rows
  since its first one, times `N` (all rows per window), estimates `n_c`, its rows per
  window, whatever its age.
* A water level `tau` shares the budget fairly: the clusters in the level (active in the
  last segment, or silent for less than `ACTIVE_GAP` rows' worth of their share) keep G
  rows, each at `p_c = clip(tau / n_c, P_FLOOR * F, 1)` plus what its tail stratum costs.
  A cluster below the level is kept whole.
* The budget holds per window: windows of the same spans, from the source's first row,
  each with a ledger; G is the rate that pays back the window's excess or shortfall over
  its remaining rows (at least as many as it has seen, up to its least span; no debt
  carried into the next window), times a slow gain that learns what the rule keeps
  beyond the level. While it pays back, kinds under the steady level stay whole.
* A cluster outside the level (new, or back after a pause) is kept row by row until its
  rows reach the level, while the window's new kinds spend under `NEW_SHARE` of its
  budget; past that, at the rate. Each cluster keeps its first row of every window (and
  of every `slot_s` of row time): a new or rare kind is never lost.
* Clusters with `TAIL_MIN_WINDOW_ROWS` rows per window keep their rows above their
  running p98 whole (`TAIL_BOOST` times p, capped at 1) and the body the rest, so a
  weighted p99 counts every row near it with weight 1; rows without a latency are drawn
  in a stratum of their own.
* The draw is systematic per cluster and stratum, from a phase seeded by (seed, source,
  cluster): each row is kept with probability exactly p, and weight 1/p (0 when dropped).
  p is fixed before the row is drawn, so summed weights estimate true counts without bias.

Rows are decided in segments at fixed positions of each source's stream (and at a
window's first row), with the level and estimates set at a segment's start: decisions
do not depend on how rows were split into batches nor on how sources interleave.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from logclust.sidecar.config import SamplingConfig
from logclust.sidecar.sample_level import (
    BODY,
    NO_LATENCY,
    SEGMENT_ROWS,
    STRATA,
    TAIL,
    Groups,
    phase_keys,
    segment_end,
    segment_quantiles,
    sort_key,
    sorted_level,
    source_key,
    stratum_phases,
    tilt,
    water_level,
)

# The controller: a gain on the level's budget in GAIN_RANGE, moved by CONTROL_RATE per
# window of rows and unit of a segment's relative error (clipped to CONTROL_CLIP), learns
# what the rule keeps beyond the level; the window's ledger pays back what was kept above
# or below F within the current window, the rate clipped to RATE_RANGE times F.
CONTROL_RATE = 1.0
CONTROL_CLIP = 0.5
GAIN_RANGE = (0.5, 2.0)
RATE_RANGE = (0.25, 2.5)
# Rows of kinds outside the level (new, or back after a pause) are kept whole while their
# demand in the window stays under NEW_SHARE of the window's budget, then at the rate.
NEW_SHARE = 0.5
# A kind silent for fewer rows than ACTIVE_GAP over its share (the rows in which it would
# send ACTIVE_GAP rows) is still in the level: a rare kind between two of its rows is not
# new (a silence that long has odds of exp(-ACTIVE_GAP)).
ACTIVE_GAP = 3.0
# No row is kept with probability below P_FLOOR * F: a kept row stands for at most
# 1 / (P_FLOOR * F) rows, so a large kind that keeps few rows in a window still has a
# count within a few percent (it costs at most P_FLOOR of the budget).
P_FLOOR = 0.25
# The tail estimate (`TAIL_QUANTILE`, logclust.sidecar.sample_level) follows each
# segment's quantile, weighted by the cluster's rows there over TAIL_MEMORY_ROWS, from
# TAIL_MIN_ROWS of them (fewer put a sample's top below the true quantile). Only clusters
# with TAIL_MIN_WINDOW_ROWS rows per window have a tail stratum: below that a p99 rests on
# fewer than 5 rows, and their tails would cost the budget that keeps rare kinds whole.
TAIL_MEMORY_ROWS = 256.0
TAIL_MIN_ROWS = 50
TAIL_MIN_WINDOW_ROWS = 500.0
_NEVER = int(np.iinfo(np.int64).min // 2)  # a time or position long before any
# The per-cluster arrays and the value of a slot not yet given to a cluster.
_FILLS: dict[str, float] = dict(counts=0.0, in_segment=0.0, last_segment=-1, last_row=_NEVER)
_FILLS.update(sure_ms=_NEVER, sure_row=_NEVER, tail_at=math.nan, in_level=False)
_FILLS.update(exposure=0.0, level_counts=0.0, tail_on=False)
assert (BODY, TAIL) == (0, 1)  # a row's stratum is whether its latency is above the tail


class _Batch:
    """A batch of one source's rows, and what its parts share."""

    def __init__(self, ids: np.ndarray, time_ms: np.ndarray, latency: np.ndarray) -> None:
        self.ids = ids
        self.time_ms = time_ms
        self.latency = latency
        top = int(np.maximum.reduce(ids))
        self.key = sort_key(ids, int(np.minimum.reduce(ids)), top)
        self.top = top + 1
        self.t_max = int(np.maximum.reduce(time_ms))
        self.t_min = int(np.minimum.reduce(time_ms))
        self.nan = np.isnan(latency)
        nans = int(np.add.reduce(self.nan, dtype=np.intp))
        self.no_latency = nans == ids.size
        self.all_latency = nans == 0


@dataclass(frozen=True)
class Decisions:
    """The sampling of one batch, in row order.

    Attributes:
        keep: `(n,)` bool, whether the row is kept.
        weight: `(n,)` float64, the rows a kept row stands for (1/p); 0 for dropped rows.
    """

    keep: np.ndarray
    weight: np.ndarray


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
        self._k = 0  # clusters seen: each has an index into the arrays below
        self._lut = np.full(0, -1, np.int64)  # cluster id -> its index, -1: none yet
        self._arange = np.arange(0)  # 0, 1, 2, ... as long as the longest batch
        self.counts = np.zeros(0)  # (k,) decayed rows per cluster
        self.in_segment = np.zeros(0)  # (k,) rows per cluster in the current segment
        self.last_segment = np.zeros(0, np.int64)  # (k,) the last segment with its rows
        self.last_row = np.zeros(0, np.int64)  # (k,) the position of its last row
        self.segments = 0  # segments begun
        # (k,) time and position of each cluster's last row kept for certain
        self.sure_ms = np.zeros(0, np.int64)
        self.sure_row = np.zeros(0, np.int64)
        self._sure_lo: float = math.inf  # at most the earliest of sure_ms
        self.slot_ms = int(config.slot_s * 1000)
        # The slot in rows: the window's rows in the ratio of the slot to the window in
        # time, at least a segment (one sure row per cluster and segment).
        self.slot_rows = max(
            SEGMENT_ROWS, int(config.window_rows * config.slot_s / config.window_s)
        )
        self.tail_at = np.zeros(0)  # (k,) running TAIL_QUANTILE of latency, NaN: none
        self._tails = False  # whether any cluster has one
        self.phases = np.zeros((STRATA, 0))  # (STRATA, k) sampling phase of each stratum
        self._phase_keys = phase_keys(key)  # what seeds them
        self.in_level = np.zeros(0, bool)  # (k,) counted in the current segment's level
        # (k,) decayed rows of the source since each cluster's first row: counts over it
        # are the cluster's share, whatever its age (a young kind is not taken for rare)
        self.exposure = np.zeros(0)
        self.level_counts = np.zeros(0)  # (k,) rows per window, as at the segment's start
        self.tail_on = np.zeros(0, bool)  # (k,) enough rows per window for a tail stratum
        self.level = np.zeros(0)  # (k,) the water level of each cluster in the segment
        self._order = np.zeros(0, np.int64)  # (k,) clusters by level_counts, ascending
        # The window's ledger: where it began (row time, row count), its rows, the rows
        # expected kept (sum of p), the new kinds' demand, and the rate of this segment.
        self.window_ms = 0
        self.window_row = 0
        self.window_rows = 0
        self.window_spent = 0.0
        self.new_demand = 0.0
        self.rate = fraction
        self.allowance = 0.0  # what kinds outside the level may spend in the window
        self.rows = 0  # rows decided: the position of the next one
        self.total = 0.0  # decayed rows
        self.gain = 1.0  # the controller's factor on F * N
        self._faded = False  # whether a decay may have left an exposure at nothing
        self.tau = math.inf  # the water level of the current segment
        self._segment_end = 0  # where the current segment ends (row count)
        # (cluster index per grouped row, their latency (None: none), rows of kinds in
        # the level, their sum of p) of the current segment's parts
        self._pending: list[tuple[np.ndarray, np.ndarray | None, int, float]] = []
        self.clock_ms: int | None = None  # row time at the last segment's start
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
        if not n:
            return Decisions(keep, weight)
        batch = _Batch(ids, time_ms, latency)
        if batch.top > self._lut.size:  # ids are small non-negative ints: a dense table
            more = np.full(max(batch.top, 2 * self._lut.size), -1)
            self._lut = np.concatenate([self._lut, more])
        if self._arange.size < n:
            self._arange = np.arange(max(n, 2 * self._arange.size))
        # No window can end in this batch while its last row is within the window's time.
        turns = batch.t_max - self.window_ms >= self.window_len_ms
        start = 0
        while start < n:
            stop = min(n, start + segment_end(self.rows) - self.rows)
            # A window that ends in the part ends its segment too: from the row where it
            # has its least span of rows, the first row past its least span of time.
            first = start + max(0, self.window_row + self.window_rows_min - self.rows)
            if turns and self.rows and first < stop:
                due = time_ms[first:stop] - self.window_ms >= self.window_len_ms
                if due.any():
                    at = first + int(np.argmax(due))
                    if at == start:
                        self._new_window(int(time_ms[at]))
                        turns = batch.t_max - self.window_ms >= self.window_len_ms
                    else:
                        stop = at
            self._segment(batch, start, stop, keep[start:stop], weight[start:stop])
            start = stop
        kept = int(np.add.reduce(keep, dtype=np.intp))
        self.kept += kept
        self.dropped += n - kept
        return Decisions(keep, weight)

    def _segment(
        self, batch: _Batch, start: int, stop: int, keep: np.ndarray, weight: np.ndarray
    ) -> None:
        """Decides rows `start:stop` of a batch, one segment's (or the part of it in this
        batch), into `keep` and `weight`: the level, the decay and the tail estimates are
        set at the segment's start, counts run row by row, so a segment split over batches
        decides as one. The work is on the rows grouped by cluster (`Groups`)."""
        m = stop - start
        time_ms = batch.time_ms[start:stop]
        if self.rows == self._segment_end:  # a segment begins
            self._begin_segment(int(time_ms[0]))
        ids = batch.ids[start:stop]
        g = Groups(ids, batch.key[start:stop])
        cix, new = self._index_of(g)  # (u,) each cluster's index into the arrays
        rows_cix = cix[g.group]  # (m,) the same per grouped row
        ps = self._base_p(rows_cix, g)  # (m,) p of the grouped rows
        outside = None  # rows of kinds outside the level, in stream order
        if not np.logical_and.reduce(self.in_level[cix]):
            ps, outside = self._outside(ps, ids, g)
        nan = batch.nan[start:stop]
        latency = None  # of the grouped rows; None: none measured
        if not (batch.no_latency or np.logical_and.reduce(nan)):
            latency = batch.latency[start:stop][g.order]
        stratum = None  # one stratum
        if latency is not None and (self._tails or not batch.all_latency):
            stratum = self._strata(rows_cix, latency, nan[g.order])
            if self._tails:  # some cluster has a tail estimate
                split = self.tail_on[rows_cix]
                if split.any():
                    split &= ~np.isnan(self.tail_at[rows_cix])
                    if split.any():
                        ps = tilt(ps, stratum, split, P_FLOOR * self.fraction)
        self._sure(cix, g, time_ms, ps, batch)
        kept = self._draw(ps, cix, g, stratum)
        p = np.empty(m)
        p[g.order] = ps
        keep[g.order] = kept
        weight[g.order] = kept / ps  # 1/p where kept, else 0 (p > 0)
        self._count(cix, new, g, m)
        expected = float(np.add.reduce(p))
        self.window_spent += expected
        if outside is None:
            self._pending.append((rows_cix, latency, m, expected))
        else:
            level_rows = int(m - np.add.reduce(outside, dtype=np.intp))
            self._pending.append((rows_cix, latency, level_rows, float(p[~outside].sum())))

    def _base_p(self, rows_cix: np.ndarray, g: Groups) -> np.ndarray:
        """Each grouped row's p before kinds outside the level, strata and sure rows: its
        cluster's level over its rows in the window, or its rows so far in the segment
        when more (a new or bursting kind is thinned as it grows, its first rows kept)."""
        m = rows_cix.size
        offset = self.in_segment[rows_cix]  # rows of earlier parts of the segment
        offset -= g.starts[g.group]  # minus the row's cluster's start: plus the position
        seen = np.add(offset, self._arange[:m], out=offset)  # its rows before it
        np.maximum(self.level_counts[rows_cix], seen, out=seen)
        p = np.ones(m)  # nothing counted yet: 1
        np.divide(self.level[rows_cix], seen, out=p, where=seen > 0)
        return np.minimum(np.maximum(p, P_FLOOR * self.fraction, out=p), 1.0, out=p)

    def _outside(self, ps: np.ndarray, ids: np.ndarray, g: Groups) -> tuple[np.ndarray, np.ndarray]:
        """The rows of kinds outside the level (in stream order) draw on the window's
        allowance for new kinds, in stream order, and past it are kept at the rate."""
        outside = ~self.in_level[self._lut[ids]]
        p = np.empty(ps.size)
        p[g.order] = ps
        demand = outside * p  # p of the rows outside, 0 elsewhere
        spent = float(demand.sum())
        if self.new_demand > self.allowance:  # spent already: every such row is over
            np.minimum(ps, self.rate, out=ps, where=outside[g.order])
        # The running demand never exceeds its total (within rounding): no row is over.
        elif not self.new_demand + spent * (1.0 + 1e-7) < self.allowance:
            over = outside & (self.new_demand + np.cumsum(demand) > self.allowance)
            if np.logical_or.reduce(over):
                np.minimum(ps, self.rate, out=ps, where=over[g.order])
        self.new_demand += spent
        return ps, outside

    def _strata(self, rows_cix: np.ndarray, latency: np.ndarray, nan: np.ndarray) -> np.ndarray:
        """Each grouped row's stratum: the tail above its cluster's estimate, the body
        (also without an estimate), or no latency."""
        stratum = (latency > self.tail_at[rows_cix]).view(np.int8)  # TAIL 1, BODY 0
        if nan.any():
            stratum = stratum.copy()
            stratum[nan] = NO_LATENCY
        return stratum

    def _count(self, cix: np.ndarray, new: np.ndarray | None, g: Groups, m: int) -> None:
        """Counts a part's rows: per cluster, in the segment, in the source's exposure
        and in the window."""
        self.counts[cix] += g.per
        self.exposure[: self._k] += m
        if self._faded:  # an exposure may have decayed to nothing: tell new ones by it
            fresh = self.exposure[cix] == m
            new = fresh if fresh.any() else None
        if new is not None:  # first seen in this part: exposed from their first row
            self.exposure[cix[new]] -= g.order[g.starts[new]]
        self.in_segment[cix] += g.per
        self.last_segment[cix] = self.segments
        self.last_row[cix] = self.rows + g.order[g.bounds[1:] - 1]
        self.rows += m
        self.total += m
        self.window_rows += m

    def _close_segment(self) -> None:
        """At a segment's end: moves each cluster's tail estimate towards the segment's
        quantile and the controller's gain by the segment's error."""
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        rows = sum(part[2] for part in pending)
        expected = sum(part[3] for part in pending)
        self._account(rows, expected)
        if all(part[1] is None for part in pending):  # no latency: nothing to estimate
            return
        rows_cix = np.concatenate([part[0] for part in pending])
        latency = np.concatenate(
            [np.full(part[0].size, math.nan) if part[1] is None else part[1] for part in pending]
        )
        per = np.bincount(rows_cix)  # (k',) rows per cluster slot in the segment
        big = per >= TAIL_MIN_ROWS  # enough rows to tell
        if not big.any():
            return
        rows_on = big[rows_cix] & ~np.isnan(latency)
        if not rows_on.any():
            return
        at, q = segment_quantiles(rows_cix[rows_on], latency[rows_on], per.size)
        self._tails = True
        old = self.tail_at[at]
        blend = np.minimum(1.0, per[at] / TAIL_MEMORY_ROWS)
        self.tail_at[at] = np.where(np.isnan(old), q, old + blend * (q - old))

    def _draw(
        self, ps: np.ndarray, cix: np.ndarray, g: Groups, stratum: np.ndarray | None
    ) -> np.ndarray:
        """Systematic sampling per cluster and latency stratum, on the grouped rows: a
        row is kept when its stratum's running sum of p, from a seeded random phase,
        crosses an integer. Each row is kept with probability exactly p (the phase is
        uniform), and a stratum's kept rows track the sum of its p within one row, so its
        weighted count is within one weight of the truth."""
        present = None if stratum is None else np.bincount(stratum, minlength=3).nonzero()[0]
        if present is None or present.size == 1:  # one stratum: the phases of the first
            end = self._run(ps, cix, g, 0)
        else:
            end = np.empty(ps.size)
            for j in present.tolist():
                rows = stratum == j
                end[rows] = self._run(np.where(rows, ps, 0.0), cix, g, j)[rows]
        return end - ps < np.floor(end)  # floor(end - ps) < floor(end): crossed

    def _run(self, ps: np.ndarray, cix: np.ndarray, g: Groups, j: int) -> np.ndarray:
        """The running sum of `ps` (grouped rows, 0 outside stratum `j`) from each
        cluster's phase of stratum `j`, which moves on by the cluster's sum."""
        sums = np.empty(ps.size + 1)  # 0, then the running sum
        sums[0] = 0.0
        cs = np.add.accumulate(ps, out=sums[1:])  # np.cumsum, without its wrapper
        edges = sums[g.bounds]  # the sum before each cluster, then the total
        phases = self.phases[j]
        phase = phases[cix]
        run = phase[g.group] + cs - edges[g.group]
        phases[cix] = np.mod(phase + (edges[1:] - edges[:-1]), 1.0)
        return run

    def _index_of(self, g: Groups) -> tuple[np.ndarray, np.ndarray | None]:
        """The index of each cluster of a part, and which are new (None: none); clusters
        not seen before get one (count 0, their own seeded phases), in ascending id."""
        cix = self._lut[g.ids]
        if np.minimum.reduce(cix) >= 0:
            return cix, None
        new = cix < 0
        new_ids = g.ids[new]
        k = self._k + new_ids.size
        cix[new] = self._lut[new_ids] = np.arange(self._k, k)
        if k > self.counts.size:
            grow = max(k - self.counts.size, 16, self.counts.size)
            fills = {**_FILLS, "level": self.tau}
            for name, fill in fills.items():  # (k,) arrays, their fills
                old = getattr(self, name)
                setattr(self, name, np.concatenate([old, np.full(grow, fill, old.dtype)]))
            self.phases = np.concatenate([self.phases, np.zeros((STRATA, grow))], axis=1)
        self.phases[:, self._k : k] = stratum_phases(self._phase_keys, new_ids).T
        self._k = k
        return cix, new

    def _sure(
        self, cix: np.ndarray, g: Groups, time_ms: np.ndarray, ps: np.ndarray, batch: _Batch
    ) -> None:
        """Keeps rows for certain (p = 1 in `ps`): a cluster's first row once `slot_s`
        seconds of row time and `slot_rows` rows of the source have passed since its last
        such row (its first row ever included), and its first row of each window; at most
        one per cluster and segment."""
        first = self.sure_row[cix] < self.window_row  # none yet in this window
        if batch.t_max - self._sure_lo < self.slot_ms:  # none due by time: the first ones
            if not np.logical_or.reduce(first):
                return
            rows = g.starts[first]
        else:
            rows = self._due(cix, g, time_ms, first)
            if rows is None:
                return
        ps[rows] = 1.0
        at = g.order[rows]  # in the part
        sure = cix[g.group[rows]]
        self.sure_ms[sure] = time_ms[at]
        self.sure_row[sure] = self.rows + at
        self._sure_lo = min(self._sure_lo, batch.t_min)

    def _due(
        self, cix: np.ndarray, g: Groups, time_ms: np.ndarray, first: np.ndarray
    ) -> np.ndarray | None:
        """The grouped rows kept for certain when some cluster may be due by time: the
        first row of each cluster due by both spans, or first in the window (None:
        none)."""
        m = time_ms.size
        # A cluster whose rows in this part cannot pass both spans has none.
        late = cix[self.rows + m - 1 - self.sure_row[cix] >= self.slot_rows]
        if not first.any() and not (
            late.size and int(time_ms.max()) - int(self.sure_ms[late].min()) >= self.slot_ms
        ):
            self._sure_lo = int(self.sure_ms[: self._k].min())
            return None
        rows_cix = cix[g.group]
        sure_row = self.sure_row[rows_cix]
        due = (time_ms[g.order] - self.sure_ms[rows_cix] >= self.slot_ms) & (
            self.rows + g.order - sure_row >= self.slot_rows
        )
        due |= sure_row < self.window_row
        rows = due.nonzero()[0]
        if not rows.size:
            return None
        group = g.group[rows]
        head = np.empty(rows.size, bool)  # the first due row of each cluster
        head[0] = True
        np.not_equal(group[1:], group[:-1], out=head[1:])
        return rows[head]

    def _decay(self, rows: int, now_ms: int) -> None:
        """Ages the counts by `rows` rows or by the time since the last segment,
        whichever ages them less (the window is the longer of the two)."""
        elapsed_s = 0.0 if self.clock_ms is None else max(0, now_ms - self.clock_ms) / 1000
        factor = max(
            math.exp(-rows / self.config.window_rows), math.exp(-elapsed_s / self.config.window_s)
        )
        if factor < 1e-9:  # an exposure of one row would vanish beside a part's rows
            self._faded = True
        if factor < 1.0:
            self.counts *= factor
            self.exposure *= factor
            self.total *= factor

    def _begin_segment(self, now_ms: int) -> None:
        """Closes the last segment and sets the level of the next: the rate pays back the
        window's ledger over the rest of the window; the level shares the rate times N
        (times the gain) among the kinds that sent a row in the last segment (a kind that
        stopped would hold the level down for the others until its count decays)."""
        self._close_segment()
        if not self.rows:
            self.window_ms = now_ms
        self._segment_end = segment_end(self.rows)
        self._decay(self._segment_end - self.rows, now_ms)
        self.clock_ms = max(self.clock_ms or now_ms, now_ms)
        share = self.counts / np.maximum(self.exposure, SEGMENT_ROWS)
        # A kind is in the level if it sent a row in the last segment, or if its silence
        # since its last row is what its share predicts (a rare kind between two rows).
        self.in_level = (self.last_segment >= self.segments - 1) | (
            (self.rows - self.last_row) * share <= ACTIVE_GAP
        ) & (self.last_segment >= 0)  # slots not yet given to a cluster are not in it
        # Rows the window holds: N, and at least twice the rows seen so far, up to its
        # least span (a window seen for r rows is as likely as not to last r more).
        expect = max(
            self.total, float(min(2 * self.window_rows, self.window_rows_min)), self.window_rows
        )
        debt = self.fraction * self.window_rows - self.window_spent
        horizon = max(expect - self.window_rows, float(self._segment_end - self.rows))
        lo, hi = RATE_RANGE
        self.rate = min(hi * self.fraction, max(lo * self.fraction, self.fraction + debt / horizon))
        np.minimum(share, 1.0, out=share)
        self.level_counts = share * self.total
        if self._tails:  # read only where some cluster has a tail estimate
            rows_per_window = share * max(self.total, float(self.window_rows_min))
            self.tail_on = rows_per_window >= TAIL_MIN_WINDOW_ROWS
        self._set_levels()
        self.allowance = self._new_allowance()
        self.in_segment[:] = 0.0
        self.segments += 1

    def _set_levels(self) -> None:
        """The water level of each cluster for the segment: the rate times N (times the
        gain) shared among the kinds in the level. When the window pays back an excess
        (the rate below F), kinds under the steady level (F times N shared the same way)
        stay whole and the frequent kinds pay: a rare kind is never thinned because the
        window began with a burst."""
        counts = self.level_counts[self.in_level]
        ascending = self._sort_counts()  # (k',) the level's counts, ascending
        split = None  # no cluster with a tail stratum: the same as none split
        if self._tails and self.tail_on.any():  # without a tail estimate, none is split
            split = self.tail_on[self.in_level] & ~np.isnan(self.tail_at[self.in_level])
            if not split.any():
                split = None
        floor = P_FLOOR * self.fraction
        target = max(self.gain * self.rate * self.total, 1e-9)
        young = self.rate >= self.fraction or self.rows < SEGMENT_ROWS  # all look rare
        if split is not None:
            self._set_split_levels(counts, split, floor, target, young)
            return
        positive = ascending[np.searchsorted(ascending, 0.0, "right") :]
        total = float(counts[counts > 0].sum())  # in the clusters' order, as water_level
        if young:
            self.tau = sorted_level(total, positive, target, floor)
            self.level.fill(self.tau)
            return
        fair_target = max(self.gain * self.fraction * self.total, 1e-9)
        fair = sorted_level(total, positive, fair_target, floor)
        rare = counts <= fair
        rest = max(target - float(counts[rare].sum()), 1e-9)
        frequent = counts[~rare]
        total = float(frequent[frequent > 0].sum())
        frequent_sorted = positive[np.searchsorted(positive, fair, "right") :]
        self.tau = min(fair, sorted_level(total, frequent_sorted, rest, floor))
        self.level.fill(self.tau)
        self.level[self.in_level.nonzero()[0][rare]] = fair

    def _set_split_levels(
        self, counts: np.ndarray, split: np.ndarray, floor: float, target: float, young: bool
    ) -> None:
        """`_set_levels` where some clusters of the level have a tail stratum."""
        ascending = self._ascending()
        if young:
            self.tau = water_level(counts, target, floor, split, ascending)
            self.level.fill(self.tau)
            return
        fair_target = max(self.gain * self.fraction * self.total, 1e-9)
        fair = water_level(counts, fair_target, floor, split, ascending)
        rare = counts <= fair
        rest = max(target - float(counts[rare].sum()), 1e-9)
        rest_split = split[~rare]
        frequent = ~rare
        place = np.add.accumulate(frequent, dtype=np.int64) - 1  # index among the frequent
        rest_ascending = place[ascending[frequent[ascending]]]
        self.tau = min(fair, water_level(counts[~rare], rest, floor, rest_split, rest_ascending))
        self.level.fill(self.tau)
        self.level[np.flatnonzero(self.in_level)[rare]] = fair

    def _sort_counts(self) -> np.ndarray:
        """The level's counts (`level_counts[in_level]`) in ascending order, from the last
        segment's order of all clusters, sorted again (nearly sorted: a fast merge; the
        counts are not negative, so their bits as int64 sort alike)."""
        size = self.level_counts.size
        if self._order.size < size:  # clusters added since: at the end
            self._order = np.concatenate([self._order, np.arange(self._order.size, size)])
        counts = self.level_counts[self._order]
        by = counts.view(np.int64).argsort(kind="stable")
        self._order = self._order[by]
        return counts[by][self.in_level[self._order]]

    def _ascending(self) -> np.ndarray:
        """Indices that sort the level's counts (`level_counts[in_level]`), from the order
        `_sort_counts` left."""
        place = np.add.accumulate(self.in_level, dtype=np.int64) - 1
        return place[self._order[self.in_level[self._order]]]

    def _new_window(self, now_ms: int) -> None:
        """Starts the window's ledger afresh at the row now deciding: no debt nor credit
        is carried over, and the next part begins a segment."""
        length = self.window_len_ms
        self.window_ms = self.window_ms + length if now_ms < self.window_ms + 2 * length else now_ms
        self.window_row = self.rows
        self.window_rows = 0
        self.window_spent = 0.0
        self.new_demand = 0.0
        self._segment_end = self.rows

    @property
    def window_len_ms(self) -> int:
        """The window's least span of row time."""
        return int(self.config.window_s * 1000)

    @property
    def window_rows_min(self) -> int:
        """The window's least span of rows."""
        return self.config.window_rows

    def _new_allowance(self) -> float:
        """What kinds outside the level may spend in the window: `NEW_SHARE` of its
        budget (F times the rows a window holds, or has held so far if more)."""
        return NEW_SHARE * self.fraction * max(self.total, float(self.window_rows))

    def _account(self, rows: int, expected: float) -> None:
        """Moves the gain by the segment's share of the window's rows times its relative
        error (the rows of kinds in the level expected kept against the rate): it learns
        what the rule keeps beyond the level (sure rows, a long tail of kinds near it)."""
        if rows <= 0:
            return
        fair = self.rate * rows
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
        with self._lock:
            if len(source_names) == 1:  # the common case: no copies
                budget = self._budget(source_names[0])
                if budget is not None:
                    return budget.decide(ids, time_ms, latency)
                self._whole[source_names[0]] = self._whole.get(source_names[0], 0) + ids.size
                return Decisions(np.ones(ids.size, bool), np.ones(ids.size, np.float64))
            keep = np.ones(ids.size, bool)
            weight = np.ones(ids.size, np.float64)
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
