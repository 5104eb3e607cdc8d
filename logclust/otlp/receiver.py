"""OTLP logs in: `LogsService/Export` over gRPC (and `/v1/logs`, `http`), labelled
through the same path as `Label`, then forwarded to the next hop (`forward`).

Every Export: room in the forwarding queue is taken first (a full queue refuses the
whole request before any labelling, so a retried request is never counted twice), the
records are mapped to a contract table (`mapping`; unmappable records are refused
alone and reported in `partial_success`), the table is checked with
`contract.validate_batch` and labelled by `Sidecar.label`, exactly as a `Label` batch
(same clusters, same latency sketches), and the records, with `logclust.cluster_id` and
`logclust.cluster` added, are queued for the next hop.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable
from concurrent import futures
from typing import Any, Protocol, TypeVar

import grpc
import numpy as np
import pyarrow as pa
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsPartialSuccess,
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from prometheus_client import CollectorRegistry, Counter

from logclust.cluster.descriptions import ClusterStats
from logclust.otlp.config import OtlpConfig
from logclust.otlp.forward import ForwardQueue
from logclust.otlp.mapping import (
    CLUSTER_ID_ATTRIBUTE,
    RecordMapper,
    annotate,
    count_records,
    parse_request,
)
from logclust.otlp.sampled import thin
from logclust.rpc import errors
from logclust.sidecar.core import Sidecar
from logclust.sidecar.metrics import Metrics
from logclust.wire import contract

logger = logging.getLogger(__name__)

# The OTLP receivers' turn in the Label pool (one stream for all of them).
OTLP_STREAM = "logclust-otlp"
T = TypeVar("T")
LOGS_SERVICE = logs_service_pb2.DESCRIPTOR.services_by_name["LogsService"].full_name


class LabelPool(Protocol):
    """Where requests are labelled in turns (the server's `FairExecutor`)."""

    def submit(
        self, key: Hashable, cost: float, fn: Callable[..., Any], *args: Any
    ) -> futures.Future[Any]: ...


class TemplateCache:
    """Cluster descriptions by (source, id), asked of the sidecar at most once per `ttl_s`
    per source, or at once when an id is new (descriptions change as clusters grow)."""

    def __init__(
        self, describe: Callable[[str], list[tuple[str, ClusterStats]]], ttl_s: float = 1.0
    ) -> None:
        self.describe = describe
        self.ttl_s = ttl_s
        self._sources: dict[str, tuple[float, dict[int, str]]] = {}
        self._lock = threading.Lock()

    def _source(self, source: str, ids: set[int]) -> dict[int, str]:
        now = time.monotonic()
        with self._lock:
            seen, templates = self._sources.get(source, (-np.inf, {}))
        if now - seen > self.ttl_s or any(i >= 0 and i not in templates for i in ids):
            templates = {st.cluster_id: st.template for _, st in self.describe(source)}
            with self._lock:
                self._sources[source] = (now, templates)
        return templates

    def lookup(self, sources: list[str], ids: list[int]) -> list[str | None]:
        """The description of each row's cluster (None when it has none)."""
        wanted: dict[str, set[int]] = {}
        for s, i in zip(sources, ids, strict=True):
            wanted.setdefault(s, set()).add(i)
        known = {s: self._source(s, i) for s, i in wanted.items()}
        return [known[s].get(i) for s, i in zip(sources, ids, strict=True)]


class OtlpReceiver:
    """Export requests in, labelled records out to `queue` (None: label and record only).

    Args:
        config: the mapping settings.
        sidecar: labels the records (the `Label` path).
        queue: where labelled requests go; None forwards nothing.
        registry: Prometheus registry for the record counters; None records none.
        pool: the server's Label pool: each request is labelled there, in the turn of
            the OTLP receivers (`OTLP_STREAM`), so that OTLP and `Label` traffic share
            the cores fairly and the receivers' threads do not all label at once on
            one core (`bench.otlp` throughput the same either way: 45,023 against
            48,461 records/s). None: in the caller's thread.
    """

    def __init__(
        self,
        config: OtlpConfig,
        sidecar: Sidecar,
        queue: ForwardQueue | None = None,
        registry: CollectorRegistry | None = None,
        pool: LabelPool | None = None,
    ) -> None:
        self.config = config
        self.sidecar = sidecar
        self.queue = queue
        self.pool = pool
        self.mapper = RecordMapper(config)
        self.templates = TemplateCache(sidecar.describe)
        self._records = Counter(
            "logclust_otlp_records",
            "OTLP log records received, by outcome (accepted, rejected).",
            ["outcome"],
            registry=registry,
        )

    def export_bytes(self, data: bytes) -> ExportLogsServiceResponse:
        """`export` of a binary request (ContractError when it does not decode)."""
        # Records labelled by an earlier logclust hop carry the key somewhere in the bytes.
        labelled_before = CLUSTER_ID_ATTRIBUTE.encode() in data
        return self._in_turn(len(data), self._export_bytes, data, labelled_before)

    def _export_bytes(self, data: bytes, labelled_before: bool) -> ExportLogsServiceResponse:
        return self._export(parse_request(data), len(data), labelled_before, data)

    def export(
        self, request: ExportLogsServiceRequest, nbytes: int, labelled_before: bool = True
    ) -> ExportLogsServiceResponse:
        """Labels (and queues) the records of one request; `request` is changed in place.

        `labelled_before=False` promises that no record has logclust attributes yet
        (they are then appended without looking for old ones).

        Raises:
            QueueFullError: no room to forward the request; nothing was labelled.
            LimitExceededError: more rows or sources than the sidecar takes.
        """
        return self._in_turn(nbytes, self._export, request, nbytes, labelled_before)

    def _in_turn(self, nbytes: int, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` in the Label pool's turn of the OTLP receivers (see `pool`)."""
        if self.pool is None:
            return fn(*args)
        return self.pool.submit(OTLP_STREAM, nbytes, fn, *args).result()  # type: ignore[no-any-return]

    def _export(
        self,
        request: ExportLogsServiceRequest,
        nbytes: int,
        labelled_before: bool,
        data: bytes | None = None,
    ) -> ExportLogsServiceResponse:
        n = count_records(request)
        if n == 0:
            return ExportLogsServiceResponse()
        if self.queue is not None:
            self.queue.reserve(n, nbytes)
        accepted = forwarded = 0
        try:
            mapped = self.mapper.map(request, data, keep_records=self.queue is not None)
            accepted = forwarded = mapped.accepted
            if accepted:
                labelled = self._label(mapped.table)
                ids = contract.column_array(labelled, contract.CLUSTER_ID).to_numpy()
                if self.queue is not None:
                    sources = contract.source_column(mapped.table).to_pylist()
                    templates = self.templates.lookup(sources, ids.tolist())
                    annotate(mapped.records, ids, templates, labelled_before)
            if self.queue is not None and mapped.rejected:
                mapped.drop_rejected()
            if accepted and self.queue is not None and self.config.forward_sampled:
                forwarded = thin(request, *_sample_of(labelled), labelled_before)
        except BaseException:
            if self.queue is not None:
                self.queue.release(n, nbytes)
            raise
        if self.queue is not None:
            if forwarded:
                self.queue.put(request, forwarded, nbytes)
                self.queue.release(n - forwarded, 0)
            else:
                self.queue.release(n, nbytes)
        self._records.labels(outcome="accepted").inc(accepted)
        if not mapped.rejected:
            return ExportLogsServiceResponse()
        self._records.labels(outcome="rejected").inc(len(mapped.rejected))
        return ExportLogsServiceResponse(
            partial_success=ExportLogsPartialSuccess(
                rejected_log_records=len(mapped.rejected), error_message=mapped.error_message()
            )
        )

    def _label(self, table: pa.Table) -> pa.Table:
        """The `Label` path: contract check, then the sidecar; the labelled table."""
        started = time.perf_counter()
        contract.validate_batch(table, self.sidecar.config.max_rows_per_batch)
        return self.sidecar.label(table, started)


def _sample_of(labelled: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """`keep` and `sample_weight` of a labelled table (`forward_sampled` needs a budget,
    so they are there)."""
    keep = contract.column_array(labelled, contract.KEEP).to_numpy(zero_copy_only=False)
    weight = contract.column_array(labelled, contract.SAMPLE_WEIGHT).to_numpy()
    return np.asarray(keep, bool), np.asarray(weight, np.float64)


class OtlpLogsService(logs_service_pb2_grpc.LogsServiceServicer):
    """`LogsService/Export`: raw bytes in (a malformed request is INVALID_ARGUMENT with a
    message, not a deserialization failure), the receiver, errors as in `errors.py`."""

    def __init__(self, receiver: OtlpReceiver, metrics: Metrics | None = None) -> None:
        self.receiver = receiver
        self.metrics = metrics

    def on_error(self, kind: str) -> None:
        if self.metrics is not None:
            self.metrics.on_error(kind)

    @errors.unary
    def Export(  # noqa: N802 - gRPC method name
        self, request: bytes, context: grpc.ServicerContext
    ) -> ExportLogsServiceResponse:
        return self.receiver.export_bytes(request)

    def add_to_server(self, server: grpc.Server) -> None:
        handler = grpc.method_handlers_generic_handler(
            LOGS_SERVICE,
            {
                "Export": grpc.unary_unary_rpc_method_handler(
                    self.Export,
                    request_deserializer=None,  # bytes: parsed by the receiver
                    response_serializer=ExportLogsServiceResponse.SerializeToString,
                )
            },
        )
        server.add_generic_rpc_handlers((handler,))
