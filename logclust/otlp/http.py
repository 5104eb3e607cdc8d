"""OTLP/HTTP logs: `POST /v1/logs` with a protobuf or JSON `ExportLogsServiceRequest`.

Statuses (OTLP/HTTP): 200 with an `ExportLogsServiceResponse` (partial success inside);
400 on a malformed body or a request the contract refuses; 404 on another path; 411
without Content-Length; 413 over `max_request_bytes` (before or after gunzip); 415 on
another content type; 429 with Retry-After when the forwarding queue is full; 500 on an
internal error (logged). Error bodies are a `google.rpc.Status` in the request's format;
the statuses come from `logclust.rpc.errors`, as the gRPC servers' do.

With an `ssl.SSLContext` (the server's TLS, `logclust.rpc.tls.server_ssl_context`) every
connection is TLS: the handshake runs in the connection's own thread, so a client that
never finishes it holds no other; a plaintext client or, under mutual TLS, one without a
certificate fails it and is disconnected before any request is read (logged).
"""

from __future__ import annotations

import base64
import json
import logging
import math
import socket
import ssl
import sys
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from google.protobuf import json_format
from google.protobuf.message import Message
from google.rpc import status_pb2
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)

from logclust.rpc import errors
from logclust.rpc.errors import RetryLaterError, TooLargeError
from logclust.sidecar.metrics import Metrics
from logclust.wire.contract import ContractError

logger = logging.getLogger(__name__)

PATH = "/v1/logs"
PROTOBUF = "application/x-protobuf"
JSON = "application/json"
# Seconds a client has to finish the TLS handshake.
HANDSHAKE_TIMEOUT_S = 10.0


class Receiver(Protocol):
    def export(
        self, request: ExportLogsServiceRequest, nbytes: int
    ) -> ExportLogsServiceResponse: ...

    def export_bytes(self, data: bytes) -> ExportLogsServiceResponse: ...


def _hex_ids_to_base64(doc: Any) -> None:
    # OTLP/JSON writes trace and span ids as hex; protobuf JSON expects base64 bytes.
    for rl in doc.get("resourceLogs", []) if isinstance(doc, dict) else []:
        for sl in rl.get("scopeLogs", []):
            for rec in sl.get("logRecords", []):
                for key in ("traceId", "spanId"):
                    value = rec.get(key)
                    if isinstance(value, str) and value:
                        try:
                            rec[key] = base64.b64encode(bytes.fromhex(value)).decode()
                        except ValueError as e:
                            raise ContractError(f"{key} must be hex. Received: {value!r}") from e


def parse_json(data: bytes) -> ExportLogsServiceRequest:
    """Decodes an OTLP/JSON `ExportLogsServiceRequest`.

    Raises:
        ContractError: not JSON, or not an ExportLogsServiceRequest.
    """
    try:
        doc = json.loads(data)
        _hex_ids_to_base64(doc)
        return json_format.ParseDict(doc, ExportLogsServiceRequest(), ignore_unknown_fields=True)
    except (ValueError, json_format.ParseError, AttributeError, TypeError) as e:
        raise ContractError(f"Not an OTLP/JSON ExportLogsServiceRequest: {e}") from e


