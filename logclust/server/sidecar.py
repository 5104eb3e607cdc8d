"""The sidecar's domain core: label batches, record latencies, answer queries, persist.

Wire types stay out of here: the gRPC servicer (`service.py`) converts requests into
these calls, and errors raised here are mapped to status codes in `errors.py`.
"""

from __future__ import annotations

import logging
import threading
import time

import pyarrow as pa

from logclust import arrow_io
from logclust.latency import DEFAULT_QUANTILES, LatencyBook
from logclust.metrics import Metrics
from logclust.server.config import ServerConfig
from logclust.store import StateStore, StoreDelta
from logclust.stream_clusters import ClusterStats, Embedder, StreamClusters

logger = logging.getLogger(__name__)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class Sidecar:
    """Labels batches and keeps per-cluster latency sketches, restored from `store`.

    Args:
        config: server settings.
        labeler: the embedder (`masker`, `dim`, `embed_masked`).
        store: where state is saved by `flush()` and loaded from at start.
        metrics: counters to update; None records nothing.
    """

    def __init__(
        self,
        config: ServerConfig,
        labeler: Embedder,
        store: StateStore,
        metrics: Metrics | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.metrics = metrics
        self.clusters = StreamClusters(labeler, config.clusters, config.max_sources)
        self.book = LatencyBook(
            window_ms=config.window_s * 1000,
            retention_ms=config.retention_s * 1000,
            relative_accuracy=config.relative_accuracy,
        )
        self._flush_lock = threading.Lock()
        snapshot = store.load_state()
        self.book.load(snapshot.sketches)
        self.clusters.load_states(snapshot.sources)
        logger.info(
            "restored %d latency windows and %d sources",
            len(snapshot.sketches),
            len(snapshot.sources),
        )

    def label_ipc(self, data: bytes) -> tuple[bytes, int]:
        """Decodes, validates and labels Arrow IPC bytes; returns IPC bytes and row count."""
        t0 = time.perf_counter()
        table = arrow_io.decode_ipc(data, self.config.max_rows_per_batch)
        out = self.label(table, t0)
        return arrow_io.encode_ipc(out), out.num_rows

    def label(self, table: pa.Table, started: float | None = None) -> pa.Table:
        """Labels a validated table: its columns plus `cluster_id` and `cluster_distance`."""
        started = time.perf_counter() if started is None else started
        now = now_ms()
        body = arrow_io.column_array(table, arrow_io.BODY)
        time_ms = arrow_io.time_ms_column(table, now)
        latency = arrow_io.latency_column(table)
        ids, dist, names, codes = self.clusters.label(body, arrow_io.source_column(table), time_ms)
        self.book.record(names, codes, ids, time_ms, latency, now)
        if self.metrics is not None:
            self.metrics.observe_batch(time.perf_counter() - started, names, codes, ids, latency)
        return arrow_io.with_labels(table, ids, dist)

    def latency(
        self,
        quantiles: list[float] | None = None,
        start_ms: int | None = None,
        end_ms: int | None = None,
        window_ms: int | None = None,
        source: str | None = None,
    ) -> pa.Table:
        """Per-cluster latency table (see `LatencyBook.query`)."""
        return self.book.query(
            quantiles or list(DEFAULT_QUANTILES), start_ms, end_ms, window_ms, source
        )

    def describe(self, source: str | None = None) -> list[tuple[str, ClusterStats]]:
        """Every cluster of `source` (all sources when None)."""
        return self.clusters.describe(source)

    def flush(self) -> None:
        """Saves what changed since the last flush and drops expired windows."""
        with self._flush_lock:
            cutoff = self.book.expire(now_ms())
            sketches = self.book.take_dirty()
            sources = self.clusters.take_dirty_states()
            try:
                self.store.save_state(StoreDelta(sketches, sources, cutoff))
            except Exception:
                # Keep the changes for the next attempt.
                self.book.mark_dirty(sketches)
                for name in sources:
                    self.clusters.sources[name].dirty = True
                raise
