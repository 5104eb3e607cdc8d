"""Sampling by cluster with its per-row loops compiled: `CompiledBudget` decides exactly the
rows `SourceBudget` (numpy, `logclust.sidecar.sample_rows`) decides, bit for bit, in a
fraction of its time.

The loops are the C extension `logclust.sidecar._sample_kernel`, built with the package
where a C compiler is at hand (`pip install .`; `setup.py` marks it optional). Where it is
absent, `compiled()` is None and the sampler runs the numpy reference. Python keeps the
state, the windows, the ledger's scalars and what is rare (a new kind's index and phases,
levels with tail strata); each part of a segment is one call (`part`: grouping by cluster,
p, kinds outside the level, strata, sure rows, the draw, the counts) and each segment's
start another (`segment`: the decay, the level's kinds, their order and levels).
"""

from __future__ import annotations

import os
from types import ModuleType

import numpy as np

from logclust.sidecar import sample_ledger, sample_level
from logclust.sidecar.sample_level import stratum_phases
from logclust.sidecar.sample_rows import Decisions, SourceBudget

# LOGCLUST_SAMPLER=numpy runs the numpy reference even where the kernel is built.
SAMPLER_ENV = "LOGCLUST_SAMPLER"
# The kernel's calls as this module makes them: a kernel built from another version of
# _sample_kernel.c (a checkout not built again) is not used.
KERNEL_VERSION = 1


def _load() -> ModuleType | None:
    """The kernel, when built, of this module's version and with the constants of this
    checkout."""
    if os.environ.get(SAMPLER_ENV, "") == "numpy":
        return None
    try:
        from logclust.sidecar import _sample_kernel as kernel  # type: ignore[attr-defined]
    except ImportError:  # not built (no compiler): the numpy reference decides
        return None
    same = (
        getattr(kernel, "VERSION", None) == KERNEL_VERSION
        and kernel.SEGMENT_ROWS == sample_level.SEGMENT_ROWS
        and kernel.TAIL_QUANTILE == sample_level.TAIL_QUANTILE
        and kernel.TAIL_BOOST == sample_level.TAIL_BOOST
        and kernel.NO_LATENCY == sample_level.NO_LATENCY
        and kernel.ACTIVE_GAP == sample_ledger.ACTIVE_GAP
        and kernel.TAIL_MIN_WINDOW_ROWS == sample_ledger.TAIL_MIN_WINDOW_ROWS
    )
    return kernel if same else None


_KERNEL = _load()


def compiled() -> ModuleType | None:
    """The compiled kernel, or None where it is not built (or is turned off)."""
    return _KERNEL


