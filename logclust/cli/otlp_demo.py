"""`logclust demo --otlp`: the demo's traffic sent by the OpenTelemetry Python SDK.

Every request becomes one Python log record through the SDK's `LoggingHandler`: the
body as the message (the OTLP record body), `latency_ms` and `record_id` as attributes,
the request's time as the record time, the traffic's source as the resource's
`service.name`. The SDK's `BatchLogRecordProcessor` and OTLP/gRPC exporter send them to
the sidecar's OTLP receiver (`--otlp-listen`). The sidecar forwards the labelled records
to `NextHop`, an OTLP receiver in this process standing for the collector after logclust
(`--otlp-forward`): the demo's ARI and exact p99 need the `logclust.cluster_id` of every
record, and the next hop is where a pipeline sees it.

Needs the `otel` extra (`logclust.cli.demo.otlp_sdk_available`); serving does not.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from concurrent import futures
from dataclasses import replace
from typing import Any

import grpc
import numpy as np
import pyarrow as pa
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource

from logclust.cli.demo_answers import Answers, query
from logclust.client import Client
from logclust.otlp.config import OtlpConfig
from logclust.otlp.mapping import CLUSTER_ID_ATTRIBUTE
from logclust.server.app import create_server
from logclust.server.config import ServerConfig

SENDER = "the OpenTelemetry SDK (OTLP/gRPC)"
RECORD_ID = "record_id"
# How long the SDK may take to deliver everything, and the next hop to see it forwarded.
FLUSH_TIMEOUT_S = 120.0
DELIVERY_TIMEOUT_S = 60.0
# `extra` key carrying the request's time to `_stamp_request_time` (never sent).
_REQUEST_TIME = "_logclust_request_time_s"


class NextHop(logs_service_pb2_grpc.LogsServiceServicer):
    """An OTLP/gRPC logs receiver on a free local port that keeps the cluster id of every
    record id it receives (and how often each id arrived)."""

    def __init__(self) -> None:
        self.received: Counter[int] = Counter()
        self.cluster_of: dict[int, int] = {}
        self._lock = threading.Lock()
        self._server = grpc.server(futures.ThreadPoolExecutor(2, "logclust-demo-next-hop"))
        logs_service_pb2_grpc.add_LogsServiceServicer_to_server(self, self._server)
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        self._server.start()

    def Export(  # noqa: N802 - gRPC method name
        self, request: ExportLogsServiceRequest, context: grpc.ServicerContext
    ) -> ExportLogsServiceResponse:
        with self._lock:
            for rl in request.resource_logs:
                for sl in rl.scope_logs:
                    for rec in sl.log_records:
                        attrs = {kv.key: kv.value.int_value for kv in rec.attributes}
                        if RECORD_ID in attrs and CLUSTER_ID_ATTRIBUTE in attrs:
                            self.received[attrs[RECORD_ID]] += 1
                            self.cluster_of[attrs[RECORD_ID]] = attrs[CLUSTER_ID_ATTRIBUTE]
        return ExportLogsServiceResponse()

    def wait_for(self, rows: int, timeout_s: float) -> None:
        """Returns once records 0..rows-1 all arrived, or after `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while len(self.cluster_of) < rows and time.monotonic() < deadline:
            time.sleep(0.02)

    def cluster_ids(self, rows: int) -> np.ndarray:
        """The cluster id of records 0..rows-1 (-1 where none arrived)."""
        with self._lock:
            return np.fromiter((self.cluster_of.get(i, -1) for i in range(rows)), np.int32, rows)

    def note(self, rows: int) -> str:
        """One line on what arrived: every record once is the at-least-once promise kept
        without duplicates."""
        with self._lock:
            missing = sum(1 for i in range(rows) if i not in self.received)
            twice = sum(1 for c in self.received.values() if c > 1)
        return (
            f"next hop (as after --otlp-forward): {sum(self.received.values())} records for "
            f"{rows} sent, {missing} missing, {twice} more than once, each with "
            f"{CLUSTER_ID_ATTRIBUTE}"
        )

    def stop(self) -> None:
        self._server.stop(None)


def _stamp_request_time(record: logging.LogRecord) -> bool:
    # The request's own time rather than the moment the demo logs it, so that the p99
    # over time spans the traffic's ten minutes as in the `Label` demo.
    record.created = record.__dict__.pop(_REQUEST_TIME)
    return True


def log_traffic(traffic: pa.Table, endpoint: str, batch_size: int) -> None:
    """Logs every row of `traffic` through the SDK to the OTLP/gRPC `endpoint` (host:port);
    returns once every Export was answered.

    Raises:
        RuntimeError: the SDK could not deliver everything within `FLUSH_TIMEOUT_S`.
    """
    rows = traffic.num_rows
    loggers: dict[str, logging.Logger] = {}
    handlers: list[tuple[logging.Logger, LoggingHandler, LoggerProvider]] = []
    for source in sorted(set(traffic.column("source").to_pylist())):
        provider = LoggerProvider(resource=Resource.create({"service.name": source}))
        exporter = OTLPLogExporter(endpoint=endpoint, insecure=True)
        # A queue as long as the traffic: the processor drops records past its queue.
        processor = BatchLogRecordProcessor(
            exporter, max_export_batch_size=batch_size, max_queue_size=max(rows, batch_size)
        )
        provider.add_log_record_processor(processor)
        handler = LoggingHandler(logger_provider=provider)
        handler.addFilter(_stamp_request_time)
        log = logging.getLogger(f"logclust.demo.otlp.{source}")
        log.propagate, log.level = False, logging.INFO
        log.addHandler(handler)
        loggers[source] = log
        handlers.append((log, handler, provider))
    try:
        columns: list[list[Any]] = [
            traffic.column(c).to_pylist() for c in ("body", "latency_ms", "source")
        ]
        times = traffic.column("time").cast(pa.int64()).to_numpy() / 1000.0
        for i, (body, latency, source) in enumerate(zip(*columns, strict=True)):
            extra = {RECORD_ID: i, "latency_ms": latency, _REQUEST_TIME: float(times[i])}
            loggers[source].info(body, extra=extra)
        for _, _, provider in handlers:
            if not provider.force_flush(int(FLUSH_TIMEOUT_S * 1000)):
                raise RuntimeError(f"The SDK did not deliver the logs within {FLUSH_TIMEOUT_S} s")
    finally:
        for log, handler, provider in handlers:
            log.removeHandler(handler)
            provider.shutdown()


def send(
    traffic: pa.Table, config: ServerConfig, labeler: Any, batch_size: int
) -> tuple[pa.Table, float, Answers, str]:
    """The demo's traffic through the SDK into a sidecar started from `config` with an
    OTLP receiver forwarding to a `NextHop`.

    Returns:
        The traffic with the `cluster_id` each row had at the next hop, the seconds the
        SDK took to deliver everything, the sidecar's answers (`demo_answers.query`), and
        one line on what arrived at the next hop.
    """
    hop = NextHop()
    try:
        otlp = OtlpConfig(listen="127.0.0.1:0", forward=f"127.0.0.1:{hop.port}")
        server, port = create_server(replace(config, otlp=otlp), labeler=labeler)
        try:
            assert server.otlp is not None  # config.otlp is set
            t0 = time.perf_counter()
            log_traffic(traffic, f"127.0.0.1:{server.otlp.port}", batch_size)
            seconds = time.perf_counter() - t0
            hop.wait_for(traffic.num_rows, DELIVERY_TIMEOUT_S)
            with Client(f"127.0.0.1:{port}") as client:
                answers = query(client)
        finally:
            server.stop(grace=None)
    finally:
        hop.stop()
    ids = pa.array(hop.cluster_ids(traffic.num_rows), pa.int32())
    return traffic.append_column("cluster_id", ids), seconds, answers, hop.note(traffic.num_rows)
