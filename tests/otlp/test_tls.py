"""TLS on every listener: the OTLP receivers serve the server's TLS (and mTLS), a
plaintext client is refused on each unless the listener opts out, and the forwarder
dials the next hop with TLS settings of its own."""

from __future__ import annotations

import http.client
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import replace

import grpc
import pytest
import requests
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http._log_exporter import (
    OTLPLogExporter as HttpLogExporter,
)
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, LogRecordExporter
from opentelemetry.sdk.resources import Resource as SdkResource

from logclust.cli import main as cli
from logclust.cli.service import otlp_config
from logclust.client import Client, ClientTls
from logclust.cluster.config import StreamClusterConfig
from logclust.otlp import http as otlp_http
from logclust.otlp.config import OtlpConfig
from logclust.otlp.mapping import CLUSTER_ID_ATTRIBUTE
from logclust.rpc.tls import TlsConfig
from logclust.server import ServerConfig, SidecarServer, create_server
from logclust.sidecar.config import StreamLabelerConfig
from tests.fakes import FakeLabeler
from tests.pki import Pki, make_pki

CLUSTERS = StreamClusterConfig(reservoir_size=1000, background_consolidation=False)
OTLP = OtlpConfig(
    listen="127.0.0.1:0", http_listen="127.0.0.1:0", retry_initial_s=0.05, retry_max_s=0.2
)
EXPORT = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"
UNAVAILABLE = grpc.StatusCode.UNAVAILABLE


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def _wait(check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def _sidecar(tls: TlsConfig | None, otlp: OtlpConfig = OTLP) -> tuple[SidecarServer, int]:
    labeler = StreamLabelerConfig(clusters=CLUSTERS)
    cfg = ServerConfig(listen="127.0.0.1:0", labeler=labeler, tls=tls, otlp=otlp)
    return create_server(cfg, labeler=FakeLabeler())


def _payload(n: int, service: str) -> bytes:
    res = Resource(attributes=[KeyValue(key="service.name", value=AnyValue(string_value=service))])
    latency = KeyValue(key="latency_ms", value=AnyValue(double_value=2.0))
    records = [
        LogRecord(body=AnyValue(string_value=f"GET /cart?id={i} 200"), attributes=[latency])
        for i in range(n)
    ]
    request = ExportLogsServiceRequest(
        resource_logs=[ResourceLogs(resource=res, scope_logs=[ScopeLogs(log_records=records)])]
    )
    return request.SerializeToString()


def _labelled(srv: SidecarServer, service: str) -> int:
    """Records of `service` the sidecar labelled (each has a latency)."""
    return int(sum(srv.sidecar.latency(source=service).column("count").to_pylist()))


def _grpc_export(
    port: int, credentials: grpc.ChannelCredentials | None, service: str
) -> ExportLogsServiceResponse:
    target = f"127.0.0.1:{port}"
    channel = (
        grpc.insecure_channel(target)
        if credentials is None
        else grpc.secure_channel(target, credentials)
    )
    with channel:
        call = channel.unary_unary(
            EXPORT, response_deserializer=ExportLogsServiceResponse.FromString
        )
        return call(_payload(3, service), timeout=10)  # type: ignore[no-any-return]


def _http_post(port: int, context: ssl.SSLContext | None, service: str) -> int:
    """POSTs 3 records to /v1/logs (HTTPS with `context`); the HTTP status."""
    conn = (
        http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        if context is None
        else http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=context)
    )
    try:
        conn.request(
            "POST",
            "/v1/logs",
            body=_payload(3, service),
            headers={"Content-Type": "application/x-protobuf"},
        )
        return conn.getresponse().status
    finally:
        conn.close()


def _client_context(pki: Pki, with_cert: bool) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=pki.ca)
    if with_cert:
        ctx.load_cert_chain(pki.client_cert, pki.client_key)
    return ctx


def _channel_credentials(pki: Pki, with_cert: bool) -> grpc.ChannelCredentials:
    def read(path: str) -> bytes:
        with open(path, "rb") as f:
            return f.read()

    if not with_cert:
        return grpc.ssl_channel_credentials(read(pki.ca))
    return grpc.ssl_channel_credentials(read(pki.ca), read(pki.client_key), read(pki.client_cert))


