"""TLS, mutual TLS, Unix domain sockets and the metrics address (issue 11)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import grpc
import pyarrow as pa
import pytest

from logclust.cli import main as cli
from logclust.cli import service
from logclust.client import Client, ClientTls
from logclust.cluster.config import StreamClusterConfig
from logclust.server import ServerConfig, SidecarServer, create_server
from logclust.server.config import TlsConfig
from logclust.sidecar.config import StreamLabelerConfig
from tests.fakes import FakeLabeler
from tests.pki import Pki, make_pki

CLUSTERS = StreamClusterConfig(reservoir_size=1000, background_consolidation=False)
ROWS = pa.table({"body": ["currency_code=EUR", "user_id=7 action=login"]})


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A throwaway CA with a server and a client certificate."""
    return make_pki(tmp_path_factory.mktemp("pki"))


def _serve(**kwargs: object) -> tuple[SidecarServer, int]:
    kwargs.setdefault("listen", "127.0.0.1:0")
    cfg = ServerConfig(labeler=StreamLabelerConfig(clusters=CLUSTERS), **kwargs)  # type: ignore[arg-type]
    return create_server(cfg, labeler=FakeLabeler())


@pytest.fixture
def tls_server(pki: Pki) -> Iterator[int]:
    srv, port = _serve(tls=TlsConfig(pki.server_cert, pki.server_key))
    with srv:
        yield port


@pytest.fixture
def mtls_server(pki: Pki) -> Iterator[int]:
    srv, port = _serve(tls=TlsConfig(pki.server_cert, pki.server_key, pki.ca))
    with srv:
        yield port


def test_tls_client_with_the_ca_is_served_plaintext_is_not(tls_server: int, pki: Pki) -> None:
    with Client(f"127.0.0.1:{tls_server}", tls=ClientTls(ca_file=pki.ca)) as client:
        assert client.label(ROWS).num_rows == 2
        assert client.health() == "SERVING"
    with Client(f"127.0.0.1:{tls_server}", timeout_s=30) as plain:
        with pytest.raises(grpc.RpcError) as info:
            plain.health()
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE


def test_mtls_needs_a_client_certificate(mtls_server: int, pki: Pki) -> None:
    addr = f"127.0.0.1:{mtls_server}"
    tls = ClientTls(ca_file=pki.ca, cert_file=pki.client_cert, key_file=pki.client_key)
    with Client(addr, tls=tls) as client:
        assert client.label(ROWS).num_rows == 2
    with Client(addr, timeout_s=30, tls=ClientTls(ca_file=pki.ca)) as anonymous:
        with pytest.raises(grpc.RpcError) as info:
            anonymous.health()
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE


def test_cli_clients_speak_mtls(
    mtls_server: int, pki: Pki, capsys: pytest.CaptureFixture[str]
) -> None:
    flags = ["--tls-ca", pki.ca, "--tls-cert", pki.client_cert, "--tls-key", pki.client_key]
    assert cli.main(["clusters", "--addr", f"127.0.0.1:{mtls_server}", *flags]) == 0
    assert "cluster_id" in capsys.readouterr().out


def test_unix_socket_is_private(tmp_path: Path) -> None:
    sock = tmp_path / "logclust.sock"
    srv, _ = _serve(listen=f"unix://{sock}")
    with srv, Client(f"unix://{sock}") as client:
        assert stat.S_IMODE(os.stat(sock).st_mode) == 0o600
        assert client.label(ROWS).num_rows == 2
        assert client.health() == "SERVING"


def test_listen_forms() -> None:
    for ok in ("127.0.0.1:0", "[::1]:50051", "unix:///run/logclust.sock", "unix:rel.sock"):
        ServerConfig(listen=ok)
    for bad in ("127.0.0.1", "unix:", "unix://", ":50051"):
        with pytest.raises(ValueError, match="Received"):
            ServerConfig(listen=bad)


def test_metrics_bind_loopback_whatever_the_grpc_host() -> None:
    srv, _ = _serve(listen="0.0.0.0:0", metrics_port=0)
    with srv:
        assert srv.metrics._http is not None
        assert srv.metrics._http.server_address[0] == "127.0.0.1"


def test_serve_flags_of_tls_and_metrics() -> None:
    parser = cli.build_parser()
    args = parser.parse_args(["serve", "--tls-cert", "c.pem", "--metrics-listen", "0.0.0.0:9100"])
    with pytest.raises(ValueError, match="both --tls-cert and --tls-key"):
        service.server_tls(args)
    assert service.metrics_address(args) == ("0.0.0.0", 9100)
    args = parser.parse_args(["serve", "--tls-client-ca", "ca.pem"])
    with pytest.raises(ValueError, match="needs --tls-cert"):
        service.server_tls(args)
    assert service.metrics_address(parser.parse_args(["serve", "--metrics-port", "9"])) == (
        "127.0.0.1",
        9,
    )
    args = parser.parse_args(["serve", "--tls-cert", "c", "--tls-key", "k", "--tls-client-ca", "a"])
    assert service.server_tls(args) == TlsConfig("c", "k", "a")
