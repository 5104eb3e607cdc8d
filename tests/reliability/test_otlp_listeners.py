"""OTLP listeners under slow, many and hostile clients, on a real server (port 0)."""

from __future__ import annotations

import asyncio
import gzip
import json
import socket
import time
from collections.abc import Callable, Iterator

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from logclust.otlp.config import OtlpConfig
from logclust.rpc.admission import Admission
from logclust.server import ServerConfig, SidecarServer, create_server
from logclust.server.memory import raise_open_file_limit
from logclust.sidecar.config import StreamLabelerConfig
from tests.fakes import FakeLabeler, SlowLabeler
from tests.reliability.conftest import CLUSTERS, hold_after_placement, sizes

EXPORT = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"
OTLP = OtlpConfig(
    listen="127.0.0.1:0",
    http_listen="127.0.0.1:0",
    max_request_bytes=1 << 20,
    http_header_timeout_s=0.5,
    http_body_timeout_s=0.5,
    http_idle_timeout_s=0.5,
    http_max_connections=4,
)


def _request(
    n: int, service: str = "checkout", start: int = 0, body: str = "GET /item/{}"
) -> ExportLogsServiceRequest:
    latency = [KeyValue(key="latency_ms", value=AnyValue(double_value=5.0))]
    records = [
        LogRecord(body=AnyValue(string_value=body.format(start + i)), attributes=latency)
        for i in range(n)
    ]
    resource = Resource(
        attributes=[KeyValue(key="service.name", value=AnyValue(string_value=service))]
    )
    return ExportLogsServiceRequest(
        resource_logs=[ResourceLogs(resource=resource, scope_logs=[ScopeLogs(log_records=records)])]
    )


def _server(labeler: FakeLabeler | None = None, **kwargs: object) -> SidecarServer:
    otlp = kwargs.pop("otlp", OTLP)
    cfg = ServerConfig(
        listen="127.0.0.1:0",
        labeler=StreamLabelerConfig(clusters=CLUSTERS, max_sources=kwargs.pop("max_sources", 64)),  # type: ignore[arg-type]
        otlp=otlp,  # type: ignore[arg-type]
        **kwargs,  # type: ignore[arg-type]
    )
    return create_server(cfg, labeler=labeler or FakeLabeler())[0]


@pytest.fixture
def srv() -> Iterator[SidecarServer]:
    with _server() as s:
        yield s


def _rows(srv: SidecarServer, source: str = "checkout") -> int:
    """Rows recorded for `source` (its latency counts: every row counts once)."""
    if source not in srv.sidecar.labeler.stream.sources:
        return 0
    return int(sum(srv.sidecar.latency(source=source).column("count").to_pylist()))


