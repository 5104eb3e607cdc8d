"""Sampling by cluster with its per-row loops compiled: `CompiledBudget` decides exactly the
rows `SourceBudget` (numpy, `logclust.sidecar.sample_rows`) decides, bit for bit, in a
fraction of its time.

The loops are the C extension `logclust.sidecar._sample_kernel`, built with the package
where a C compiler is at hand (`pip install .`; `setup.py` marks it optional). Where it is
absent, `compiled()` is None and the sampler runs the numpy reference. Each batch is one
call (`decide`): the kernel walks the batch's parts and windows, starts each segment (the
close of the last, its tail estimates included; the decay, the level's kinds, their order
and the water levels, split ones included), decides each part's rows (grouping by cluster,
p, kinds outside the level, strata, sure rows, the draw, the counts) into scratch arrays the
budget allocates once, and steps the ledger's numbers: slots of two small arrays
(`INT_NUMBERS`, `FLOAT_NUMBERS`) that the budget's attributes of those names read and write,
so the kernel reads them at the call's start and writes them back at its end in place. It
keeps its views of the budget's arrays from call to call (an array the budget replaced is
viewed and checked again), and its own scratch lasts from call to call: a batch allocates
nothing but its two answer columns, which the kernel makes itself (numpy.empty, called from
C) and hands back in a `Decisions`, a tuple it builds as `tuple.__new__` does (`bind` gives
it the type at load): no Python runs between the budget's call and its answer. What is
rare it hands back to the budget's Python methods: a new kind's index and phases
(`_add_kinds`), a larger id table (`_grow_lut`), and a segment's start after new kinds
(`_begin_segment`: the counts' order grows). `segment` and `part` remain callable alone, as
the Python path and tests use them.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from types import ModuleType

import numpy as np

from logclust.sidecar import sample_ledger, sample_level
from logclust.sidecar.config import SamplingConfig
from logclust.sidecar.sample_level import SEGMENT_ROWS, stratum_phases
from logclust.sidecar.sample_rows import Decisions, SourceBudget

# LOGCLUST_SAMPLER=numpy runs the numpy reference even where the kernel is built.
SAMPLER_ENV = "LOGCLUST_SAMPLER"
# The kernel's calls as this module makes them: a kernel built from another version of
# _sample_kernel.c (a checkout not built again) is not used.
KERNEL_VERSION = 4
# The ledger's numbers the kernel steps, in the order of their slots in the budget's
# `_ints` (int64) and `_floats` (float64); each an attribute of `CompiledBudget` that reads
# and writes its slot. `_has_clock` and `_sure_lo_inf` say whether `clock_ms` is set and
# whether `_sure_lo` is infinite (None and inf have no int64).
INT_NUMBERS = (
    "_k", "rows", "segments", "window_ms", "window_row", "window_rows", "_segment_end",
    "clock_ms", "_has_clock", "_sure_lo", "_sure_lo_inf", "_seg_fill", "_seg_rows",
    "_seg_measured", "_tails", "_faded", "slot_ms", "slot_rows", "_window_len_ms",
    "_window_rows_min", "kept", "dropped",
)  # fmt: skip
FLOAT_NUMBERS = (
    "_seg_p", "total", "window_spent", "new_demand", "rate", "allowance", "gain", "tau",
    "fraction", "_window_s",
)  # fmt: skip
_BOOLS = ("_seg_measured", "_tails", "_faded")


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
        and kernel.FIRST_SEGMENT_ROWS == sample_level.FIRST_SEGMENT_ROWS
        and kernel.P_FLOOR == sample_ledger.P_FLOOR
        and kernel.NEW_SHARE == sample_ledger.NEW_SHARE
        and kernel.CONTROL_RATE == sample_ledger.CONTROL_RATE
        and kernel.CONTROL_CLIP == sample_ledger.CONTROL_CLIP
        and kernel.GAIN_RANGE == sample_ledger.GAIN_RANGE
        and kernel.RATE_RANGE == sample_ledger.RATE_RANGE
        and kernel.TAIL_MEMORY_ROWS == sample_ledger.TAIL_MEMORY_ROWS
        and kernel.TAIL_MIN_ROWS == sample_ledger.TAIL_MIN_ROWS
        and kernel.INT_NUMBERS == INT_NUMBERS
        and kernel.FLOAT_NUMBERS == FLOAT_NUMBERS
    )
    if not same:
        return None
    kernel.bind(Decisions)  # `decide` answers with this checkout's Decisions
    return kernel


_KERNEL = _load()


# The kernel's batch call, looked up once (None: not built; `CompiledBudget` then unused):
# `Decisions`, or an int where it decided nothing (`CompiledBudget._decide_other`).
_decide: Callable[..., Decisions | int] | None = None if _KERNEL is None else _KERNEL.decide


def compiled() -> ModuleType | None:
    """The compiled kernel, or None where it is not built (or is turned off)."""
    return _KERNEL


class CompiledBudget(SourceBudget):
    """`SourceBudget` with the per-row work in compiled loops (the same arguments, the same
    decisions). Batches with negative cluster ids go to the numpy reference."""

    def __init__(self, fraction: float, config: SamplingConfig, key: int) -> None:
        # The ledger's numbers, in the slots the kernel reads (INT_NUMBERS, FLOAT_NUMBERS):
        # before the ledger's own start sets them.
        self._ints = np.zeros(len(INT_NUMBERS), np.int64)
        self._floats = np.zeros(len(FLOAT_NUMBERS))
        super().__init__(fraction, config, key)
        # The current segment's parts as the kernel leaves them for `_close_segment`: each
        # grouped row's cluster index and latency (a segment holds at most SEGMENT_ROWS
        # rows), how many, the rows of kinds in the level and their sum of p, and whether
        # any latency was measured; reused from segment to segment.
        self._seg_cix = np.zeros(SEGMENT_ROWS, np.int64)
        self._seg_lat = np.zeros(SEGMENT_ROWS)
        self._seg_fill = 0
        self._seg_rows = 0
        self._seg_p = 0.0
        self._seg_measured = False
        # The kernel's views of the arrays above, kept from call to call (a capsule it
        # makes on its first call; an array replaced here is viewed again).
        self._views: object = None
        # The windows' spans, as the kernel reads them.
        self._window_len_ms = self.window_len_ms
        self._window_rows_min = self.window_rows_min
        self._window_s = float(config.window_s)

    def decide(self, ids: np.ndarray, time_ms: np.ndarray, latency: np.ndarray) -> Decisions:
        """Keeps or drops each row of this source, in stream order (as
        `SourceBudget.decide`), in one call of the kernel per batch (which allocates the
        answer's arrays and makes the `Decisions`)."""
        assert _decide is not None
        got = _decide(self, ids, time_ms, latency)
        if got.__class__ is int:  # nothing decided: the arrays of another kind, or negative ids
            return self._decide_other(got, ids, time_ms, latency)  # type: ignore[arg-type]
        return got  # type: ignore[return-value]

    def _decide_other(
        self, why: int, ids: np.ndarray, time_ms: np.ndarray, latency: np.ndarray
    ) -> Decisions:
        """A batch the kernel did not take (`why`): no rows or ids that are not integers
        and negative ids go to the numpy reference; arrays of another type or layout are
        converted once and given to the kernel again."""
        assert _KERNEL is not None
        if why == _KERNEL.OTHER_ARRAYS:
            if not ids.size or ids.dtype.kind not in "iu":
                return super().decide(ids, time_ms, latency)
            ids = np.ascontiguousarray(ids, np.int64 if ids.dtype != np.int32 else np.int32)
            time_ms = np.ascontiguousarray(time_ms, np.int64)
            latency = np.ascontiguousarray(latency, np.float64)
            got = _KERNEL.decide(self, ids, time_ms, latency)
            if got.__class__ is not int:
                return got  # type: ignore[no-any-return]
        # negative ids (the kernel's only other answer once the arrays are of its kinds)
        return super().decide(ids, time_ms, latency)

    def _close_segment(self) -> None:
        """`SegmentLedger._close_segment` on the parts the kernel left in the segment's
        scratch (the same rows, sums and latencies, in the same order)."""
        fill = self._seg_fill
        if not fill:
            return
        measured = self._seg_measured
        self._account(self._seg_rows, self._seg_p)
        self._seg_fill, self._seg_rows, self._seg_p, self._seg_measured = 0, 0, 0.0, False
        if measured:
            self._estimate_tails(self._seg_cix[:fill], self._seg_lat[:fill])

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
        if tau is None:
            self._split_levels()
        else:
            self.tau = tau

    def _split_levels(self) -> None:
        """The levels of a segment where some cluster of the level has a tail stratum, in
        numpy (`SegmentLedger._set_split_levels`), once the kernel has set the arrays."""
        floor, target, fair_target, young = self._targets()
        counts = self.level_counts[self.in_level]
        split = self.tail_on[self.in_level] & ~np.isnan(self.tail_at[self.in_level])
        self._set_split_levels(counts, split, floor, target, fair_target, young)


def _int_slot(i: int, name: str) -> property:
    """The attribute of int64 slot `i`: an int (a bool for flags; None for `clock_ms`
    unset, inf for `_sure_lo` unset, as the reference keeps them)."""
    if name in _BOOLS:
        return property(lambda s: bool(s._ints.item(i)), lambda s, v: s._ints.__setitem__(i, v))
    if name in ("clock_ms", "_sure_lo"):
        flag = INT_NUMBERS.index("_has_clock" if name == "clock_ms" else "_sure_lo_inf")
        unset, unset_flag = (None, 0) if name == "clock_ms" else (math.inf, 1)

        def get(s: CompiledBudget) -> int | float | None:
            return unset if s._ints.item(flag) == unset_flag else s._ints.item(i)

        def put(s: CompiledBudget, v: int | float | None) -> None:
            gone = v is None or v == math.inf
            s._ints[flag] = unset_flag if gone else 1 - unset_flag
            s._ints[i] = 0 if gone else int(v)  # type: ignore[arg-type]

        return property(get, put)
    return property(lambda s: s._ints.item(i), lambda s, v: s._ints.__setitem__(i, v))


def _float_slot(i: int) -> property:
    """The attribute of float64 slot `i`, a float."""
    return property(lambda s: s._floats.item(i), lambda s, v: s._floats.__setitem__(i, v))


for _i, _name in enumerate(INT_NUMBERS):
    if not _name.startswith(("_has_", "_sure_lo_inf")):
        setattr(CompiledBudget, _name, _int_slot(_i, _name))
for _i, _name in enumerate(FLOAT_NUMBERS):
    setattr(CompiledBudget, _name, _float_slot(_i))
