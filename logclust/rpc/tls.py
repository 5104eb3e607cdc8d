"""TLS of every listener and of the forwarder: one place reads the PEM files.

A `TlsConfig` (the `serve` flags `--tls-cert/--tls-key/--tls-client-ca`) gives the
`LogClust` gRPC server, the OTLP/gRPC receiver (`server_credentials`) and the OTLP/HTTP
receiver (`server_ssl_context`) the same certificate; with a client CA, each of them
requires a client certificate that chains to it (mutual TLS). `channel_credentials`
builds the dialling side (the forwarder, the client).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import grpc

# ALPN of the OTLP/HTTP listener (HTTP/1.1 only: `http.server`).
HTTP_ALPN = ["http/1.1"]


@dataclass(frozen=True)
class TlsConfig:
    """TLS of the listeners; with `client_ca_file`, mutual TLS (client certs required)."""

    # PEM certificate chain and private key of the server.
    cert_file: str
    key_file: str
    # PEM CA bundle that client certificates must chain to; None: no client certs asked.
    client_ca_file: str | None = None


def _read(path: str | None) -> bytes | None:
    return None if path is None else Path(path).read_bytes()


def server_credentials(tls: TlsConfig) -> grpc.ServerCredentials:
    """gRPC server credentials; client certificates are required when `client_ca_file`
    is set.

    Raises:
        OSError: a PEM file cannot be read.
    """
    key = Path(tls.key_file).read_bytes()
    cert = Path(tls.cert_file).read_bytes()
    ca = _read(tls.client_ca_file)
    return grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=ca, require_client_auth=ca is not None
    )


def server_ssl_context(tls: TlsConfig) -> ssl.SSLContext:
    """The same TLS for a socket server (`http.server`): TLS 1.2 or later, and a client
    certificate required when `client_ca_file` is set.

    Raises:
        OSError: a PEM file cannot be read or does not hold a certificate and its key
            (`ssl.SSLError` is an `OSError`).
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(tls.cert_file, tls.key_file)
    if tls.client_ca_file is not None:
        ctx.load_verify_locations(cafile=tls.client_ca_file)
        ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.set_alpn_protocols(HTTP_ALPN)
    return ctx


def channel_credentials(
    ca_file: str | None = None, cert_file: str | None = None, key_file: str | None = None
) -> grpc.ChannelCredentials:
    """gRPC channel credentials: trust `ca_file` (None: the system's roots) and present
    `cert_file`/`key_file` when given (mutual TLS).

    Raises:
        OSError: a PEM file cannot be read.
    """
    return grpc.ssl_channel_credentials(
        root_certificates=_read(ca_file),
        private_key=_read(key_file),
        certificate_chain=_read(cert_file),
    )
