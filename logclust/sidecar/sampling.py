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

Each source's rows are decided by a `CompiledBudget` (`logclust.sidecar.sample_compiled`,
the per-row loops in C) where its extension is built, else by the numpy reference
`SourceBudget` (`logclust.sidecar.sample_rows`): the same rows, bit for bit.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

import numpy as np

from logclust.sidecar.config import SamplingConfig
from logclust.sidecar.sample_compiled import SAMPLER_ENV, CompiledBudget, compiled
from logclust.sidecar.sample_level import source_key
from logclust.sidecar.sample_rows import Decisions, SourceBudget

__all__ = ["Decisions", "Sampler", "SourceBudget"]

logger = logging.getLogger(__name__)


class Sampler:
    """The budgets of every source: decisions for whole batches. Thread-safe.

    Args:
        config: the budgets (`fraction`, `source_fractions`), windows, slot and seed.
        compiled_loops: decide with the compiled loops where they are built
            (`CompiledBudget`); False: always with the numpy reference. The same rows.
    """

    def __init__(self, config: SamplingConfig, compiled_loops: bool = True) -> None:
        self.config = config
        self.compiled_loops = compiled_loops and compiled() is not None
        if compiled_loops and not self.compiled_loops and config.enabled:
            logger.warning(
                "Sampling runs its numpy reference, about 4x the CPU of the compiled loops: "
                "logclust.sidecar._sample_kernel is not built (a C compiler at install) or "
                "%s=numpy. The same rows are kept.",
                SAMPLER_ENV,
            )
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
                name = source_names[0]
                budget = self._budget(name)
                if budget is None:
                    self._whole[name] = self._whole.get(name, 0) + ids.size
                    return Decisions(np.ones(ids.size, bool), np.ones(ids.size, np.float64))
                return budget.decide(ids, time_ms, latency)
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
            kind = CompiledBudget if self.compiled_loops else SourceBudget  # the same rows
            budget = self._budgets[source] = kind(fraction, self.config, key)
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
