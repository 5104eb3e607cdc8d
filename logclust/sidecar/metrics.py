"""Prometheus metrics of the sidecar, served over HTTP.

* `logclust_rows_total{source}` and `logclust_batches_total`: work done.
* `logclust_errors_total{kind}`: failed calls by status (`invalid_argument`, ...).
* `logclust_batch_seconds`: time to label one batch (decode to encode).
* `logclust_request_latency_ms{source,cluster,group}`: histogram of the rows' `latency_ms`
  per cluster, with the cluster's group (sum by `group` for the group's latency). Label
  pairs are capped (`max_series`); rows of further clusters are counted under
  `cluster="other"` so a noisy stream cannot blow up the scrape.
* `logclust_late_rows_total` and `logclust_early_rows_total`: rows whose latency was not
  recorded because their time lies before the retention or too far in the future.
* `logclust_new_clusters_total{source}`: new kinds (`logclust.sidecar.activity`).
* `process_resident_memory_bytes` and the other `process_*` metrics of the process.
* `logclust_clusters{source}` (gauge) and `logclust_cluster_cap_hits_total{source}`: the
  clusters each source holds, and rows forced into a cluster because the source reached
  its `max_clusters` (read from the clusterer at scrape time).
* `logclust_flushes_total`: flushes of the state to the store that finished (a failing
  store shows as a counter that stops).

The per-cluster histogram is filled with numpy (one `searchsorted` and one `bincount` for
all the clusters of many batches: rows wait as arrays until 16,384 have come or a scrape
reads them) and exposed by a custom collector, because the client library's
`Histogram.observe` takes one value at a time.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping, Sequence

import numpy as np
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    ProcessCollector,
    start_http_server,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from logclust.cluster.local_ids import is_local_id
from logclust.latency.book import group_rows
from logclust.latency.pending import PENDING_ROWS, PendingRows

# Request latency buckets (ms): 0.1 ms to 10 s, roughly x2.5 apart.
LATENCY_BUCKETS_MS: tuple[float, ...] = (
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    25,
    50,
    100,
    250,
    500,
    1000,
    2500,
    5000,
    10000,
)
OTHER = "other"


class _ClusterLatencyCollector(Collector):
    """Bucket counts and sums of every (source, cluster) series, one row each of a
    table. Rows wait as arrays (`PendingRows`) until many have come or the series are
    read, then are bucketed together and added with one `np.add.at`."""

    def __init__(self, max_series: int, pending_rows: int = PENDING_ROWS) -> None:
        self.max_series = max_series
        self._bounds = np.asarray(LATENCY_BUCKETS_MS)
        self._rows: dict[tuple[str, str], int] = {}
        self._counts = np.zeros((0, len(self._bounds) + 1), np.int64)
        self._totals = np.zeros(0)
        self._pending = PendingRows(pending_rows)  # source, cluster id, latency
        # (source, cluster) -> its group, where not the cluster itself (a group is fixed
        # when the cluster opens, so one series keeps one group label).
        self._groups: dict[tuple[str, str], str] = {}
        self._lock = threading.Lock()

    def note_groups(
        self, source_names: Sequence[str], codes: np.ndarray, ids: np.ndarray, groups: np.ndarray
    ) -> None:
        """Records the group of each (source, cluster) of a batch whose group is not
        itself (bounded like the series)."""
        other = groups != ids
        if not other.any():
            return
        pairs = np.unique(np.stack([codes[other], ids[other], groups[other]]), axis=1)
        with self._lock:
            for code, cid, gid in pairs.T.tolist():
                if len(self._groups) < self.max_series:
                    name = source_names[code]
                    self._groups[(name, self._label(name, cid))] = self._label(name, gid)

    def observe(self, source: str, cluster: int, values: np.ndarray) -> None:
        """Adds the values of one series."""
        n = len(values)
        self.observe_rows([source], np.zeros(n, np.int64), np.full(n, cluster), values)

    def observe_rows(
        self,
        source_names: Sequence[str],
        source_codes: np.ndarray,
        cluster_ids: np.ndarray,
        values: np.ndarray,
    ) -> None:
        """Adds one value per row to series (`source_names[source_codes[i]]`,
        `cluster_ids[i]`)."""
        with self._lock:
            if self._pending.add(source_names, source_codes, values, cluster_ids):
                self._merge_pending()

    def _merge_pending(self) -> None:
        """Adds the waiting rows to the table (lock held): bucket counts of every
        (source, cluster) at once, one bincount over group * width + bucket."""
        taken = self._pending.take()
        if taken is None:
            return
        names, (src, cid, values) = taken
        groups, g = group_rows(src, cid)
        width = len(self._bounds) + 1
        # Bucket i counts values <= bounds[i] (Prometheus "le"); the last is +Inf.
        buckets = np.searchsorted(self._bounds, values, side="left")
        counts = np.bincount(g * width + buckets, minlength=len(groups) * width)
        totals = np.bincount(g, weights=values, minlength=len(groups))
        rows = [self._row(names[code], c) for code, c in groups.tolist()]
        np.add.at(self._counts, rows, counts.reshape(len(groups), width))
        np.add.at(self._totals, rows, totals)

    def _label(self, source: str, cluster: int) -> str:
        """The `cluster` (or `group`) label of an id: `local-<id>` for a local kind's
        external id under a fleet catalog (an id the same kind gets on every pod that met
        it through the same text), so a fleet sum can keep or leave out the kinds no
        catalog has yet (`cluster!~"local-.*"`); without a catalog ids are never such."""
        return f"local-{cluster}" if is_local_id(cluster) else str(cluster)

    def _row(self, source: str, cluster: int) -> int:
        """The table row of a series, added if new (lock held)."""
        key = (source, self._label(source, cluster))
        row = self._rows.get(key)
        if row is not None:
            return row
        if len(self._rows) >= self.max_series:
            # Over the cap: one overflow series per source (sources are capped too).
            key = (source, OTHER)
            row = self._rows.get(key)
            if row is not None:
                return row
        row = self._rows[key] = len(self._rows)
        if row >= len(self._counts):
            grow = max(64, len(self._counts))
            self._counts = np.concatenate(
                [self._counts, np.zeros((grow, self._counts.shape[1]), np.int64)]
            )
            self._totals = np.concatenate([self._totals, np.zeros(grow)])
        return row

    def collect(self) -> Iterator[Metric]:
        fam = HistogramMetricFamily(
            "logclust_request_latency_ms",
            "Request latency per cluster (ms).",
            labels=["source", "cluster", "group"],
        )
        with self._lock:
            self._merge_pending()
            for (source, cluster), row in sorted(self._rows.items()):
                cum = np.cumsum(self._counts[row])
                buckets = [(f"{b:g}", float(c)) for b, c in zip(self._bounds, cum, strict=False)]
                buckets.append(("+Inf", float(cum[-1])))
                group = self._groups.get((source, cluster), cluster)
                fam.add_metric([source, cluster, group], buckets, float(self._totals[row]))
        yield fam

    @property
    def series(self) -> int:
        with self._lock:
            self._merge_pending()
            return len(self._rows)

    def forget(self, source: str) -> None:
        """Drops every series of `source`."""
        with self._lock:
            self._merge_pending()
            kept = [(key, row) for key, row in self._rows.items() if key[0] != source]
            rows = [row for _, row in kept]
            self._counts = self._counts[rows]
            self._totals = self._totals[rows]
            self._rows = {key: i for i, (key, _) in enumerate(kept)}
            self._groups = {k: g for k, g in self._groups.items() if k[0] != source}


class _ClusterCountCollector(Collector):
    """Clusters and cap hits per source, asked of the clusterer at scrape time."""

    def __init__(self, read: Callable[[], Mapping[str, tuple[int, int]]]) -> None:
        self.read = read

    def collect(self) -> Iterator[Metric]:
        clusters = GaugeMetricFamily(
            "logclust_clusters", "Clusters held per source.", labels=["source"]
        )
        hits = CounterMetricFamily(
            "logclust_cluster_cap_hits",
            "Rows forced into a cluster because the source reached max_clusters.",
            labels=["source"],
        )
        for source, (k, cap_hits) in sorted(self.read().items()):
            clusters.add_metric([source], k)
            hits.add_metric([source], cap_hits)
        yield clusters
        yield hits


class _ReadCounter(Collector):
    def __init__(self, name: str, help_text: str, read: Callable[[], float]) -> None:
        self.name, self.help_text, self.read = name, help_text, read

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily(self.name, self.help_text, value=self.read())


class _PerSourceCounter(Collector):
    def __init__(self, name: str, help_text: str, read: Callable[[], Mapping[str, float]]) -> None:
        self.name, self.help_text, self.read = name, help_text, read

    def collect(self) -> Iterator[Metric]:
        fam = CounterMetricFamily(self.name, self.help_text, labels=["source"])
        for source, value in sorted(self.read().items()):
            fam.add_metric([source], value)
        yield fam


class Metrics:
    """The sidecar's metrics in their own registry (several servers per process in tests).

    Args:
        max_series: cap on (source, cluster) pairs of the latency histogram.
    """

    def __init__(self, max_series: int = 200) -> None:
        self.registry = CollectorRegistry()
        self.rows = Counter("logclust_rows", "Rows labelled.", ["source"], registry=self.registry)
        self.batches = Counter("logclust_batches", "Batches labelled.", registry=self.registry)
        self.errors = Counter(
            "logclust_errors", "Failed calls by status.", ["kind"], registry=self.registry
        )
        self.batch_seconds = Histogram(
            "logclust_batch_seconds",
            "Time to label one batch.",
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        self.cluster_latency = _ClusterLatencyCollector(max_series)
        self.registry.register(self.cluster_latency)
        # process_resident_memory_bytes, process_cpu_seconds_total, ... (Linux /proc).
        ProcessCollector(registry=self.registry)
        self._http: object | None = None
        self.port: int | None = None

    def observe_batch(
        self,
        seconds: float,
        source_names: Sequence[str],
        source_codes: np.ndarray,
        cluster_ids: np.ndarray,
        latency_ms: np.ndarray,
        group_ids: np.ndarray | None = None,
    ) -> None:
        """Records one labelled batch; NaN latencies (not measured) are skipped."""
        self.batches.inc()
        self.batch_seconds.observe(seconds)
        per_source = np.bincount(source_codes, minlength=len(source_names))
        for name, n in zip(source_names, per_source.tolist(), strict=True):
            if n:
                self.rows.labels(source=name).inc(n)
        measured = ~np.isnan(latency_ms)
        if group_ids is not None:
            self.cluster_latency.note_groups(source_names, source_codes, cluster_ids, group_ids)
        if measured.any():
            self.cluster_latency.observe_rows(
                source_names,
                source_codes[measured],
                cluster_ids[measured],
                latency_ms[measured],
            )

    def watch_counter(self, name: str, help_text: str, read: Callable[[], float]) -> None:
        """Exports counter `name` (`<name>_total`) whose value `read()` gives at scrape time."""
        self.registry.register(_ReadCounter(name, help_text, read))

    def watch_per_source(
        self, name: str, help_text: str, read: Callable[[], Mapping[str, float]]
    ) -> None:
        """Exports counter `name` (`<name>_total{source}`) from `read()` (source ->
        value) at scrape time."""
        self.registry.register(_PerSourceCounter(name, help_text, read))

    def watch_clusters(self, read: Callable[[], Mapping[str, tuple[int, int]]]) -> None:
        """Exports `read()` (source -> (clusters, cap hits)) at every scrape."""
        self.registry.register(_ClusterCountCollector(read))

    def forget_source(self, source: str) -> None:
        """Drops the series of a forgotten or evicted source (a slot's metrics are not
        held for good either)."""
        self.rows.remove(source)  # a no-op when none was counted
        self.cluster_latency.forget(source)

    def on_error(self, kind: str) -> None:
        self.errors.labels(kind=kind).inc()

    def start_http(self, port: int, addr: str = "127.0.0.1") -> int:
        """Serves /metrics on `port` (0: a free one); returns the bound port."""
        server, _thread = start_http_server(port, addr=addr, registry=self.registry)
        self._http = server
        self.port = int(server.server_port)
        return self.port

    def stop_http(self) -> None:
        if self._http is not None:
            self._http.shutdown()  # type: ignore[attr-defined]
            self._http.server_close()  # type: ignore[attr-defined]
            self._http = None
