"""OTLP/HTTP logs: `POST /v1/logs` with a protobuf or JSON `ExportLogsServiceRequest`.

Statuses (OTLP/HTTP): 200 with an `ExportLogsServiceResponse` (partial success inside);
400 on a malformed body or a request the contract refuses; 404 on another path; 411
without Content-Length; 413 over `max_request_bytes` (before or after gunzip); 415 on
another content type; 429 with Retry-After when the forwarding queue is full; 500 on an
internal error (logged). Error bodies are a `google.rpc.Status` in the request's format.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

import grpc
from google.protobuf import json_format
from google.protobuf.message import Message
from google.rpc import status_pb2
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)

from logclust.server import errors
from logclust.server.forward import QueueFullError
from logclust.sidecar.metrics import Metrics
from logclust.wire.contract import ContractError, LimitExceededError

logger = logging.getLogger(__name__)

PATH = "/v1/logs"
PROTOBUF = "application/x-protobuf"
JSON = "application/json"


class Receiver(Protocol):
    def export(
        self, request: ExportLogsServiceRequest, nbytes: int
    ) -> ExportLogsServiceResponse: ...

    def export_bytes(self, data: bytes) -> ExportLogsServiceResponse: ...


class TooLargeError(LimitExceededError):
    """The body is over the size cap (413)."""


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
        except QueueFullError as e:
            retry = str(max(1, math.ceil(e.retry_after_s)))
            return self._error(429, str(e), json_out, {"Retry-After": retry})
        except TooLargeError as e:
            return self._error(413, str(e), json_out)
        except Exception as e:  # noqa: BLE001 - every error becomes a status here
            code = errors.status_for(e)
            self.server.on_error(code.name.lower())
            if code is grpc.StatusCode.INTERNAL:
                logger.exception("internal error")
                return self._error(500, f"internal error: {type(e).__name__}", json_out)
            return self._error(400, str(e), json_out)
        self._reply(200, response, json_out)

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

    def on_error(self, kind: str) -> None:
        if self.metrics is not None:
            self.metrics.on_error(kind)


class OtlpHttpServer:
    """`/v1/logs` on `listen` (port 0: a free one), served from a thread until `stop()`.

    Raises:
        OSError: the address could not be bound.
    """

    def __init__(
        self,
        listen: str,
        receiver: Receiver,
        max_request_bytes: int,
        metrics: Metrics | None = None,
    ) -> None:
        host, _, port = listen.rpartition(":")
        self.server = _Server((host.strip("[]"), int(port)), _Handler)
        self.server.receiver = receiver
        self.server.max_request_bytes = max_request_bytes
        self.server.metrics = metrics
        self.port = int(self.server.server_address[1])
        self._thread = threading.Thread(
            target=self.server.serve_forever, name="logclust-otlp-http", daemon=True
        )
        self._thread.start()
        logger.info("OTLP/HTTP logs on http://%s:%d%s", host, self.port, PATH)

    def stop(self) -> None:
        """Stops accepting, waits for requests in flight, closes the socket."""
        self.server.shutdown()
        self.server.server_close()
