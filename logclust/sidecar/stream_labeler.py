"""`StreamLabeler`: the sidecar's work in one in-process object, no gRPC.

Text in, stable cluster ids out, latency recorded per cluster, in the spirit of Drain3's
`TemplateMiner`: a program can embed it directly, and the sidecar (`logclust.sidecar.core`)
wraps it with persistence, metrics and Arrow IPC, the gRPC server wraps the sidecar.

```python
labeler = StreamLabeler.load()                       # the shipped bundle
result = labeler.label(["GET /cart 200", ...], source="frontend", latency_ms=[4.1, ...])
result.ids, result.distances, result.clusters        # per row, per row, by id
labeler.latency(quantiles=[0.99])                    # per-cluster quantiles (Arrow)
labeler.clusters("frontend")                         # templates, sizes, exemplars
```
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from logclust.cluster.descriptions import ClusterStats
from logclust.cluster.labeler import Labeler
from logclust.cluster.router import Placement, StreamClusters
from logclust.embed.embedding_cache import Embedder
from logclust.latency.book import LatencyBook
from logclust.sidecar.config import StreamLabelerConfig
from logclust.sidecar.sampling import Sampler
from logclust.text.log_format import LogFormat
from logclust.wire import contract
from logclust.wire.contract import DEFAULT_QUANTILES, DEFAULT_SOURCE, ContractError


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True)
class BatchLabels:
    """Labels of one batch in row order, with the bookkeeping a caller may record.

    Attributes:
        ids: `(n,)` int32 stable cluster ids (a new kind of line opens a cluster at once).
        distances: `(n,)` float32 distance to the centroid of the row's cluster.
        source_names: distinct sources of the batch.
        source_codes: `(n,)` index into `source_names` of each row.
        latency_ms: `(n,)` float64 latencies; NaN where not measured.
    """

    ids: np.ndarray
    distances: np.ndarray
    source_names: list[str]
    source_codes: np.ndarray
    latency_ms: np.ndarray
    # `log_<field>` columns of sources with a log format (empty when none applies).
    headers: dict[str, pa.Array] = field(default_factory=dict)
    # `(n,)` bool and float64: the sample (`keep`, `sample_weight`); None without a budget.
    keep: np.ndarray | None = None
    weight: np.ndarray | None = None
    # `(n,)` int64 group id of each row (`logclust.cluster.groups`); None: same as `ids`.
    groups: np.ndarray | None = None


@dataclass(frozen=True)
class PlacedBatch:
    """A batch placed by `StreamLabeler.place_table`, recorded by `record` (or dropped).

    Attributes:
        placement: the rows' clusters (`StreamClusters.place`), not counted yet.
        latency_ms: `(n,)` float64 latencies; NaN where not measured.
        headers: `log_<field>` columns of sources with a log format.
        now: receive time in Unix ms.
    """

    placement: Placement
    latency_ms: np.ndarray
    headers: dict[str, pa.Array]
    now: int


@dataclass(frozen=True)
class LabelResult:
    """What `StreamLabeler.label` returns for a list of texts of one source.

    Attributes:
        ids: `(n,)` int32 stable cluster ids.
        distances: `(n,)` float32 distance to the centroid of the row's cluster.
        clusters: a copy of the stats (template, size, exemplars, ...) of every cluster id
            in `ids`.
    """

    ids: np.ndarray
    distances: np.ndarray
    clusters: dict[int, ClusterStats]
    # `(n,)` bool and float64: kept rows and what each stands for; None without a budget.
    keep: np.ndarray | None = None
    weight: np.ndarray | None = None
    # `(n,)` int64 group id of each row (clusters that mean the same share one).
    groups: np.ndarray | None = None


class StreamLabeler:
    """Clusters streams of text per source and keeps per-cluster latency sketches.

    Thread-safe. Args:
        embedder: the embedder (a `Labeler`, or a test fake with `masker`, `dim` and
            `embed_masked`).
        config: what is kept and accepted; defaults when None.
    """

    def __init__(self, embedder: Embedder, config: StreamLabelerConfig | None = None) -> None:
        self.config = config or StreamLabelerConfig()
        self._formats = {s: LogFormat.resolve(f) for s, f in self.config.log_formats.items()}
        self.stream = StreamClusters(
            embedder,
            self.config.clusters,
            self.config.max_sources,
            embedder.threshold,
            # Test fakes have no channel and no calibrated groups: the fallbacks apply.
            getattr(embedder, "group_threshold", None),
            getattr(embedder, "semantic_from", 0),
        )
        self.book = LatencyBook(
            window_ms=self.config.window_s * 1000,
            retention_ms=self.config.retention_s * 1000,
            relative_accuracy=self.config.relative_accuracy,
            max_bytes=self.config.latency_max_bytes,
            max_latency_ms=self.config.max_latency_ms,
        )
        sampling = self.config.sampling
        self.sampler = Sampler(sampling) if sampling.enabled else None

    @classmethod
    def load(
        cls,
        bundle: str | Path | None = None,
        config: StreamLabelerConfig | None = None,
        batch_size: int = 64,
    ) -> StreamLabeler:
        """A labeler over a model bundle (the shipped one when `bundle` is None)."""
        return cls(Labeler.load(bundle, batch_size=batch_size), config)

    def label(
        self,
        texts: Sequence[str],
        source: str = DEFAULT_SOURCE,
        latency_ms: Sequence[float] | np.ndarray | None = None,
        time_ms: Sequence[int] | np.ndarray | None = None,
    ) -> LabelResult:
        """Labels texts of one source and records their latencies.

        Args:
            texts: the lines or request bodies.
            source: the stream they belong to (each source has its own clusters).
            latency_ms: one latency per text; None (or NaN) records none.
            time_ms: event time per text in Unix ms; None means now.

        Raises:
            TypeError: `texts` is one string.
            ValueError: lengths differ, or the batch breaks the contract (`ContractError`).
        """
        if isinstance(texts, str):
            raise TypeError("texts must be a sequence of str, not one str. Received: str")
        n = len(texts)
        columns: dict[str, pa.Array] = {contract.BODY: pa.array(list(texts), pa.string())}
        for name, values in ((contract.LATENCY_MS, latency_ms), (contract.TIME, time_ms)):
            if values is not None and len(values) != n:
                raise ValueError(
                    f"{name} needs one value per text. Received: {len(values)} for {n} texts"
                )
        if latency_ms is not None:
            columns[contract.LATENCY_MS] = pa.array(np.asarray(latency_ms, np.float64))
        if time_ms is not None:
            ts = pa.array(np.asarray(time_ms, np.int64))
            columns[contract.TIME] = ts.cast(pa.timestamp("ms", tz="UTC"))
        columns[contract.SOURCE] = pa.array([source] * n, pa.string())
        table = pa.table(columns)
        contract.validate_batch(table, self.config.max_rows_per_batch)
        labels = self.label_table(table)
        present = set(labels.ids.tolist())
        stats = {st.cluster_id: st for _, st in self.stream.describe(source, present)}
        return LabelResult(
            labels.ids,
            labels.distances,
            {c: stats[c] for c in sorted(present) if c in stats},
            labels.keep,
            labels.weight,
            labels.groups,
        )

    def label_table(self, table: pa.Table, now: int | None = None) -> BatchLabels:
        """Labels a table that passed `contract.validate_batch` and records it
        (`place_table`, then `record`).

        Args:
            table: `body` plus the optional `latency_ms`, `time` and `source` columns.
            now: receive time in Unix ms (rows without a time); None means now.
        """
        return self.record(self.place_table(table, now))

    def place_table(self, table: pa.Table, now: int | None = None) -> PlacedBatch:
        """Places the rows of a table that passed `contract.validate_batch`: clusters may
        open, nothing is recorded. Give the result to `record`, or drop it (its caller
        left: its rows were never seen, and its retry counts once).

        Args:
            table: `body` plus the optional `latency_ms`, `time` and `source` columns.
            now: receive time in Unix ms (rows without a time); None means now.
        """
        now = now_ms() if now is None else now
        if self.sampler is not None:
            contract.check_sample_columns(table.schema)
        body = contract.column_array(table, contract.BODY)
        latency = contract.latency_column(table)
        source = contract.source_column(table)
        headers: dict[str, pa.Array] = {}
        if self._formats:
            body, headers = self._split_headers(table, body, source)
        placed = self.stream.place(body, source, contract.time_ms_column(table, now))
        return PlacedBatch(placed, latency, headers, now)

    def record(self, batch: PlacedBatch) -> BatchLabels:
        """Records a placed batch (cluster sizes, latency sketches, the sample's ledger)
        and returns its labels."""
        p, latency = batch.placement, batch.latency_ms
        names, codes, ids = p.source_names, p.source_codes, p.ids
        self.stream.count(p)
        groups = self.stream.group_ids(names, codes, ids)
        self.book.record(names, codes, ids, p.time_ms, latency, batch.now)
        over = contract.over_max_latency(latency, self.config.max_latency_ms)
        if over.any():  # not measured for the metrics either
            latency = np.where(over, np.nan, latency)
        keep = weight = None
        if self.sampler is not None:
            sample = self.sampler.decide(names, codes, ids, p.time_ms, latency)
            keep, weight = sample.keep, sample.weight
        return BatchLabels(
            ids,
            p.distances,
            names,
            codes,
            latency,
            batch.headers,
            groups=groups,
            keep=keep,
            weight=weight,
        )

    def header_bytes(self, table: pa.Table) -> int:
        """An upper bound of the bytes the `log_<field>` columns add to `table`'s answer:
        each value is a piece of its row's body (0 without log formats)."""
        fields = {f for fmt in self._formats.values() for f in fmt.columns} - {"content"}
        if not fields:
            return 0
        body = table.column(contract.BODY)
        # Per column: the body's bytes at most, 8-byte offsets and a validity bit a row.
        return len(fields) * (body.nbytes + 9 * table.num_rows + 64)

    def _split_headers(
        self, table: pa.Table, body: pa.Array, source: pa.Array
    ) -> tuple[pa.Array, dict[str, pa.Array]]:
        """The content of rows whose source has a log format, and their header fields.

        Raises:
            ContractError: a header column would overwrite one of the caller's columns.
        """
        enc = source if isinstance(source, pa.DictionaryArray) else pc.dictionary_encode(source)
        codes = enc.indices.to_numpy(zero_copy_only=False)
        headers: dict[str, pa.Array] = {}
        for code, name in enumerate(enc.dictionary.to_pylist()):
            fmt = self._formats.get(name) or self._formats.get("*")
            if fmt is None:
                continue
            rows = codes == code
            mask = pa.array(rows)
            parts = fmt.split(body if rows.all() else body.filter(mask))
            body = pc.replace_with_mask(body, mask, parts.column("content").combine_chunks())
            for field_name in parts.column_names:
                if field_name == "content":
                    continue
                col = f"log_{field_name}"
                if col in table.column_names:
                    raise ContractError(
                        f"Column {col!r} is added by the log format of source {name!r}; "
                        f"rename the input's own. Received: columns={table.column_names}"
                    )
                base = headers.get(col, pa.nulls(len(body), pa.string()))
                headers[col] = pc.replace_with_mask(
                    base, mask, parts.column(field_name).combine_chunks()
                )
        return body, headers

    def latency(
        self,
        quantiles: Sequence[float] | None = None,
        start_ms: int | None = None,
        end_ms: int | None = None,
        window_ms: int | None = None,
        source: str | None = None,
        sketches: bool = False,
        by: str = "cluster",
    ) -> pa.Table:
        """Per-cluster counts and latency quantiles (see `LatencyBook.query`); with
        `by="group"` per group (the sketches of a group's clusters merged, exactly: the
        `cluster_id` column then holds group ids); with `sketches`, each row's sketch and
        whether its id is local (not the catalog's).

        Raises:
            ValueError: `by` is neither "cluster" nor "group".
        """
        if by not in ("cluster", "group"):
            raise ContractError(f"by must be 'cluster' or 'group'. Received: by={by!r}")
        aliases = self.stream.aliases() if by == "cluster" else self.stream.group_aliases()
        table = self.book.query(
            list(quantiles or DEFAULT_QUANTILES),
            start_ms,
            end_ms,
            window_ms,
            source,
            aliases=aliases,
            sketches=sketches,
        )
        if not sketches:
            return table
        names, ids = table.column("source").to_pylist(), table.column("cluster_id").to_pylist()
        local = [self.stream.is_local(s, c) for s, c in zip(names, ids, strict=True)]
        return table.append_column("local", pa.array(local, pa.bool_()))

    def clusters(self, source: str | None = None) -> list[tuple[str, ClusterStats]]:
        """`(source, stats)` of every cluster of `source` (all sources when None)."""
        return self.stream.describe(source)

    def forget_sample(self, source: str) -> None:
        """Drops the sampling state of a forgotten or evicted source."""
        if self.sampler is not None:
            self.sampler.forget(source)

    def wait_for_consolidations(self, timeout: float | None = None) -> None:
        """Blocks until background consolidations finish (tests, shutdown)."""
        self.stream.wait_for_consolidations(timeout)
