"""Runs one source's consolidations: when, on which thread, and how far apart.

A consolidation is due after `consolidate_every_rows` rows (times the back-off) or
`consolidate_new_clusters` new clusters. It runs on a background thread unless
`background_consolidation` is false, spaced so that it takes at most
`consolidate_max_share` of the time. One that changes nothing doubles the rows to the next
one (up to `consolidate_backoff_max`), so a steady stream stops paying for it.

The runner holds the source's lock: `assign` and the swap of a consolidation's result take
it; the consolidation itself computes without it (`ConsolidationJob.run`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import numpy as np

from logclust.cluster.source import SourceClusterer
from logclust.cluster.threshold import ConsolidationJob

logger = logging.getLogger(__name__)


class ConsolidationRunner:
    """Serialises the calls to one source's clusterer and consolidates it when due.

    Args:
        clusterer: the source's clusterer; call it only with `lock` held.
        clock: monotonic seconds (`time.monotonic`; tests may give a fake).
    """

    def __init__(
        self, clusterer: SourceClusterer, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.clusterer = clusterer
        self.config = clusterer.config
        self.lock = threading.RLock()
        self._clock = clock
        self._thread: threading.Thread | None = None
        self._after = 0.0  # clock() before which no consolidation starts
        self._rows_since = 0
        self._new_since = 0
        self._backoff = 1

    def place(
        self, keys: list[str], embed: Callable[[np.ndarray], np.ndarray], inv: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """`SourceClusterer.place` under the lock."""
        clus = self.clusterer
        with self.lock:
            k0 = clus.k
            out = clus.place(keys, embed, inv)
            self._new_since += clus.k - k0  # a batch only opens clusters
        return out

    def count(self, keys: list[str], uid: np.ndarray, ids: np.ndarray, time_ms: np.ndarray) -> None:
        """`SourceClusterer.count` under the lock, then a consolidation if one is due."""
        with self.lock:
            self.clusterer.count(keys, uid, ids, time_ms)
            local = self.clusterer.local_ids
            if local is not None and local.name(keys, uid):
                self.clusterer.bump(model=True)  # new external ids: saved with the state
            self._rows_since += ids.size
            self._maybe_consolidate()

    def _maybe_consolidate(self) -> None:
        cfg = self.config
        due = self._rows_since >= cfg.consolidate_every_rows * self._backoff or (
            cfg.consolidate_new_clusters > 0 and self._new_since >= cfg.consolidate_new_clusters
        )
        busy = self._thread is not None and self._thread.is_alive()
        if not due or busy or self.clusterer.k == 0 or self._clock() < self._after:
            return
        self._rows_since = self._new_since = 0
        job = self.clusterer.consolidation_job()
        assert job is not None  # k > 0
        if cfg.background_consolidation:
            self._thread = threading.Thread(
                target=self._run,
                args=(job,),
                name=f"logclust-consolidate-{self.clusterer.source}",
                daemon=True,
            )
            self._thread.start()
        else:
            self._run(job)

    def consolidate_now(self) -> bool:
        """Runs one consolidation in this thread; True when it changed any cluster."""
        with self.lock:
            job = self.clusterer.consolidation_job()
        return job is not None and self._run(job)

    def _run(self, job: ConsolidationJob) -> bool:
        start = self._clock()
        try:
            done = job.run()
        except (ValueError, np.linalg.LinAlgError) as e:
            logger.error(
                "consolidation of source %r failed, keeping the model: %s",
                self.clusterer.source,
                e,
            )
            return False
        took = self._clock() - start
        share = self.config.consolidate_max_share
        with self.lock:
            self._after = self._clock() + took * (1.0 - share) / share
            self.clusterer.apply_consolidation(job, done)
            self._backoff = (
                1 if done.changed else min(2 * self._backoff, self.config.consolidate_backoff_max)
            )
        return done.changed

    def wait_for_consolidation(self, timeout: float | None = None) -> None:
        """Blocks until a running background consolidation finishes."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
