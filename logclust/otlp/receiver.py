"""OTLP logs in: `LogsService/Export` over gRPC (and `/v1/logs`, `http`), labelled
through the same path as `Label`, then forwarded to the next hop (`forward`).

Every Export: room in the forwarding queue is taken first (a full queue refuses the
whole request before any labelling, so a retried request is never counted twice), the
records are mapped to a contract table (`mapping`; unmappable records are refused
alone and reported in `partial_success`), the table is checked with
`contract.validate_batch` and labelled by `Sidecar.label`, exactly as a `Label` batch
(same clusters, same latency sketches), and the records, with `logclust.cluster_id` and
`logclust.cluster` added, are queued for the next hop.

**Admission, fairness, deadlines.** An Export takes its bytes from the server's one
admission budget (`logclust.rpc.admission`) before its message is taken in (the method is
served as request-streaming, so the message is read only once admitted, and the server
reads ahead 64 KiB of a stream it has not asked for: 40 fat exports wait without being
buffered); past `ADMISSION_WAIT_S` or its deadline it is refused RESOURCE_EXHAUSTED with a
RetryInfo. It is labelled in the Label pool in the turn of its exporter (the peer
address: 256 exporters are served like 256 `Label` streams), and an export whose caller
has gone (deadline passed, cancelled, or too close to answer: `rpc.deadline`) stops at
its next checkpoint, or after its placement, before anything is recorded
(`Sidecar.label`): the exporter's retry is then the only one counted.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Hashable
from concurrent import futures
from typing import Any, Protocol, TypeAlias, TypeVar

import grpc
import numpy as np
import pyarrow as pa
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsPartialSuccess,
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from prometheus_client import CollectorRegistry, Counter

import logclust.turns as turns
from logclust.cluster.descriptions import ClusterStats
from logclust.otlp import decode
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
from logclust.otlp.sources import SourceQuota
from logclust.rpc import errors
from logclust.rpc.admission import Admission, Ticket
from logclust.rpc.deadline import answer_margin
from logclust.rpc.sweep import CycleSweeper
from logclust.sidecar.core import Sidecar
from logclust.sidecar.metrics import Metrics
from logclust.wire import contract

logger = logging.getLogger(__name__)

# The OTLP receivers' turn in the Label pool when no exporter is named (direct calls).
OTLP_STREAM = "logclust-otlp"
# Seconds an Export waits for room in the admission budget (less when its deadline is
# nearer); then RESOURCE_EXHAUSTED with a RetryInfo.
ADMISSION_WAIT_S = 2.0
T = TypeVar("T")
Alive: TypeAlias = "Callable[[], bool] | None"
Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"
LOGS_SERVICE = logs_service_pb2.DESCRIPTOR.services_by_name["LogsService"].full_name


class LabelPool(Protocol):
    """Where requests are labelled in turns (the server's `FairExecutor`)."""

    def submit(
        self,
        key: Hashable,
        cost: float,
        fn: Callable[..., Any],
        *args: Any,
        alive: Callable[[], bool] | None = None,
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
            one core, at no cost in throughput (`python -m bench.otlp`). None: in the
            caller's thread.
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
        # Requests whose caller went away before they were recorded (not recorded).
        self.abandoned = 0
        self._lock = threading.Lock()
        self.templates = TemplateCache(sidecar.describe)
        stream = sidecar.labeler.stream
        self.sources = SourceQuota(
            stream, config.source_share(stream.max_sources), config.source_attribute
        )
        self.late_answers = Counter(
            "logclust_otlp_late_answers",
            "OTLP/gRPC exports recorded whose caller left (deadline passed, cancelled) "
            "before the answer: accepted here, and counted again if the exporter retries.",
            registry=registry,
        )
        self._records = Counter(
            "logclust_otlp_records",
            "OTLP log records received, by outcome (accepted, rejected).",
            ["outcome"],
            registry=registry,
        )

    def export_bytes(self, data: bytes) -> ExportLogsServiceResponse:
        """`export` of a binary request (ContractError when it does not decode)."""
        return self._in_turn(OTLP_STREAM, len(data), None, self._export_bytes, data, None)

    def export(
        self, request: ExportLogsServiceRequest, nbytes: int, labelled_before: bool = True
    ) -> ExportLogsServiceResponse:
        """Labels (and queues) the records of one request; `request` is changed in place.

        `labelled_before=False` promises that no record has logclust attributes yet
        (they are then appended without looking for old ones).

        Raises:
            QueueFullError: no room to forward the request; nothing was labelled.
            LimitExceededError: more rows than the sidecar takes.
        """
        return self._in_turn(
            OTLP_STREAM, nbytes, None, self._export, request, nbytes, labelled_before, None
        )

    def submit_bytes(
        self, key: Hashable, data: bytes, alive: Alive
    ) -> futures.Future[ExportLogsServiceResponse]:
        """`export_bytes` in `key`'s turn of the pool; `alive` as in `FairExecutor.submit`."""
        return self._submit(key, len(data), alive, self._export_bytes, data, alive)

    def submit_body(
        self, key: Hashable, body: bytes, ctype: str, coding: str, ticket: Ticket, alive: Alive
    ) -> futures.Future[ExportLogsServiceResponse]:
        """An OTLP/HTTP body (`decode`: gunzip, JSON), decoded and exported in the pool."""
        return self._submit(
            key, len(body), alive, self._export_body, body, ctype, coding, ticket, alive
        )

    def _export_body(
        self, body: bytes, ctype: str, coding: str, ticket: Ticket, alive: Alive
    ) -> ExportLogsServiceResponse:
        if coding == "gzip":
            body = decode.gunzip(body, self.config.max_request_bytes, ticket)
        if ctype == decode.PROTOBUF:
            return self._export_bytes(body, alive)
        return self._export(decode.parse_json(body), len(body), True, alive)

    def _submit(
        self, key: Hashable, nbytes: int, alive: Alive, fn: Callable[..., T], *args: Any
    ) -> futures.Future[T]:
        if self.pool is None:
            fut: futures.Future[T] = futures.Future()
            try:
                fut.set_result(fn(*args))
            except Exception as e:  # noqa: BLE001 - handed to the caller
                fut.set_exception(e)
            return fut
        fut = self.pool.submit(key, nbytes, fn, *args, alive=alive)
        if alive is not None:
            fut.add_done_callback(self._count_abandoned)
        return fut

    def _count_abandoned(self, fut: futures.Future[Any]) -> None:
        if fut.cancelled() or isinstance(fut.exception(), turns.CallerGoneError):
            with self._lock:
                self.abandoned += 1

    def _in_turn(
        self, key: Hashable, nbytes: int, alive: Alive, fn: Callable[..., T], *args: Any
    ) -> T:
        """`fn(*args)` in the Label pool, in `key`'s turn (see `pool`)."""
        return self._submit(key, nbytes, alive, fn, *args).result()

    def _export_bytes(self, data: bytes, alive: Alive) -> ExportLogsServiceResponse:
        # Records labelled by an earlier logclust hop carry the key somewhere in the bytes.
        labelled_before = CLUSTER_ID_ATTRIBUTE.encode() in data
        return self._export(parse_request(data), len(data), labelled_before, alive, data)

    def _export(
        self,
        request: ExportLogsServiceRequest,
        nbytes: int,
        labelled_before: bool,
        alive: Alive,
        data: bytes | None = None,
    ) -> ExportLogsServiceResponse:
        refused, reason = self.sources.refuse_over_quota(request)
        if refused:
            data = None  # the request changed: its bytes no longer match it
        n = count_records(request)
        if n == 0:
            return self._answer(refused, [reason] if refused else [])
        if self.queue is not None:
            self.queue.reserve(n, nbytes)
        accepted = forwarded = 0
        try:
            mapped = self.mapper.map(request, data, keep_records=self.queue is not None)
            accepted = forwarded = mapped.accepted
            if accepted:
                labelled = self._label(mapped.table, alive)
                ids = contract.column_array(labelled, contract.CLUSTER_ID).to_numpy()
                if self.queue is not None:
                    sources = contract.source_column(mapped.table).to_pylist()
                    templates = self.templates.lookup(sources, ids.tolist())
                    groups = contract.column_array(labelled, contract.GROUP_ID).to_numpy()
                    annotate(mapped.records, ids, templates, labelled_before, groups)
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
        reasons = ([reason] if refused else []) + (
            [mapped.error_message()] if mapped.rejected else []
        )
        return self._answer(refused + len(mapped.rejected), reasons)

    def _answer(self, rejected: int, reasons: list[str]) -> ExportLogsServiceResponse:
        if not rejected:
            return ExportLogsServiceResponse()
        self._records.labels(outcome="rejected").inc(rejected)
        return ExportLogsServiceResponse(
            partial_success=ExportLogsPartialSuccess(
                rejected_log_records=rejected, error_message="; ".join(reasons)
            )
        )

    def _label(self, table: pa.Table, alive: Alive) -> pa.Table:
        """The `Label` path: contract check, then the sidecar; the labelled table."""
        started = time.perf_counter()
        contract.validate_batch(table, self.sidecar.config.max_rows_per_batch)
        if alive is not None and not alive():
            raise turns.CallerGoneError("the caller went away before its records were labelled")
        # Asked again last thing before anything is recorded (after the embedding's
        # checkpoints, which ask it too).
        return self.sidecar.label(table, started, alive)


def _sample_of(labelled: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """`keep` and `sample_weight` of a labelled table (`forward_sampled` needs a budget,
    so they are there)."""
    keep = contract.column_array(labelled, contract.KEEP).to_numpy(zero_copy_only=False)
    weight = contract.column_array(labelled, contract.SAMPLE_WEIGHT).to_numpy()
    return np.asarray(keep, bool), np.asarray(weight, np.float64)


class OtlpLogsService:
    """`LogsService/Export` on the asyncio gRPC server: admitted (see the module
    docstring), raw bytes in (a malformed request is INVALID_ARGUMENT with a message, not a
    deserialization failure), the receiver, errors as in `errors.py`."""

    def __init__(
        self,
        receiver: OtlpReceiver,
        admission: Admission,
        metrics: Metrics | None = None,
    ) -> None:
        self.receiver = receiver
        self.admission = admission
        self.metrics = metrics
        self.sweeper = CycleSweeper()

    def on_error(self, kind: str) -> None:
        if self.metrics is not None:
            self.metrics.on_error(kind)

    @errors.aio_unary
    async def Export(  # noqa: N802 - gRPC method name
        self, requests: AsyncIterator[bytes], context: Context
    ) -> ExportLogsServiceResponse:
        remaining = context.time_remaining()
        wait = ADMISSION_WAIT_S if remaining is None else min(ADMISSION_WAIT_S, remaining)
        reserve = self.receiver.config.max_request_bytes
        with await self.admission.wait(reserve, wait, "OTLP export") as ticket:
            data = await anext(aiter(requests), None)
            if data is None:
                raise contract.ContractError("Export without a request. Received: none")
            ticket.resize(len(data))
            deadline = None if remaining is None else time.monotonic() + remaining
            margin = 0.0 if remaining is None else answer_margin(remaining)

            def alive() -> bool:  # and time left to label and answer
                return not context.cancelled() and (
                    deadline is None or time.monotonic() < deadline - margin
                )

            fut = self.receiver.submit_bytes(("otlp", context.peer()), data, alive)
            try:
                response = await asyncio.wrap_future(fut)
            finally:
                self.sweeper.done(len(data))
            if context.cancelled() or (deadline is not None and time.monotonic() >= deadline):
                self.receiver.late_answers.inc()
            return response

    def add_to_server(self, server: grpc.aio.Server) -> None:
        handler = grpc.method_handlers_generic_handler(
            LOGS_SERVICE,
            {
                # Request-streaming on this side (the wire is the same): the message is
                # read only once the call is admitted.
                "Export": grpc.stream_unary_rpc_method_handler(
                    self.Export,
                    request_deserializer=None,  # bytes: parsed by the receiver
                    response_serializer=ExportLogsServiceResponse.SerializeToString,
                )
            },
        )
        server.add_generic_rpc_handlers((handler,))
