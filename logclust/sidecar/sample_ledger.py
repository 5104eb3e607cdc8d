"""The ledger of sampling by cluster (`logclust.sidecar.sampling`): each source's state
per cluster and per window, and what changes at a segment's start (the decay, the window's
rate, the water levels, the tail estimates and the controller). Pure arithmetic, no I/O
and no clock; the rule is in docs/sampling.md."""

from __future__ import annotations

import math

import numpy as np

from logclust.sidecar.config import SamplingConfig
from logclust.sidecar.sample_level import (
    BODY,
    SEGMENT_ROWS,
    STRATA,
    TAIL,
    phase_keys,
    segment_end,
    segment_quantiles,
    sorted_level,
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


class SegmentLedger:
    """The sampling state of one source: per cluster (decayed counts, exposure, level,
    tail estimate, phases, sure rows), the window's ledger and the controller, and what
    changes at each segment's start. `SourceBudget` decides rows with it.

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
        # (k,) enough rows per window for a tail stratum (kept once some cluster has a tail)
        self.tail_on = np.zeros(0, bool)
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

    def _grow(self, k: int) -> None:
        """Makes room for at least `k` clusters: each array grows by half its slots (at
        least 16), each slot with the value of one not yet given to a cluster."""
        grow = max(k - self.counts.size, 16, self.counts.size // 2)
        fills = {**_FILLS, "level": self.tau}
        for name, fill in fills.items():  # (k,) arrays, their fills
            old = getattr(self, name)
            setattr(self, name, np.concatenate([old, np.full(grow, fill, old.dtype)]))
        self.phases = np.concatenate([self.phases, np.zeros((STRATA, grow))], axis=1)

    def _close_segment(self) -> None:
        """At a segment's end: moves each cluster's tail estimate towards the segment's
        quantile and the controller's gain by the segment's error."""
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        rows, expected, measured = 0, 0.0, False
        for _, latency, level_rows, level_p in pending:  # summed in order, as sum() does
            rows += level_rows
            expected += level_p
            measured |= latency is not None
        self._account(rows, expected)
        if not measured:  # no latency: nothing to estimate
            return
        rows_cix = np.concatenate([part[0] for part in pending])
        latency = np.concatenate(
            [np.full(part[0].size, math.nan) if part[1] is None else part[1] for part in pending]
        )
        self._estimate_tails(rows_cix, latency)

    def _estimate_tails(self, rows_cix: np.ndarray, latency: np.ndarray) -> None:
        """Moves each cluster's tail estimate towards the quantile of the segment's rows
        (`rows_cix`, the cluster index of each, and their `latency`, NaN where none)."""
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

    def _decay(self, rows: int, now_ms: int) -> float:
        """The factor that ages the counts by `rows` rows or by the time since the last
        segment, whichever ages them less (the window is the longer of the two); the
        source's decayed rows aged by it (the clusters' counts by `_refresh`)."""
        elapsed_s = 0.0 if self.clock_ms is None else max(0, now_ms - self.clock_ms) / 1000
        factor = max(
            math.exp(-rows / self.config.window_rows), math.exp(-elapsed_s / self.config.window_s)
        )
        if factor < 1e-9:  # an exposure of one row would vanish beside a part's rows
            self._faded = True
        if factor < 1.0:
            self.total *= factor
        return factor

    def _begin_segment(self, now_ms: int) -> None:
        """Closes the last segment and sets the level of the next: the rate pays back the
        window's ledger over the rest of the window; the level shares the rate times N
        (times the gain) among the kinds that sent a row in the last segment (a kind that
        stopped would hold the level down for the others until its count decays)."""
        self._close_segment()
        if not self.rows:
            self.window_ms = now_ms
        self._segment_end = segment_end(self.rows)
        factor = self._decay(self._segment_end - self.rows, now_ms)
        self.clock_ms = max(self.clock_ms or now_ms, now_ms)
        # Rows the window holds: N, and at least twice the rows seen so far, up to its
        # least span (a window seen for r rows is as likely as not to last r more).
        expect = max(
            self.total, float(min(2 * self.window_rows, self.window_rows_min)), self.window_rows
        )
        debt = self.fraction * self.window_rows - self.window_spent
        horizon = max(expect - self.window_rows, float(self._segment_end - self.rows))
        lo, hi = RATE_RANGE
        self.rate = min(hi * self.fraction, max(lo * self.fraction, self.fraction + debt / horizon))
        self._refresh(factor)
        self.allowance = self._new_allowance()
        self.segments += 1

    def _refresh(self, factor: float) -> None:
        """The arrays at a segment's start: the counts aged by `factor`, the kinds in the
        level, their rows per window and tail flags, the levels (`_set_levels`), and no
        rows yet in the segment."""
        if factor < 1.0:
            self.counts *= factor
            self.exposure *= factor
        share = self.counts / np.maximum(self.exposure, SEGMENT_ROWS)
        # A kind is in the level if it sent a row in the last segment, or if its silence
        # since its last row is what its share predicts (a rare kind between two rows).
        self.in_level = (self.last_segment >= self.segments - 1) | (
            (self.rows - self.last_row) * share <= ACTIVE_GAP
        ) & (self.last_segment >= 0)  # slots not yet given to a cluster are not in it
        np.minimum(share, 1.0, out=share)
        self.level_counts = share * self.total
        if self._tails:  # read only where some cluster has a tail estimate
            rows_per_window = share * max(self.total, float(self.window_rows_min))
            self.tail_on = rows_per_window >= TAIL_MIN_WINDOW_ROWS
        self._set_levels()
        self.in_segment[:] = 0.0

    def _targets(self) -> tuple[float, float, float, bool]:
        """The least p, the rows the level keeps, those it keeps at F (the steady level),
        and whether every kind is shared the first (the window does not pay back, or
        the source is young: all its kinds look rare)."""
        floor = P_FLOOR * self.fraction
        target = max(self.gain * self.rate * self.total, 1e-9)
        fair_target = max(self.gain * self.fraction * self.total, 1e-9)
        young = self.rate >= self.fraction or self.rows < SEGMENT_ROWS
        return floor, target, fair_target, young

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
        floor, target, fair_target, young = self._targets()
        if split is not None:
            self._set_split_levels(counts, split, floor, target, fair_target, young)
            return
        positive = ascending[np.searchsorted(ascending, 0.0, "right") :]
        # Their sum in the clusters' order, as water_level sums them (no zero: the same)
        total = float((counts if positive.size == counts.size else counts[counts > 0]).sum())
        if young:
            self.tau = sorted_level(total, positive, target, floor)
            self.level.fill(self.tau)
            return
        fair = sorted_level(total, positive, fair_target, floor)
        rare = counts <= fair
        rest = max(target - float(counts[rare].sum()), 1e-9)
        total = float(counts[~rare].sum())  # all above fair >= 0: positive
        frequent_sorted = positive[np.searchsorted(positive, fair, "right") :]
        self.tau = min(fair, sorted_level(total, frequent_sorted, rest, floor))
        self.level.fill(self.tau)
        self.level[self.in_level.nonzero()[0][rare]] = fair

    def _set_split_levels(
        self,
        counts: np.ndarray,
        split: np.ndarray,
        floor: float,
        target: float,
        fair_target: float,
        young: bool,
    ) -> None:
        """`_set_levels` where some clusters of the level have a tail stratum (`floor`
        and the targets: `_targets`)."""
        ascending = self._ascending()
        if young:
            self.tau = water_level(counts, target, floor, split, ascending)
            self.level.fill(self.tau)
            return
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
        size = self._k  # slots not given to a cluster are in no level
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