class CompiledBudget(SourceBudget):
    """`SourceBudget` with the per-row work in compiled loops (the same arguments, the same
    decisions). Batches with negative cluster ids go to the numpy reference."""

    # The per-cluster arrays the kernel's `part` takes, in its order; None after any of
    # them is replaced (they grow by new arrays; the kernel writes in place).
    _arrays: tuple[np.ndarray, ...] | None = None

    def decide(self, ids: np.ndarray, time_ms: np.ndarray, latency: np.ndarray) -> Decisions:
        """Keeps or drops each row of this source, in stream order (as
        `SourceBudget.decide`)."""
        n = ids.size
        if not n or ids.dtype.kind not in "iu":
            return super().decide(ids, time_ms, latency)
        assert _KERNEL is not None
        try:  # the arrays as the kernel takes them (contiguous int32/int64, int64, float64)
            least, most, t_min, t_max = _KERNEL.scan(ids, time_ms, latency)
        except ValueError:  # of another type or layout: converted once
            ids = np.ascontiguousarray(ids, np.int64 if ids.dtype != np.int32 else np.int32)
            time_ms = np.ascontiguousarray(time_ms, np.int64)
            latency = np.ascontiguousarray(latency, np.float64)
            least, most, t_min, t_max = _KERNEL.scan(ids, time_ms, latency)
        if least < 0:
            return super().decide(ids, time_ms, latency)
        if self._grow_lut(most + 1):  # as the reference grows it (ids index it)
            self._arrays = None
        keep = np.empty(n, bool)
        weight = np.empty(n, np.float64)
        kept = 0
        for start, stop in self._parts(time_ms, t_max):
            kept += self._part(ids, time_ms, latency, start, stop, keep, weight, t_min, t_max)
        self.kept += kept
        self.dropped += n - kept
        return Decisions(keep, weight)

    def _part(
        self,
        ids: np.ndarray,
        time_ms: np.ndarray,
        latency: np.ndarray,
        start: int,
        stop: int,
        keep: np.ndarray,
        weight: np.ndarray,
        t_min: int,
        t_max: int,
    ) -> int:
        """Decides rows `start:stop` (within one segment) into `keep` and `weight`, as
        `SourceBudget._segment`; returns the rows kept."""
        if self.rows == self._segment_end:  # a segment begins
            self._begin_segment(int(time_ms[start]))
        m = stop - start
        rows_cix = np.empty(m, np.int64)
        latency_grouped = np.empty(m)
        k_before = self._k
        arrays = (ids, time_ms, latency, start, stop, keep, weight, rows_cix, latency_grouped)
        out = self._call_part(arrays, t_max, k_before)
        if out is None:  # kinds without an index: give them one
            self._add_kinds(ids[start:stop])
            out = self._call_part(arrays, t_max, k_before)
            assert out is not None, "every kind of the part has an index"
        kept, expected, level_rows, level_p, sure, self.new_demand, sure_ms, measured = out
        if sure == 1:
            self._sure_lo = sure_ms
        elif sure == 2:
            self._sure_lo = min(self._sure_lo, t_min)
        self.rows += m
        self.total += m
        self.window_rows += m
        self.window_spent += expected
        self._pending.append((rows_cix, latency_grouped if measured else None, level_rows, level_p))
        return int(kept)

    def _call_part(
        self, arrays: tuple[object, ...], t_max: int, k_before: int
    ) -> tuple[int, float, int, float, int, float, int, bool] | None:
        """One call of the kernel's `part` on the part's `arrays` (the batch's ids, times
        and latencies, start, stop, keep, weight, and the grouped rows' cluster indices
        and latencies to fill) and this source's state; None where a kind of the part has
        no index yet (nothing changed)."""
        assert _KERNEL is not None
        state = self._arrays
        if state is None:  # the arrays were replaced (grown): gathered again
            state = self._arrays = (
                self._lut, self.counts, self.exposure, self.in_segment, self.last_segment,
                self.last_row, self.sure_ms, self.sure_row, self.level_counts, self.level,
                self.in_level, self.tail_on, self.tail_at, self.phases,
            )  # fmt: skip
        return _KERNEL.part(  # type: ignore[no-any-return]
            *arrays,
            *state,
            self._k, k_before, self.rows, self.segments, self.window_row, self.slot_ms,
            self.slot_rows, t_max - self._sure_lo < self.slot_ms,
            sample_ledger.P_FLOOR * self.fraction, self.rate, self.allowance, self.new_demand,
            self._tails, self._faded,
        )  # fmt: skip

    def _grow(self, k: int) -> None:
        """`SegmentLedger._grow`, and the kernel's arrays gathered again."""
        super()._grow(k)
        self._arrays = None

    def _add_kinds(self, ids: np.ndarray) -> None:
        """Gives the kinds among `ids` (within the table) without one an index (count 0,
        their own seeded phases), in ascending id, as `SourceBudget._index_of` does."""
        new_ids = np.unique(ids[self._lut[ids] < 0]).astype(np.int64)
        k = self._k + new_ids.size
        self._lut[new_ids] = np.arange(self._k, k)
        if k > self.counts.size:
            self._grow(k)
        self.phases[:, self._k : k] = stratum_phases(self._phase_keys, new_ids).T
        self._k = k

    def _refresh(self, factor: float) -> None:
        """The arrays at a segment's start (`SegmentLedger._refresh`), in one call; the
        levels of a segment where some kind has a tail stratum in numpy."""
        assert _KERNEL is not None
        if self._order.size < self._k:  # clusters added since: at the end
            self._order = np.concatenate([self._order, np.arange(self._order.size, self._k)])
        floor, target, fair_target, young = self._targets()
        tau = _KERNEL.segment(
            self.counts, self.exposure, self.last_segment, self.last_row, self.in_level,
            self.level_counts, self.tail_on, self.tail_at, self.in_segment, self.level,
            self._order, self._k, factor, self.segments, self.rows, self.total, self._tails,
            float(self.window_rows_min), young, target, fair_target, floor,
        )  # fmt: skip
        if tau is not None:
            self.tau = tau
            return
        counts = self.level_counts[self.in_level]
        split = self.tail_on[self.in_level] & ~np.isnan(self.tail_at[self.in_level])
        self._set_split_levels(counts, split, floor, target, fair_target, young)
