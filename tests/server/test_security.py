"""TLS, mutual TLS, Unix domain sockets and the metrics address (issue 11)."""

from __future__ import annotations

import datetime
import ipaddress
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pyarrow as pa
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from logclust.cli import main as cli
from logclust.cli import service
from logclust.client import Client, ClientTls
from logclust.cluster.config import StreamClusterConfig
from logclust.server import ServerConfig, SidecarServer, create_server
from logclust.server.config import TlsConfig
from tests.fakes import FakeLabeler

CLUSTERS = StreamClusterConfig(reservoir_size=1000, background_consolidation=False)
ROWS = pa.table({"body": ["currency_code=EUR", "user_id=7 action=login"]})


@dataclass(frozen=True)
class Pki:
    ca: str
    server_cert: str
    server_key: str
    client_cert: str
    client_key: str


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _issue(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None,
    ca: bool = False,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    issuer_name, signer = issuer if issuer is not None else (_name(subject), key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        san = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    return builder.sign(signer, hashes.SHA256())


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A throwaway CA with a server and a client certificate."""
    d = tmp_path_factory.mktemp("pki")

    def write(name: str, obj: x509.Certificate | ec.EllipticCurvePrivateKey) -> str:
        path = d / name
        if isinstance(obj, x509.Certificate):
            path.write_bytes(obj.public_bytes(serialization.Encoding.PEM))
        else:
            path.write_bytes(
                obj.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            )
        return str(path)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _issue("logclust test CA", ca_key, None, ca=True)
    server_key, client_key = (
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP256R1()),
    )
    server = _issue("localhost", server_key, (ca.subject, ca_key))
    client = _issue("agent", client_key, (ca.subject, ca_key))
    return Pki(
        write("ca.pem", ca),
        write("server.pem", server),
        write("server.key", server_key),
        write("client.pem", client),
        write("client.key", client_key),
    )


def _serve(**kwargs: object) -> tuple[SidecarServer, int]:
    kwargs.setdefault("listen", "127.0.0.1:0")
    cfg = ServerConfig(clusters=CLUSTERS, **kwargs)  # type: ignore[arg-type]
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