def _wait(check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def _http(port: int, head: str, body: bytes = b"", timeout: float = 10.0) -> bytes:
    """Sends `head` and `body` on a new connection; everything the server answers."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(head.encode() + b"\r\n\r\n" + body)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
            if b"\r\n\r\n" in out and b"Connection: close" not in out:
                break
        return out


def _post_head(length: int, ctype: str = "application/x-protobuf", **headers: str) -> str:
    extra = "".join(f"\r\n{k}: {v}" for k, v in headers.items())
    head = f"POST /v1/logs HTTP/1.1\r\nHost: x\r\nContent-Type: {ctype}"
    return f"{head}\r\nContent-Length: {length}{extra}"


def _status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


# -- OTLP/HTTP: slow and many clients ---------------------------------------------------------


def test_a_dripping_client_is_cut_off_by_the_header_timeout(srv: SidecarServer) -> None:
    port = srv.otlp.http_port  # type: ignore[union-attr]
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"P")
        started = time.monotonic()
        for byte in b"OST /v1/logs HTTP/1.1\r\n":
            try:
                s.sendall(bytes([byte]))
            except OSError:
                break
            if s.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) if _readable(s) else False:
                break
            time.sleep(0.1)
        assert s.recv(1) == b""  # closed by the server
    assert time.monotonic() - started < 5


def _readable(s: socket.socket) -> bool:
    import select

    return bool(select.select([s], [], [], 0)[0])


def test_an_idle_keep_alive_is_closed(srv: SidecarServer) -> None:
    port = srv.otlp.http_port  # type: ignore[union-attr]
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        assert s.recv(1) == b""  # closed after http_idle_timeout_s, not by our timeout


def test_at_the_connection_cap_idle_ones_make_room_and_busy_ones_get_503(
    srv: SidecarServer,
) -> None:
    assert srv.otlp is not None and srv.otlp.http is not None
    http, port = srv.otlp.http, srv.otlp.http_port
    idle = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(4)]
    _wait(lambda: http.connections == 4)
    body = _request(2).SerializeToString()
    assert _status(_http(port, _post_head(len(body)), body)) == 200  # an idle one closed
    assert http.closed_idle >= 1
    for s in idle:
        s.close()
    busy = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(4)]
    for s in busy:
        s.sendall(b"POST /v1/logs HTTP/1.1\r\n")  # headers started: not idle
    _wait(lambda: http.connections == 4 and all(not c.idle for c in http._conns))
    answer = _http(port, _post_head(len(body)), body)
    assert _status(answer) == 503 and b"Retry-After: 1" in answer
    for s in busy:
        s.close()


def test_withheld_bodies_hold_the_budget_not_more() -> None:
    with _server(max_inflight_bytes=1 << 20) as srv:
        port = srv.otlp.http_port  # type: ignore[union-attr]
        with socket.create_connection(("127.0.0.1", port), timeout=10) as held:
            held.sendall((_post_head(900_000) + "\r\n\r\n").encode() + b"x" * 1000)
            _wait(lambda: srv.otlp.admission.bytes >= 900_000)  # type: ignore[union-attr]
            answer = _http(port, _post_head(900_000), b"")
            assert _status(answer) == 429 and b"Retry-After:" in answer
            assert b"max_inflight_bytes" in answer
            assert _status(held.recv(4096)) == 408  # the body never came
        _wait(lambda: srv.otlp.admission.bytes == 0)  # type: ignore[union-attr]


def test_gzip_bombs_are_bounded_while_inflating() -> None:
    with _server(max_inflight_bytes=1 << 20) as srv:
        port = srv.otlp.http_port  # type: ignore[union-attr]
        bomb = gzip.compress(b"\x00" * (4 << 20))
        answer = _http(port, _post_head(len(bomb), **{"Content-Encoding": "gzip"}), bomb)
        assert _status(answer) == 413  # alone: up to max_request_bytes, then refused
        _wait(lambda: srv.otlp.admission.bytes == 0)  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("body", "headers", "code"),
    [
        (b"x", {"Content-Type": "text/plain"}, 415),
        (b"\x28\xb5\x2f\xfd", {"Content-Encoding": "zstd"}, 415),
        (b"\x1f\x8b\x08\x00garbage-after-a-gzip-header", {"Content-Encoding": "gzip"}, 400),
        (b"[" * 100_000 + b"]" * 100_000, {"Content-Type": "application/json"}, 400),
        (
            json.dumps(
                {
                    "resourceLogs": [
                        {
                            "scopeLogs": [
                                {
                                    "logRecords": [
                                        {
                                            "body": {
                                                "kvlistValue": {
                                                    "values": [
                                                        {
                                                            "key": "k",
                                                            "value": {
                                                                "arrayValue": {"values": [{}]}
                                                            },
                                                        }
                                                    ]
                                                }
                                            }
                                        }
                                    ]
                                }
                            ]
                        }
                    ]
                }
            )
            .encode()
            .replace(b"{}", b'{"arrayValue": {"values": [' * 300 + b"{}" + b"]}}" * 300),
            {"Content-Type": "application/json"},
            400,
        ),
    ],
)
def test_smaller_refusals(
    srv: SidecarServer, body: bytes, headers: dict[str, str], code: int
) -> None:
    port = srv.otlp.http_port  # type: ignore[union-attr]
    ctype = headers.pop("Content-Type", "application/x-protobuf")
    answer = _http(port, _post_head(len(body), ctype, **headers), body)
    assert _status(answer) == code, answer[:300]
    assert _rows(srv) == 0


# -- OTLP/gRPC: deadlines, retries, admission ---------------------------------------------------


def _export(
    port: int, request: ExportLogsServiceRequest, timeout: float
) -> ExportLogsServiceResponse:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_unary(
            EXPORT, response_deserializer=ExportLogsServiceResponse.FromString
        )
        return call(request.SerializeToString(), timeout=timeout)  # type: ignore[no-any-return]


def test_an_export_past_its_deadline_is_not_recorded_and_its_retry_counts_once() -> None:
    # JSON bodies: placed by their embeddings, so the slow model holds the export (a
    # log line would open its cluster by its template without the model).
    slow = '{{"item": {}}}'
    with _server(SlowLabeler(delay_s=0.6), label_threads=1) as srv:
        assert srv.otlp is not None and srv.otlp.grpc_service is not None
        port = srv.otlp.port
        with pytest.raises(grpc.RpcError) as err:
            _export(port, _request(10, body=slow), timeout=0.2)
        assert err.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
        _wait(lambda: srv.otlp.receiver.abandoned == 1)  # type: ignore[union-attr]
        assert _rows(srv) == 0
        _export(port, _request(10, body=slow), timeout=30)  # the exporter's retry
        assert _rows(srv) == 10


def test_an_export_whose_caller_left_during_its_placement_counts_once_with_its_retry() -> None:
    with _server(label_threads=1) as srv:
        assert srv.otlp is not None
        port = srv.otlp.port
        gate, held = hold_after_placement(srv)
        with pytest.raises(grpc.RpcError) as err:
            _export(port, _request(10), timeout=3.0)  # time to reach the placement
        assert err.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
        assert held.is_set()  # placed when its caller left: the clusters opened stay
        gate.set()
        _wait(lambda: srv.otlp.receiver.abandoned == 1)  # type: ignore[union-attr]
        assert _rows(srv) == 0 and sizes(srv) == 0
        _export(port, _request(10), timeout=30)  # the exporter's retry
        assert _rows(srv) == 10 and sizes(srv) == 10  # once
        assert srv.otlp.receiver.late_answers._value.get() == 0


def test_exports_over_the_budget_get_retry_info() -> None:
    with _server(SlowLabeler(delay_s=0.5), label_threads=1, max_inflight_batches=1) as srv:
        port = srv.otlp.port  # type: ignore[union-attr]
        admission = srv.otlp.admission  # type: ignore[union-attr]
        ticket = admission.admit(1, "held by the test")
        with pytest.raises(grpc.RpcError) as err:
            _export(port, _request(3), timeout=30)
        ticket.release()
        assert err.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        status = rpc_status.from_call(err.value)
        info = error_details_pb2.RetryInfo()
        assert status is not None and status.details[0].Unpack(info)
        assert _export(port, _request(3), timeout=30).partial_success.rejected_log_records == 0


# -- sources ---------------------------------------------------------------------------------


def test_partial_success_at_the_source_cap_and_a_share_kept_for_label() -> None:
    with _server(max_sources=4) as srv:  # OTLP may open 2
        port = srv.otlp.port  # type: ignore[union-attr]
        request = _request(100, "known")
        request.resource_logs.extend(_request(1, "new-1").resource_logs)
        request.resource_logs.extend(_request(1, "new-2").resource_logs)
        ps = _export(port, request, timeout=30).partial_success
        assert ps.rejected_log_records == 1 and "source limit" in ps.error_message
        assert "new-2" in ps.error_message
        assert _rows(srv, "known") == 100 and _rows(srv, "new-1") == 1
        for i in range(5):  # an unauthenticated sender inventing names gets no more
            ps = _export(port, _request(1, f"spam-{i}"), timeout=30).partial_success
            assert ps.rejected_log_records == 1
        srv.sidecar.labeler.label(["a Label client's line"], source="label-client")
        assert "label-client" in srv.sidecar.labeler.stream.sources


# -- the process ------------------------------------------------------------------------------


def test_open_file_limit_is_raised_to_the_hard_limit() -> None:
    import resource

    raise_open_file_limit()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert soft == hard or hard == resource.RLIM_INFINITY


def test_admission_waiters_are_served_in_order_and_refused_past_their_wait() -> None:
    admission = Admission(max_requests=2, max_bytes=100)

    async def scenario() -> list[str]:
        first = admission.admit(80)
        second = admission.admit(10)
        order: list[str] = []

        async def waiter(name: str, wait: float) -> None:
            try:
                with await admission.wait(50, wait):
                    order.append(name)
            except Exception as e:  # noqa: BLE001 - recorded for the assertion
                order.append(f"{name}: {type(e).__name__}")

        tasks = [asyncio.create_task(waiter("a", 5)), asyncio.create_task(waiter("late", 0.05))]
        await asyncio.sleep(0.2)
        first.release()
        second.release()
        await asyncio.gather(*tasks)
        return order

    assert asyncio.run(scenario()) == ["late: RetryLaterError", "a"]
    assert admission.requests == 0 and admission.bytes == 0