def gunzip(data: bytes, limit: int) -> bytes:
    """Decompresses gzip `data`, refusing more than `limit` bytes of output."""
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = d.decompress(data, limit + 1)
    except zlib.error as e:
        raise ContractError(f"Body is not valid gzip: {e}") from e
    if len(out) > limit or d.unconsumed_tail:
        raise TooLargeError(f"Request over {limit} bytes after gunzip. Received: more")
    return out


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        if isinstance(self.request, ssl.SSLSocket):
            # Here, in this connection's thread; bounded, so that a client that never
            # finishes it cannot hold `stop()` (which waits for every connection).
            self.request.settimeout(HANDSHAKE_TIMEOUT_S)
            self.request.do_handshake()
            self.request.settimeout(None)
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
        logger.debug("%s " + format, self.address_string(), *args)

    def do_POST(self) -> None:  # noqa: N802 - stdlib name
        json_out = self.headers.get_content_type() == JSON
        if self.path.split("?", 1)[0] != PATH:
            return self._error(404, f"Only POST {PATH}. Received: {self.path}", json_out)
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            self.close_connection = True
            return self._error(411, f"Content-Length required. Received: {length!r}", json_out)
        limit = self.server.max_request_bytes
        if int(length) > limit:
            self.close_connection = True  # the body is left unread
            msg = f"Request over {limit} bytes. Received: {length} bytes"
            return self._error(413, msg, json_out)
        try:
            response = self._export(self.rfile.read(int(length)), limit)
        except Exception as e:  # noqa: BLE001 - every error becomes a status here
            return self._refuse(e, json_out)
        self._reply(200, response, json_out)

    def _refuse(self, error: Exception, json_out: bool) -> None:
        """Answers the status `error` maps to (`errors.http_status_for`)."""
        code = errors.http_status_for(error)
        if isinstance(error, RetryLaterError):
            retry = str(max(1, math.ceil(error.retry_after_s)))
            return self._error(code, str(error), json_out, {"Retry-After": retry})
        if code == 413:
            return self._error(code, str(error), json_out)
        self.server.on_error(errors.status_for(error).name.lower())
        if code == 500:
            logger.error("internal error", exc_info=error)
            return self._error(code, f"internal error: {type(error).__name__}", json_out)
        return self._error(code, str(error), json_out)

    def _export(self, data: bytes, limit: int) -> ExportLogsServiceResponse:
        if self.headers.get("Content-Encoding", "identity").lower() == "gzip":
            data = gunzip(data, limit)
        ctype = self.headers.get_content_type()
        if ctype == PROTOBUF:
            return self.server.receiver.export_bytes(data)  # parsed, and read as columns
        if ctype == JSON:
            request = parse_json(data)
        else:
            raise ContractError(f"Content-Type must be {PROTOBUF} or {JSON}. Received: {ctype}")
        return self.server.receiver.export(request, len(data))

    def _error(
        self, code: int, message: str, json_out: bool, headers: dict[str, str] | None = None
    ) -> None:
        self._reply(code, status_pb2.Status(message=message), json_out, headers)

    def _reply(
        self, code: int, msg: Message, json_out: bool, headers: dict[str, str] | None = None
    ) -> None:
        body = json_format.MessageToJson(msg).encode() if json_out else msg.SerializeToString()
        self.send_response(code)
        self.send_header("Content-Type", JSON if json_out else PROTOBUF)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = False
    block_on_close = True  # server_close waits for requests in flight
    receiver: Receiver
    max_request_bytes: int
    metrics: Metrics | None
    ssl_context: ssl.SSLContext | None = None

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, addr = super().get_request()
        if self.ssl_context is None:
            return sock, addr
        # The handshake waits for `_Handler.setup`, in the connection's thread.
        return self.ssl_context.wrap_socket(
            sock, server_side=True, do_handshake_on_connect=False
        ), addr

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, (ssl.SSLError, ConnectionError, TimeoutError)):
            # A failed handshake (plaintext, no client certificate) or a dropped peer.
            logger.info("OTLP/HTTP connection from %s closed: %s", client_address, error)
            return
        logger.error("OTLP/HTTP connection from %s failed", client_address, exc_info=error)

    def on_error(self, kind: str) -> None:
        if self.metrics is not None:
            self.metrics.on_error(kind)


class OtlpHttpServer:
    """`/v1/logs` on `listen` (port 0: a free one), served from a thread until `stop()`.

    Args:
        listen: host:port to bind.
        receiver: labels the requests.
        max_request_bytes: the largest body taken (413 past it, before or after gunzip).
        metrics: counts errors by kind; None counts none.
        ssl_context: serve HTTPS with it (`logclust.rpc.tls.server_ssl_context`); None:
            plaintext.

    Raises:
        OSError: the address could not be bound.
    """

    def __init__(
        self,
        listen: str,
        receiver: Receiver,
        max_request_bytes: int,
        metrics: Metrics | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        host, _, port = listen.rpartition(":")
        self.server = _Server((host.strip("[]"), int(port)), _Handler)
        self.server.receiver = receiver
        self.server.max_request_bytes = max_request_bytes
        self.server.metrics = metrics
        self.server.ssl_context = ssl_context
        self.port = int(self.server.server_address[1])
        self._thread = threading.Thread(
            target=self.server.serve_forever, name="logclust-otlp-http", daemon=True
        )
        self._thread.start()
        scheme = "http" if ssl_context is None else "https"
        logger.info("OTLP/HTTP logs on %s://%s:%d%s", scheme, host, self.port, PATH)

    def stop(self) -> None:
        """Stops accepting, waits for requests in flight, closes the socket."""
        self.server.shutdown()
        self.server.server_close()
