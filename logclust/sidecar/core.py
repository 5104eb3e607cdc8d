"""The sidecar's domain core: a `StreamLabeler` plus persistence, metrics and Arrow IPC.

Wire types stay out of here: the gRPC servicer (`logclust.server.service`) converts
requests into these calls, and errors raised here are mapped to status codes in
`logclust.rpc.errors`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
from collections.abc import Callable

import numpy as np
import pyarrow as pa

import logclust.turns as turns
from logclust.cluster.descriptions import ClusterStats
from logclust.cluster.router import encoded_sources
from logclust.sidecar.activity import ClusterActivity, ClusterView, NewKind
from logclust.sidecar.metrics import Metrics
from logclust.sidecar.sample_metrics import SampledRowsCollector
from logclust.sidecar.store import StateStore, StoreDelta
from logclust.sidecar.stream_labeler import StreamLabeler, now_ms
from logclust.wire import contract, ipc

logger = logging.getLogger(__name__)

# Bytes a labelled row adds to the answer: int32 + float32 + int64 (group_id) and their
# share of padding.
RESPONSE_BYTES_PER_ROW = 24
# And with a storage budget: a bit of `keep` and the float64 `sample_weight`, rounded up.
SAMPLE_BYTES_PER_ROW = 9
# Bytes an answer's batch may add besides its rows: the output fields' metadata.
RESPONSE_BYTES_PER_BATCH = 512


def answer_bytes(table: pa.Table, header_bytes: int = 0) -> int:
    """An upper bound of the IPC bytes of `table`'s labelled answer, known before labelling.

    The caller's columns are re-encoded uncompressed, so a small compressed request can
    answer megabytes: each batch is measured as it will be written
    (`pa.ipc.get_record_batch_size`, nothing copied), plus `RESPONSE_BYTES_PER_ROW` a row
    for the labels and `header_bytes` for the header columns of log formats.
    """
    batches = table.to_batches()
    body = sum(pa.ipc.get_record_batch_size(b) for b in batches)
    schema = table.schema.serialize().size + RESPONSE_BYTES_PER_BATCH
    return (
        schema
        + body
        + RESPONSE_BYTES_PER_ROW * table.num_rows
        + RESPONSE_BYTES_PER_BATCH * len(batches)
        + header_bytes
    )


class Sidecar:
    """Labels batches through `labeler` and saves its state to `store`, restored at start.

    Args:
        labeler: the in-process labeler (clusters per source, latency sketches).
        store: where state is saved by `flush()` and loaded from at start.
        metrics: counters to update; None records nothing.
    """

    def __init__(
        self, labeler: StreamLabeler, store: StateStore, metrics: Metrics | None = None
    ) -> None:
        self.labeler = labeler
        self.config = labeler.config
        self.store = store
        self.metrics = metrics
        # Batches not labelled because their caller had left (see `label`).
        self.abandoned_batches = 0
        self.activity = ClusterActivity(
            self.config.rate_window_s * 1000, self.config.new_kind_grace_s * 1000
        )
        if metrics is not None:
            book = labeler.book
            metrics.watch_per_source(
                "logclust_new_clusters",
                "Clusters first seen after their source's start-up (new kinds).",
                self.activity.new_counts,
            )
            metrics.watch_clusters(labeler.stream.counts)
            metrics.watch_counter(
                "logclust_late_rows",
                "Rows older than the retention (latency not recorded).",
                lambda: book.late_rows,
            )
            metrics.watch_counter(
                "logclust_early_rows",
                "Rows dated too far in the future (latency not recorded).",
                lambda: book.early_rows,
            )
            metrics.watch_counter(
                "logclust_latency_over_max_rows",
                "Rows whose latency exceeded max_latency_ms (labelled, latency not recorded).",
                lambda: book.over_max_rows,
            )
            metrics.watch_counter(
                "logclust_abandoned_batches",
                "Batches not labelled nor recorded: their caller had left (deadline, cancel).",
                lambda: self.abandoned_batches,
            )
            metrics.watch_counter(
                "logclust_latency_sketches_evicted",
                "Latency windows dropped from memory before their retention (memory bound).",
                lambda: book.evicted_sketches,
            )
            if labeler.sampler is not None:
                metrics.registry.register(SampledRowsCollector(labeler.sampler.totals))
        self._flush_lock = threading.Lock()
        self._forget_pending: list[str] = []
        snapshot = store.load_state()
        labeler.book.load(snapshot.sketches)
        labeler.stream.load_states(snapshot.sources, snapshot.counters)
        for source, st in labeler.stream.describe():
            self.activity.restored(source, st.cluster_id)  # sorted by id: the last wins
        logger.info(
            "restored %d latency windows and %d sources",
            len(snapshot.sketches),
            len(snapshot.sources),
        )

    def label_ipc(
        self,
        data: bytes,
        max_response_bytes: int | None = None,
        max_decoded_bytes: int | None = None,
        still_wanted: Callable[[], bool] | None = None,
    ) -> tuple[bytes, int]:
        """Decodes, validates and labels Arrow IPC bytes; returns IPC bytes and row count.

        A call does all its work or none. Admission comes before any work: a payload
        decoding to more than `max_decoded_bytes`, or whose answer could exceed
        `max_response_bytes` (`answer_bytes`, an upper bound), is refused with
        `LimitExceededError`; a caller gone (`still_wanted()` False) before the labelling
        or at the moment of recording gets `CallerGoneError` (see `label`). In each case
        nothing is recorded, so a retry cannot double-count.
        """
        t0 = time.perf_counter()
        table = ipc.decode_ipc(data, self.config.max_rows_per_batch, max_decoded_bytes)
        if max_response_bytes is not None:
            estimate = answer_bytes(table, self.labeler.header_bytes(table))
            if self.labeler.sampler is not None:
                estimate += SAMPLE_BYTES_PER_ROW * table.num_rows
            if estimate > max_response_bytes:
                raise contract.LimitExceededError(
                    f"The answer would exceed the message limit of {max_response_bytes} "
                    "bytes; send smaller batches. Received: "
                    f"{len(data)} bytes, {table.num_rows} rows (answer up to {estimate} bytes)"
                )
        out = self.label(table, t0, still_wanted)
        turns.checkpoint()  # labelled: a waiting cheaper batch goes before the encoding
        encoded = ipc.encode_ipc(out)
        if max_response_bytes is not None and len(encoded) > max_response_bytes:
            logger.error(  # `answer_bytes` is an upper bound: this is a bug of ours
                "answer of %d bytes over the bound of %d", len(encoded), max_response_bytes
            )
        return encoded, out.num_rows

    def label(
        self,
        table: pa.Table,
        started: float | None = None,
        still_wanted: Callable[[], bool] | None = None,
    ) -> pa.Table:
        """Labels a validated table: its columns plus `cluster_id` and `cluster_distance`.

        The rows are placed first (clusters may open), then `still_wanted()` is asked
        once more, and only then recorded (cluster sizes, latency, activity, metrics, the
        sample's ledger): a caller that left while its batch was placed has nothing
        recorded, and its retry counts once. `still_wanted` should keep a margin for
        sending the answer: one that arrives after the caller left is still a retry.

        Raises:
            CallerGoneError: `still_wanted()` is False before the placement or before the
                recording: nothing is recorded.
        """
        started = time.perf_counter() if started is None else started
        self._check_wanted(still_wanted, table.num_rows, "labelled")
        now = now_ms()
        placed = self.labeler.place_table(table, now)
        self._check_wanted(still_wanted, table.num_rows, "recorded")
        b = self.labeler.record(placed)
        fresh = self.activity.record(b.source_names, b.source_codes, b.ids, now)
        if fresh:
            self._announce(fresh, now)
        ids, groups = b.ids, b.groups
        stream = self.labeler.stream
        if stream.translating:  # ids as they leave the sidecar (docs/fleet.md)
            ids = stream.external_rows(b.source_names, b.source_codes, b.ids)
            if b.groups is not None:  # None: each cluster its own group, as ids say
                groups = stream.external_rows(b.source_names, b.source_codes, b.groups)
        if self.metrics is not None:
            self.metrics.observe_batch(
                time.perf_counter() - started,
                b.source_names,
                b.source_codes,
                ids,
                b.latency_ms,
                groups,
            )
        out = contract.with_labels(table, ids, b.distances, groups, wide=stream.translating)
        for name, column in b.headers.items():
            out = out.append_column(name, column)
        if b.keep is not None and b.weight is not None:
            out = contract.with_sample(out, b.keep, b.weight)
        return out

    def _check_wanted(self, still_wanted: Callable[[], bool] | None, rows: int, step: str) -> None:
        if still_wanted is not None and not still_wanted():
            self.abandoned_batches += 1
            raise turns.CallerGoneError(
                "The caller left (deadline passed or call cancelled) before its batch was "
                f"{step}: nothing recorded. Received: {rows} rows"
            )

    def latency(
        self,
        quantiles: list[float] | None = None,
        start_ms: int | None = None,
        end_ms: int | None = None,
        window_ms: int | None = None,
        source: str | None = None,
        sketches: bool = False,
        by: str = "cluster",
    ) -> pa.Table:
        """Per-cluster (or per-group, `by="group"`) latency table (see
        `StreamLabeler.latency`), its ids as they leave the sidecar (int64 under a
        catalog: local kinds' external ids)."""
        table = self.labeler.latency(quantiles, start_ms, end_ms, window_ms, source, sketches, by)
        stream = self.labeler.stream
        if not stream.translating:
            return table
        names, codes = encoded_sources(table.column("source").combine_chunks())
        ids = table.column("cluster_id").to_numpy()
        out = stream.external_rows(names, codes, ids).astype(np.int64)
        at = table.column_names.index("cluster_id")
        return table.set_column(at, "cluster_id", pa.array(out, pa.int64()))

    def describe(self, source: str | None = None) -> list[tuple[str, ClusterStats]]:
        """Every cluster of `source` (all sources when None), with the ids that leave
        the sidecar (`cluster_id`, `merged_into`, `group_id`: external under a catalog)."""
        return self._external_stats(self.labeler.clusters(source))

    def _external_stats(
        self, described: list[tuple[str, ClusterStats]]
    ) -> list[tuple[str, ClusterStats]]:
        stream = self.labeler.stream
        if not stream.translating:
            return described
        by: dict[str, set[int]] = {}
        for name, st in described:
            ids = by.setdefault(name, set())
            ids.update(i for i in (st.cluster_id, st.merged_into, st.group_id) if i is not None)
        ext: dict[str, dict[int, int]] = {}
        for name, inner in by.items():
            keys = sorted(inner)
            got = stream.external_ids(name, np.asarray(keys, np.int64)).tolist()
            ext[name] = dict(zip(keys, got, strict=True))
        return [(name, _renamed(st, ext[name])) for name, st in described]

    def cluster_views(self, source: str | None = None) -> list[ClusterView]:
        """Every cluster of `source` (all when None) with its rows/s now and before:
        what `Clusters` answers and the page shows (ids as `describe` gives them)."""
        described = self.labeler.clusters(source)
        now = now_ms()
        top: dict[str, int] = {}
        for name, st in described:
            top[name] = max(top.get(name, -1), st.cluster_id)
        rates = {name: self.activity.rates(name, now, n + 1) for name, n in top.items()}
        return [
            ClusterView(
                name,
                ext,
                float(rates[name][0][st.cluster_id]),
                float(rates[name][1][st.cluster_id]),
            )
            for (name, st), (_, ext) in zip(described, self._external_stats(described), strict=True)
        ]

    def _announce(self, fresh: list[tuple[str, list[int]]], now: int) -> None:
        """Logs each new kind as one JSON line and keeps it for the page."""
        for source, ids in fresh:
            for _, st in self._external_stats(self.labeler.stream.describe(source, set(ids))):
                event = NewKind(source, st.cluster_id, now, st.template)
                self.activity.add_event(event)
                line = {"event": "new_cluster", "source": source, "cluster_id": st.cluster_id}
                logger.info("%s", json.dumps({**line, "template": st.template}))

    def wait_for_consolidations(self, timeout: float | None = None) -> None:
        """Blocks until background consolidations finish."""
        self.labeler.wait_for_consolidations(timeout)

    def flush(self) -> None:
        """Saves what changed since the last flush, drops expired windows, and evicts
        sources idle longer than the retention (their latency windows have all expired,
        so nothing they recorded is lost; their slots count against `max_sources` no
        more)."""
        book, stream = self.labeler.book, self.labeler.stream
        with self._flush_lock:
            cutoff = book.expire(now_ms())
            evicted = stream.evict_idle(cutoff)
            for name in evicted:  # windows dated ahead of their last batch may remain
                self._drop_source(name)
            self._forget_pending += evicted
            gone = list(dict.fromkeys(self._forget_pending))
            sketches = book.take_dirty()
            # Sources count as saved only once the store holds them (`mark_saved`).
            parts = {n: p for n, p in stream.dirty_parts().items() if n not in gone}
            sources = {n: p.model for n, p in parts.items() if p.model is not None}
            counters = {n: p.counters for n, p in parts.items()}
            try:
                self.store.save_state(StoreDelta(sketches, sources, cutoff, gone, counters))
            except Exception:
                book.mark_dirty(sketches)  # kept for the next attempt
                raise
            stream.mark_saved(parts)
            if gone:
                logger.info("evicted idle sources %s", gone)
            self._forget_pending = []

    def forget(self, source: str) -> bool:
        """Drops a source everywhere (clusters, latency, store); False when unknown."""
        with self._flush_lock:
            found = self.labeler.stream.forget(source)
            self._drop_source(source)
            self.store.save_state(StoreDelta(forget_sources=[source]))
        logger.info("forgot source %r (known: %s)", source, found)
        return found

    def _drop_source(self, source: str) -> None:
        """Releases what the latency book and the metrics hold of `source` (its clusters
        are already gone)."""
        self.labeler.book.forget(source)
        self.labeler.forget_sample(source)
        self.activity.forget(source)
        if self.metrics is not None:
            self.metrics.forget_source(source)


def _renamed(st: ClusterStats, ext: dict[int, int]) -> ClusterStats:
    """A copy of `st` with its ids as they leave the sidecar (`ext`: inner -> outer)."""
    merged = None if st.merged_into is None else ext[st.merged_into]
    group = None if st.group_id is None else ext[st.group_id]
    return dataclasses.replace(
        st, cluster_id=ext[st.cluster_id], merged_into=merged, group_id=group
    )