def _send_with_sdk(exporter: LogRecordExporter, service: str, n: int) -> None:
    provider = LoggerProvider(resource=SdkResource.create({"service.name": service}))
    provider.add_log_record_processor(BatchLogRecordProcessor(exporter, schedule_delay_millis=50))
    log = logging.getLogger(f"otlp-tls-test-{id(provider)}")
    log.propagate = False
    log.setLevel(logging.INFO)
    log.addHandler(LoggingHandler(logger_provider=provider))
    for i in range(n):
        log.info("GET /cart?id=%d 200", i, extra={"latency_ms": 2.0})
    assert provider.force_flush(20_000)
    provider.shutdown()


def _http_exporter(port: int, pki: Pki, with_cert: bool) -> HttpLogExporter:
    # A session that ignores REQUESTS_CA_BUNDLE: requests lets it override the
    # exporter's `certificate_file` otherwise.
    session = requests.Session()
    session.trust_env = False
    return HttpLogExporter(
        endpoint=f"https://127.0.0.1:{port}/v1/logs",
        certificate_file=pki.ca,
        client_certificate_file=pki.client_cert if with_cert else None,
        client_key_file=pki.client_key if with_cert else None,
        session=session,
    )


def _refused_over_grpc(port: int, credentials: grpc.ChannelCredentials | None) -> None:
    with pytest.raises(grpc.RpcError) as info:
        _grpc_export(port, credentials, "refused")
    assert info.value.code() == UNAVAILABLE


def _refused_over_http(port: int, context: ssl.SSLContext | None) -> None:
    # The handshake fails and the connection is closed: no HTTP status comes back.
    with pytest.raises(OSError):
        _http_post(port, context, "refused")


# -- the receivers ----------------------------------------------------------------------------


def test_tls_on_every_listener_and_plaintext_refused(pki: Pki) -> None:
    srv, port = _sidecar(TlsConfig(pki.server_cert, pki.server_key))
    with srv:
        assert srv.otlp is not None
        grpc_port, http_port = srv.otlp.port, srv.otlp.http_port
        _refused_over_grpc(grpc_port, None)
        _refused_over_http(http_port, None)
        with Client(f"127.0.0.1:{port}", timeout_s=10) as plain:
            with pytest.raises(grpc.RpcError) as info:
                plain.health()
            assert info.value.code() == UNAVAILABLE
        assert _labelled(srv, "refused") == 0
        # The OpenTelemetry SDK's exporters, trusting the CA, are served on both.
        grpc_exporter = OTLPLogExporter(
            endpoint=f"127.0.0.1:{grpc_port}",
            insecure=False,
            credentials=_channel_credentials(pki, with_cert=False),
        )
        _send_with_sdk(grpc_exporter, "sdk-grpc", 40)
        _send_with_sdk(_http_exporter(http_port, pki, with_cert=False), "sdk-http", 30)
        assert _labelled(srv, "sdk-grpc") == 40 and _labelled(srv, "sdk-http") == 30
        with Client(f"127.0.0.1:{port}", tls=ClientTls(ca_file=pki.ca)) as client:
            assert client.health() == "SERVING"


def test_mtls_on_every_listener_needs_a_client_certificate(pki: Pki) -> None:
    srv, port = _sidecar(TlsConfig(pki.server_cert, pki.server_key, pki.ca))
    with srv:
        assert srv.otlp is not None
        grpc_port, http_port = srv.otlp.port, srv.otlp.http_port
        _refused_over_grpc(grpc_port, _channel_credentials(pki, with_cert=False))
        _refused_over_http(http_port, _client_context(pki, with_cert=False))
        _refused_over_grpc(grpc_port, None)
        _refused_over_http(http_port, None)
        with Client(f"127.0.0.1:{port}", timeout_s=10, tls=ClientTls(ca_file=pki.ca)) as anon:
            with pytest.raises(grpc.RpcError) as info:
                anon.health()
            assert info.value.code() == UNAVAILABLE
        assert _labelled(srv, "refused") == 0
        response = _grpc_export(grpc_port, _channel_credentials(pki, with_cert=True), "grpc")
        assert response.partial_success.rejected_log_records == 0
        assert _http_post(http_port, _client_context(pki, with_cert=True), "http") == 200
        _send_with_sdk(_http_exporter(http_port, pki, with_cert=True), "sdk-http", 20)
        assert _labelled(srv, "grpc") == 3 and _labelled(srv, "http") == 3
        assert _labelled(srv, "sdk-http") == 20


