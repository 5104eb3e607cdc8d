"""Sampling by cluster, row by row: the decisions of one source's rows in segments
(`SourceBudget`), in numpy. The rule is in `logclust.sidecar.sampling` and docs/sampling.md;
`logclust.sidecar.sample_compiled` does the same per-row work in compiled loops, and this
module is its reference: both decide the same rows, bit for bit."""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import numpy as np

from logclust.sidecar.sample_ledger import P_FLOOR, SegmentLedger
from logclust.sidecar.sample_level import (
    NO_LATENCY,
    SEGMENT_ROWS,
    Groups,
    segment_end,
    sort_key,
    stratum_phases,
    tilt,
)

# 0, 1, 2, ...: a row's position in its part (a part lies within one segment).
_POSITIONS = np.arange(SEGMENT_ROWS)


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


class Decisions(NamedTuple):
    """The sampling of one batch, in row order. A tuple, which the compiled kernel makes
    as it answers (`logclust.sidecar.sample_compiled`): no Python call per batch.

    Attributes:
        keep: `(n,)` bool, whether the row is kept.
        weight: `(n,)` float64, the rows a kept row stands for (1/p); 0 for dropped rows.
    """

    keep: np.ndarray
    weight: np.ndarray


class SourceBudget(SegmentLedger):
    """Decides the rows of one source, in segments, on the ledger it keeps
    (`SegmentLedger`: the same arguments)."""

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
        self._grow_lut(batch.top)
        for start, stop in self._parts(time_ms, batch.t_max):
            self._segment(batch, start, stop, keep[start:stop], weight[start:stop])
        kept = int(np.add.reduce(keep, dtype=np.intp))
        self.kept += kept
        self.dropped += n - kept
        return Decisions(keep, weight)

    def _grow_lut(self, top: int) -> bool:
        """Makes the id -> index table hold ids below `top` (ids are small non-negative
        ints: a dense table); whether it grew."""
        if top <= self._lut.size:
            return False
        more = np.full(max(top, 2 * self._lut.size), -1)
        self._lut = np.concatenate([self._lut, more])
        return True

    def _parts(self, time_ms: np.ndarray, t_max: int) -> Iterator[tuple[int, int]]:
        """`(start, stop)` of each part of a batch, in order: each within one segment, and
        a window that ends in the batch turned at its first row. The caller decides each
        part (which moves `rows` on) before the next is drawn."""
        n = time_ms.size
        # No window can end in this batch while its last row is within the window's time.
        turns = t_max - self.window_ms >= self.window_len_ms
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
                        turns = t_max - self.window_ms >= self.window_len_ms
                    else:
                        stop = at
            yield start, stop
            start = stop

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
        seen = np.add(offset, _POSITIONS[:m], out=offset)  # its rows before it
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
        moved = phase + (edges[1:] - edges[:-1])  # not negative: x - floor(x) is x mod 1
        phases[cix] = moved - np.floor(moved)
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
            self._grow(k)
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
