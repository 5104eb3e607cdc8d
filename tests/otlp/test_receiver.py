"""OTLP logs in and out: the OpenTelemetry SDK as sender, a downstream receiver in the test."""

from __future__ import annotations

import gzip
import json
import logging
import math
import socket
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import replace

import grpc
import numpy as np
import pytest
from google.protobuf import json_format
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http._log_exporter import (
    OTLPLogExporter as HttpLogExporter,
)
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, LogRecordExporter
from opentelemetry.sdk.resources import Resource as SdkResource
from sklearn.metrics import adjusted_rand_score

from logclust.cli import main as cli
from logclust.cluster.config import StreamClusterConfig
from logclust.otlp.config import OtlpConfig
from logclust.otlp.mapping import (
    CLUSTER_ATTRIBUTE,
    CLUSTER_ID_ATTRIBUTE,
    GROUP_ID_ATTRIBUTE,
    RecordMapper,
)
from logclust.server import ServerConfig, SidecarServer, create_server
from logclust.sidecar.config import StreamLabelerConfig
from tests.fakes import FakeLabeler, fake_traffic

INVALID, EXHAUSTED = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED
CLUSTERS = StreamClusterConfig(reservoir_size=1000, background_consolidation=False)
OTLP = OtlpConfig(
    listen="127.0.0.1:0",
    http_listen="127.0.0.1:0",
    retry_initial_s=0.05,
    retry_max_s=0.2,
    max_request_bytes=256 * 1024,
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(check: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def _attrs(rec: LogRecord) -> dict[str, object]:
    return {kv.key: getattr(kv.value, kv.value.WhichOneof("value")) for kv in rec.attributes}


class Downstream(logs_service_pb2_grpc.LogsServiceServicer):
    """The next hop: an OTLP/gRPC logs receiver that keeps every record it gets."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.records: list[tuple[str, LogRecord]] = []  # (service.name, record)
        self._lock = threading.Lock()
        self.server: grpc.Server | None = None

    def Export(  # noqa: N802 - gRPC method name
        self, request: ExportLogsServiceRequest, context: grpc.ServicerContext
    ) -> ExportLogsServiceResponse:
        with self._lock:
            for rl in request.resource_logs:
                service = _attrs_resource(rl)
                for sl in rl.scope_logs:
                    self.records.extend((service, r) for r in sl.log_records)
        return ExportLogsServiceResponse()

    def start(self) -> Downstream:
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        logs_service_pb2_grpc.add_LogsServiceServicer_to_server(self, self.server)
        assert self.server.add_insecure_port(f"127.0.0.1:{self.port}") == self.port
        self.server.start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop(None)

    def ids(self) -> Counter[int]:
        with self._lock:
            return Counter(int(_attrs(r)["record_id"]) for _, r in self.records)  # type: ignore[call-overload]


def _attrs_resource(rl: ResourceLogs) -> str:
    return next(
        (kv.value.string_value for kv in rl.resource.attributes if kv.key == "service.name"), ""
    )


@pytest.fixture
def downstream() -> Iterator[Downstream]:
    d = Downstream(_free_port())
    yield d
    d.stop()


def _sidecar(otlp: OtlpConfig) -> tuple[SidecarServer, int]:
    labeler = StreamLabelerConfig(clusters=CLUSTERS)
    cfg = ServerConfig(listen="127.0.0.1:0", flush_interval_s=0.2, labeler=labeler, otlp=otlp)
    return create_server(cfg, labeler=FakeLabeler())


@pytest.fixture
def forwarding(downstream: Downstream) -> Iterator[SidecarServer]:
    srv, _ = _sidecar(replace(OTLP, forward=f"127.0.0.1:{downstream.port}"))
    with srv:
        yield srv


def _sdk_logger(exporter: LogRecordExporter, service: str) -> tuple[logging.Logger, LoggerProvider]:
    provider = LoggerProvider(resource=SdkResource.create({"service.name": service}))
    provider.add_log_record_processor(BatchLogRecordProcessor(exporter, schedule_delay_millis=50))
    log = logging.getLogger(f"otlp-test-{id(provider)}")
    log.propagate = False
    log.setLevel(logging.INFO)
    log.addHandler(LoggingHandler(logger_provider=provider))
    return log, provider


def _send_traffic(exporter: LogRecordExporter, rows: int, service: str = "frontend") -> list[str]:
    """Logs demo traffic through the SDK's LoggingHandler; returns the kind of each record id."""
    table = fake_traffic(rows, seed=3)
    log, provider = _sdk_logger(exporter, service)
    kinds = table.column("kind").to_pylist()
    for i, (body, lat) in enumerate(
        zip(table.column("body").to_pylist(), table.column("latency_ms").to_pylist(), strict=True)
    ):
        log.info(body, extra={"record_id": i, "latency_ms": float(lat)})
    assert provider.force_flush(20_000)
    provider.shutdown()
    return kinds


def _request(records: list[LogRecord], service: str = "checkout") -> ExportLogsServiceRequest:
    res = Resource(attributes=[KeyValue(key="service.name", value=AnyValue(string_value=service))])
    return ExportLogsServiceRequest(
        resource_logs=[ResourceLogs(resource=res, scope_logs=[ScopeLogs(log_records=records)])]
    )


def _record(i: int, body: str | None = None, **attrs: AnyValue) -> LogRecord:
    rec = LogRecord(body=AnyValue(string_value=body or f"GET /cart?id={i} 200"))
    rec.attributes.append(KeyValue(key="record_id", value=AnyValue(int_value=i)))
    attrs.setdefault("latency_ms", AnyValue(double_value=1.0 + i % 7))
    for k, v in attrs.items():
        rec.attributes.append(KeyValue(key=k, value=v))
    return rec


def _export(port: int, payload: bytes) -> ExportLogsServiceResponse:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_unary(
            "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
            response_deserializer=ExportLogsServiceResponse.FromString,
        )
        return call(payload, timeout=10)  # type: ignore[no-any-return]


def _post(port: int, body: bytes, ctype: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/logs",
        data=body,
        headers={"Content-Type": ctype, **headers},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def _latency_count(srv: SidecarServer, source: str) -> int:
    return int(sum(srv.sidecar.latency(source=source).column("count").to_pylist()))


# -- the SDK end to end ----------------------------------------------------------------------


def test_sdk_records_arrive_once_labelled(
    forwarding: SidecarServer, downstream: Downstream, capsys: pytest.CaptureFixture[str]
) -> None:
    downstream.start()
    exporter = OTLPLogExporter(endpoint=f"127.0.0.1:{forwarding.otlp.port}", insecure=True)  # type: ignore[union-attr]
    kinds = _send_traffic(exporter, 1200)
    _wait(lambda: len(downstream.records) >= len(kinds))
    forwarding.stop(grace=1)
    assert downstream.ids() == Counter(range(len(kinds)))  # each exactly once
    by_id: dict[int, dict[str, object]] = {}
    for service, rec in downstream.records:
        a = _attrs(rec)
        assert service == "frontend" and isinstance(a[CLUSTER_ID_ATTRIBUTE], int)
        assert isinstance(a[GROUP_ID_ATTRIBUTE], int) and a[GROUP_ID_ATTRIBUTE] >= 0
        assert isinstance(a[CLUSTER_ATTRIBUTE], str) and a[CLUSTER_ATTRIBUTE]
        assert a["latency_ms"] >= 0  # everything else unchanged
        by_id[int(a["record_id"])] = a  # type: ignore[call-overload]
    ids = [by_id[i][CLUSTER_ID_ATTRIBUTE] for i in range(len(kinds))]
    assert adjusted_rand_score(kinds, ids) >= 0.95
    assert _latency_count(forwarding, "frontend") == len(kinds)


def test_cli_latency_and_clusters_answer_for_otlp_sources(
    capsys: pytest.CaptureFixture[str],
) -> None:
    srv, port = _sidecar(OTLP)  # no forwarding: label and record only
    with srv:
        exporter = OTLPLogExporter(endpoint=f"127.0.0.1:{srv.otlp.port}", insecure=True)  # type: ignore[union-attr]
        kinds = _send_traffic(exporter, 600, service="shop")
        _wait(lambda: _latency_count(srv, "shop") == len(kinds))
        addr = f"127.0.0.1:{port}"
        assert cli.main(["latency", "--addr", addr, "--source", "shop", "--format", "json"]) == 0
        rows = json.loads(capsys.readouterr().out)
        assert sum(r["count"] for r in rows) == len(kinds) and all(r["p99"] > 0 for r in rows)
        assert cli.main(["clusters", "--addr", addr, "--source", "shop", "--format", "json"]) == 0
        clusters = json.loads(capsys.readouterr().out)
        assert len(clusters) >= len(set(kinds)) and {c["source"] for c in clusters} == {"shop"}


def test_downstream_down_then_up_loses_nothing(
    forwarding: SidecarServer, downstream: Downstream
) -> None:
    exporter = OTLPLogExporter(endpoint=f"127.0.0.1:{forwarding.otlp.port}", insecure=True)  # type: ignore[union-attr]
    kinds = _send_traffic(exporter, 600)  # accepted: the queue has room
    queue = forwarding.otlp.queue  # type: ignore[union-attr]
    assert queue is not None and queue.records == len(kinds)
    _wait(lambda: queue._retries._value.get() >= 3)  # the next hop refused a few times
    assert not downstream.records
    downstream.start()
    _wait(lambda: len(downstream.records) >= len(kinds))
    _wait(lambda: queue.records == 0)
    assert downstream.ids() == Counter(range(len(kinds)))


def test_shutdown_drains_the_queue(downstream: Downstream) -> None:
    srv, _ = _sidecar(replace(OTLP, forward=f"127.0.0.1:{downstream.port}"))
    with srv:
        port = srv.otlp.port  # type: ignore[union-attr]
        for b in range(5):
            _export(port, _request([_record(b * 100 + i) for i in range(100)]).SerializeToString())
        threading.Timer(0.3, downstream.start).start()  # up while the server is stopping
        srv.stop(grace=5)
    assert downstream.ids() == Counter(range(500))


# -- back-pressure, refusals, malformed input -------------------------------------------------


def test_full_queue_is_resource_exhausted_with_retry_info(downstream: Downstream) -> None:
    cfg = replace(OTLP, forward=f"127.0.0.1:{downstream.port}", queue_records=10)
    srv, _ = _sidecar(cfg)  # the next hop stays down
    with srv:
        port, http_port = srv.otlp.port, srv.otlp.http_port  # type: ignore[union-attr]
        _export(port, _request([_record(i) for i in range(8)]).SerializeToString())
        with pytest.raises(grpc.RpcError) as err:
            _export(port, _request([_record(i) for i in range(8, 16)]).SerializeToString())
        assert err.value.code() is EXHAUSTED and "queue full" in err.value.details()
        status = rpc_status.from_call(err.value)
        assert status is not None
        info = error_details_pb2.RetryInfo()
        assert status.details[0].Unpack(info) and info.retry_delay.ToTimedelta().total_seconds() > 0
        code, headers, _ = _post(
            http_port,
            _request([_record(i) for i in range(90, 93)]).SerializeToString(),
            "application/x-protobuf",
        )
        assert code == 429 and int(headers["Retry-After"]) >= 1
        assert _latency_count(srv, "checkout") == 8  # refused requests were not labelled
        downstream.start()
        _wait(lambda: len(downstream.records) == 8)
        _export(port, _request([_record(i) for i in range(8, 16)]).SerializeToString())
        _wait(lambda: len(downstream.records) == 16)
    assert downstream.ids() == Counter(range(16))


def test_invalid_records_refused_alone(forwarding: SidecarServer, downstream: Downstream) -> None:
    downstream.start()
    good = [_record(i) for i in range(5)]
    bad = [
        LogRecord(),  # no body
        LogRecord(body=AnyValue(bytes_value=b"\x00\x01")),
        _record(100, latency_ms=AnyValue(double_value=-1.0)),
        _record(101, latency_ms=AnyValue(string_value="fast")),
    ]
    records = good[:2] + bad[:2] + good[2:] + bad[2:]
    response = _export(forwarding.otlp.port, _request(records).SerializeToString())  # type: ignore[union-attr]
    ps = response.partial_success
    assert ps.rejected_log_records == 4
    assert "must be a string" in ps.error_message and ">= 0" in ps.error_message
    _wait(lambda: len(downstream.records) == 5)
    assert downstream.ids() == Counter(range(5))
    assert _latency_count(forwarding, "checkout") == 5


def test_malformed_and_oversized_grpc_requests(
    forwarding: SidecarServer, downstream: Downstream
) -> None:
    downstream.start()
    port = forwarding.otlp.port  # type: ignore[union-attr]
    _export(port, _request([_record(0)]).SerializeToString())
    with pytest.raises(grpc.RpcError) as err:
        _export(port, b"\xff\xff\xff not protobuf")
    assert err.value.code() is INVALID and "ExportLogsServiceRequest" in err.value.details()
    big = _request([_record(1, body="x" * 300_000)]).SerializeToString()
    with pytest.raises(grpc.RpcError) as err:
        _export(port, big)
    assert err.value.code() is EXHAUSTED
    _export(port, _request([_record(2)]).SerializeToString())
    _wait(lambda: len(downstream.records) == 2)
    assert downstream.ids() == Counter([0, 2])
    assert _latency_count(forwarding, "checkout") == 2


# -- OTLP/HTTP --------------------------------------------------------------------------------


def test_http_protobuf_json_gzip_and_errors(
    forwarding: SidecarServer, downstream: Downstream
) -> None:
    downstream.start()
    port = forwarding.otlp.http_port  # type: ignore[union-attr]
    pb = _request([_record(0)]).SerializeToString()
    code, headers, body = _post(port, pb, "application/x-protobuf")
    assert code == 200 and headers["Content-Type"] == "application/x-protobuf"
    assert ExportLogsServiceResponse.FromString(body).partial_success.rejected_log_records == 0
    doc = json.loads(json_format.MessageToJson(_request([_record(1)])))
    doc["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0]["traceId"] = "ab" * 16  # hex
    code, _, body = _post(port, json.dumps(doc).encode(), "application/json")
    assert code == 200 and json.loads(body) == {}
    code, _, _ = _post(
        port,
        gzip.compress(_request([_record(2)]).SerializeToString()),
        "application/x-protobuf",
        **{"Content-Encoding": "gzip"},
    )
    assert code == 200
    code, _, body = _post(port, b"{not json", "application/json")
    assert code == 400 and "OTLP/JSON" in json.loads(body)["message"]
    assert _post(port, b"\xff\xff garbage", "application/x-protobuf")[0] == 400
    assert _post(port, pb, "text/plain")[0] == 415
    assert _post(port, b"x" * 300_000, "application/x-protobuf")[0] == 413
    bomb = gzip.compress(b"\x00" * 1_000_000)
    assert _post(port, bomb, "application/x-protobuf", **{"Content-Encoding": "gzip"})[0] == 413
    _wait(lambda: len(downstream.records) == 3)
    assert downstream.ids() == Counter(range(3))


def test_http_sdk_exporter(forwarding: SidecarServer, downstream: Downstream) -> None:
    downstream.start()
    endpoint = f"http://127.0.0.1:{forwarding.otlp.http_port}/v1/logs"  # type: ignore[union-attr]
    kinds = _send_traffic(HttpLogExporter(endpoint=endpoint), 300)
    _wait(lambda: len(downstream.records) >= len(kinds))
    assert downstream.ids() == Counter(range(len(kinds)))


# -- mapping -----------------------------------------------------------------------------------


def test_mapping_body_source_latency_time() -> None:
    cfg = replace(OTLP, body_attribute="http.request.body", latency_attribute="duration:s")
    kv = KeyValueList(
        values=[
            KeyValue(key="b", value=AnyValue(int_value=2)),
            KeyValue(key="a", value=AnyValue(string_value="é")),
        ]
    )
    records = [
        LogRecord(body=AnyValue(kvlist_value=kv), time_unix_nano=2_000_000_000),
        LogRecord(
            body=AnyValue(array_value=ArrayValue(values=[AnyValue(bool_value=True)])),
            observed_time_unix_nano=3_000_000_000,
        ),
        _record(
            0,
            **{
                "http.request.body": AnyValue(string_value="qty=1"),
                "duration": AnyValue(double_value=0.25),
            },
        ),
    ]
    mapped = RecordMapper(cfg).map(_request(records, service="cart"))
    t = mapped.table.to_pydict()
    assert t["body"] == ['{"a":"é","b":2}', "[true]", "qty=1"]
    assert t["source"] == ["cart"] * 3
    assert t["latency_ms"] == [None, None, 250.0]
    times = [None if v is None else v.timestamp() for v in t["time"]]
    assert times == [2.0, 3.0, None]
    ns = RecordMapper(replace(OTLP, latency_attribute="d:ns", source_attribute="team"))
    m2 = ns.map(_request([_record(0, d=AnyValue(int_value=5_000_000))]))
    assert m2.table.column("latency_ms").to_pylist() == [5.0]
    assert m2.table.column("source").to_pylist() == [None]  # -> "default" in the contract
    assert np.isclose(m2.table.column("latency_ms")[0].as_py(), 5.0)
    # The inline double path and the checked one agree: 0 is a latency, NaN and inf not.
    odd = [0.0, math.nan, math.inf, 1e-300, 7.5]
    m3 = RecordMapper(OTLP).map(
        _request([_record(i, latency_ms=AnyValue(double_value=v)) for i, v in enumerate(odd)])
    )
    assert m3.table.column("latency_ms").to_pylist() == [0.0, 1e-300, 7.5]
    assert [i for _, i in m3.rejected] == [1, 2]


def test_config_and_flags() -> None:
    with pytest.raises(ValueError, match="latency_attribute"):
        OtlpConfig(listen="127.0.0.1:0", latency_attribute="d:min")
    with pytest.raises(ValueError, match="listen or http_listen"):
        OtlpConfig()
    args = cli.build_parser().parse_args(
        [
            "serve",
            "--otlp-listen",
            "0.0.0.0:4317",
            "--otlp-forward",
            "collector:4317",
            "--otlp-queue-records",
            "1000",
            "--otlp-latency-attribute",
            "duration:ns",
        ]
    )
    from logclust.cli.service import otlp_config

    cfg = otlp_config(args)
    assert cfg is not None and cfg.forward == "collector:4317" and cfg.queue_records == 1000
    assert cfg.latency_key() == ("duration", 1e-6)


def test_labels_of_an_earlier_hop_are_replaced(
    forwarding: SidecarServer, downstream: Downstream
) -> None:
    downstream.start()
    rec = _record(0, **{CLUSTER_ID_ATTRIBUTE: AnyValue(int_value=999)})
    _export(forwarding.otlp.port, _request([rec, _record(1)]).SerializeToString())  # type: ignore[union-attr]
    _wait(lambda: len(downstream.records) == 2)
    for _, got in downstream.records:
        keys = [kv.key for kv in got.attributes]
        assert keys.count(CLUSTER_ID_ATTRIBUTE) == 1 and keys.count(CLUSTER_ATTRIBUTE) == 1
        assert _attrs(got)[CLUSTER_ID_ATTRIBUTE] != 999