@pytest.mark.parametrize("opt_out", ["grpc_plaintext", "http_plaintext"])
def test_a_listener_opted_out_serves_plaintext_the_others_keep_tls(pki: Pki, opt_out: str) -> None:
    otlp = replace(OTLP, **{opt_out: True})
    srv, port = _sidecar(TlsConfig(pki.server_cert, pki.server_key), otlp)
    with srv:
        assert srv.otlp is not None
        grpc_port, http_port = srv.otlp.port, srv.otlp.http_port
        if opt_out == "grpc_plaintext":
            assert _grpc_export(grpc_port, None, "plain").partial_success.rejected_log_records == 0
            _refused_over_http(http_port, None)
            assert _http_post(http_port, _client_context(pki, with_cert=False), "tls") == 200
        else:
            assert _http_post(http_port, None, "plain") == 200
            _refused_over_grpc(grpc_port, None)
            _grpc_export(grpc_port, _channel_credentials(pki, with_cert=False), "tls")
        assert _labelled(srv, "plain") == 3 and _labelled(srv, "tls") == 3
        with Client(f"127.0.0.1:{port}", timeout_s=10) as plain:
            with pytest.raises(grpc.RpcError):
                plain.health()


def test_a_client_silent_in_the_handshake_is_dropped(
    pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(otlp_http, "HANDSHAKE_TIMEOUT_S", 0.2)
    srv, _ = _sidecar(TlsConfig(pki.server_cert, pki.server_key))
    with srv, socket.create_connection(("127.0.0.1", srv.otlp.http_port), timeout=10) as sock:  # type: ignore[union-attr]
        assert sock.recv(1) == b""  # closed by the server, not by our timeout
        assert _http_post(srv.otlp.http_port, _client_context(pki, False), "after") == 200  # type: ignore[union-attr]


# -- the forwarder ----------------------------------------------------------------------------


class TlsDownstream(logs_service_pb2_grpc.LogsServiceServicer):
    """The next hop over TLS (mTLS with `require_client_cert`): counts what it gets."""

    def __init__(self, pki: Pki, require_client_cert: bool = False) -> None:
        self.records = 0
        self._lock = threading.Lock()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        logs_service_pb2_grpc.add_LogsServiceServicer_to_server(self, self.server)
        with open(pki.server_key, "rb") as k, open(pki.server_cert, "rb") as c:
            pair = (k.read(), c.read())
        with open(pki.ca, "rb") as ca:
            roots = ca.read() if require_client_cert else None
        creds = grpc.ssl_server_credentials(
            [pair], root_certificates=roots, require_client_auth=require_client_cert
        )
        self.port = self.server.add_secure_port("127.0.0.1:0", creds)
        self.server.start()

    def Export(  # noqa: N802 - gRPC method name
        self, request: ExportLogsServiceRequest, context: grpc.ServicerContext
    ) -> ExportLogsServiceResponse:
        for rl in request.resource_logs:
            for sl in rl.scope_logs:
                for rec in sl.log_records:
                    assert any(kv.key == CLUSTER_ID_ATTRIBUTE for kv in rec.attributes)
                with self._lock:
                    self.records += len(sl.log_records)
        return ExportLogsServiceResponse()


@pytest.fixture
def tls_downstream(pki: Pki) -> Iterator[TlsDownstream]:
    d = TlsDownstream(pki)
    yield d
    d.server.stop(None)


@pytest.fixture
def mtls_downstream(pki: Pki) -> Iterator[TlsDownstream]:
    d = TlsDownstream(pki, require_client_cert=True)
    yield d
    d.server.stop(None)


def _forward_through(otlp: OtlpConfig, downstream: TlsDownstream) -> None:
    srv, _ = _sidecar(None, otlp)
    with srv:
        assert srv.otlp is not None
        _grpc_export(srv.otlp.port, None, "checkout")
        _wait(lambda: downstream.records == 3)
        srv.stop(grace=5)


def test_forwarder_reaches_a_tls_next_hop_with_its_ca(
    pki: Pki, tls_downstream: TlsDownstream
) -> None:
    otlp = replace(OTLP, forward=f"127.0.0.1:{tls_downstream.port}", forward_ca_file=pki.ca)
    assert otlp.forward_tls()
    _forward_through(otlp, tls_downstream)


def test_forwarder_presents_its_client_certificate(
    pki: Pki, mtls_downstream: TlsDownstream
) -> None:
    otlp = replace(
        OTLP,
        forward=f"https://127.0.0.1:{mtls_downstream.port}",
        forward_ca_file=pki.ca,
        forward_cert_file=pki.client_cert,
        forward_key_file=pki.client_key,
    )
    _forward_through(otlp, mtls_downstream)


@pytest.mark.parametrize("scheme", ["", "https://"])
def test_forwarder_without_the_ca_is_refused_retried_and_logged(
    tls_downstream: TlsDownstream, scheme: str, caplog: pytest.LogCaptureFixture
) -> None:
    # "": plaintext to a TLS next hop; "https://": TLS trusting the system's roots only.
    caplog.set_level(logging.INFO, logger="logclust.otlp.forward")
    otlp = replace(OTLP, forward=f"{scheme}127.0.0.1:{tls_downstream.port}")
    srv, _ = _sidecar(None, otlp)
    with srv:
        assert srv.otlp is not None and srv.otlp.queue is not None
        queue = srv.otlp.queue
        _grpc_export(srv.otlp.port, None, "checkout")  # taken: the queue has room
        _wait(lambda: queue._retries._value.get() >= 2)
        assert tls_downstream.records == 0 and queue.records == 3
        srv.stop(grace=0)
    retried = [r.getMessage() for r in caplog.records if "retrying" in r.getMessage()]
    assert retried and all(f"127.0.0.1:{tls_downstream.port}" in m for m in retried)
    assert all("UNAVAILABLE" in m for m in retried)


# -- settings ---------------------------------------------------------------------------------


def test_forward_tls_settings_are_checked(pki: Pki) -> None:
    base = OtlpConfig(listen="127.0.0.1:0")
    assert not replace(base, forward="collector:4317").forward_tls()
    https = replace(base, forward="https://collector:4317")
    assert https.forward_tls() and https.forward_target() == "collector:4317"
    assert replace(base, forward="http://collector:4317").forward_target() == "collector:4317"
    bad = [
        ({"forward_ca_file": "ca.pem"}, "needs forward"),
        ({"forward": "c:1", "forward_ca_file": "ca", "forward_cert_file": "c"}, "both"),
        ({"forward": "http://c:1", "forward_ca_file": "ca"}, "http:// forward"),
        ({"forward": "c:1", "forward_cert_file": "c", "forward_key_file": "k"}, "needs TLS"),
        ({"forward": "ftp://c:1"}, "HOST:PORT"),
        ({"http_plaintext": True}, "needs http_listen"),
    ]
    for fields, message in bad:
        with pytest.raises(ValueError, match=message) as info:
            replace(base, **fields)
        assert "Received:" in str(info.value)
    # An unreadable CA fails the start, as an unreadable server certificate does.
    with pytest.raises(OSError):
        _sidecar(None, replace(OTLP, forward="127.0.0.1:1", forward_ca_file=pki.ca + ".missing"))


def test_serve_flags_of_otlp_tls() -> None:
    parser = cli.build_parser()
    args = parser.parse_args(
        [
            "serve",
            "--otlp-listen",
            "0.0.0.0:4317",
            "--otlp-http-listen",
            "0.0.0.0:4318",
            "--otlp-http-plaintext",
            "--otlp-forward",
            "collector:4317",
            "--otlp-forward-ca",
            "ca.pem",
            "--otlp-forward-cert",
            "c.pem",
            "--otlp-forward-key",
            "k.pem",
        ]
    )
    cfg = otlp_config(args)
    assert cfg is not None and cfg.http_plaintext and not cfg.grpc_plaintext
    assert (cfg.forward_ca_file, cfg.forward_cert_file, cfg.forward_key_file) == (
        "ca.pem",
        "c.pem",
        "k.pem",
    )
    assert cfg.forward_tls()
    with pytest.raises(ValueError, match="--otlp-forward-ca needs --otlp-listen"):
        otlp_config(parser.parse_args(["serve", "--otlp-forward-ca", "ca.pem"]))
    defaults = otlp_config(parser.parse_args(["serve", "--otlp-listen", "0.0.0.0:4317"]))
    assert defaults is not None and not defaults.grpc_plaintext and not defaults.forward_tls()
