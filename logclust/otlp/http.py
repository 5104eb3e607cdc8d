"""OTLP/HTTP logs: `POST /v1/logs` with a protobuf or JSON `ExportLogsServiceRequest`.

Served on an asyncio event loop (one coroutine per connection, no thread): an idle or slow
connection costs a few kilobytes, never a thread. Statuses (OTLP/HTTP): 200 with an
`ExportLogsServiceResponse` (partial success inside); 400 on a malformed body or a request
the contract refuses; 404 on another path; 405 on another method; 408 when a body is not
sent within `http_body_timeout_s`; 411 without Content-Length; 413 over
`max_request_bytes` (before or after gunzip); 415 on another content type or content
encoding (zstd included; `logclust.otlp.decode`); 431 on headers over 64 KiB; 429 with
Retry-After when the forwarding queue or the admission budget is full; 503 with
Retry-After when the connection cap is reached and no connection is idle; 500 on an
internal error (logged). Error bodies are a `google.rpc.Status` in the request's format;
the statuses come from `logclust.rpc.errors`, as the gRPC servers' do.

**Slow, many and hostile clients** (`OtlpConfig`, docs/otlp.md "Limits"): a client has
`http_header_timeout_s` to send a request's headers once it sent its first byte,
`http_body_timeout_s` for the body, and a keep-alive connection is closed after
`http_idle_timeout_s` without a request. The body's announced length is admitted against
the server's one budget (`logclust.rpc.admission`) before a byte of it is read, so
bodies announced and withheld hold at most the budget; gzip is inflated a slice at a time
against it. At `http_max_connections` the longest idle connection is closed for the new
one; with none idle the new one gets 503. The socket listens with a backlog of
`http_backlog`; when the process runs out of file descriptors, asyncio pauses accepting
for a second instead of spinning (and `serve` raises the soft limit to the hard one).

With an `ssl.SSLContext` (the server's TLS, `logclust.rpc.tls.server_ssl_context`) every
connection is TLS, its handshake bounded by `HANDSHAKE_TIMEOUT_S`; a plaintext client or,
under mutual TLS, one without a certificate fails it and is disconnected before any
request is read.
"""

from __future__ import annotations

import asyncio
import logging
import math
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from http import HTTPStatus

from google.protobuf import json_format
from google.protobuf.message import Message
from google.rpc import status_pb2

from logclust.otlp import decode
from logclust.otlp.config import OtlpConfig
from logclust.otlp.decode import JSON, PROTOBUF, gunzip, parse_json
from logclust.otlp.receiver import OtlpReceiver
from logclust.rpc import errors
from logclust.rpc.admission import Admission, Ticket
from logclust.rpc.errors import RetryLaterError
from logclust.rpc.loop import EventLoopThread
from logclust.sidecar.metrics import Metrics
from logclust.turns import CallerGoneError
from logclust.wire.contract import ContractError

__all__ = ["PATH", "PROTOBUF", "JSON", "OtlpHttpServer", "gunzip", "parse_json"]

logger = logging.getLogger(__name__)

PATH = "/v1/logs"
# Seconds a client has to finish the TLS handshake.
HANDSHAKE_TIMEOUT_S = 10.0
# Bytes of a request's line and headers.
MAX_HEADER_BYTES = 64 * 1024
# Seconds a closed connection's late bytes are read and dropped (see `_linger`).
LINGER_S = 2.0
# Seconds `stop()` waits for requests in flight.
STOP_WAIT_S = 30.0


class _Close(Exception):
    """Ends a connection after an answer was written (or none could be)."""


@dataclass(eq=False)  # hashed by identity: a key of the open connections
class _Conn:
    writer: asyncio.StreamWriter
    idle: bool = True


@dataclass(frozen=True)
class _Request:
    method: str
    path: str
    headers: Mapping[str, str]
    keep_alive: bool

    @property
    def json_out(self) -> bool:
        return self.content_type == JSON

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";", 1)[0].strip().lower()


async def _linger(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Closes after the answer: our side first, then what the client still sends is read
    and dropped for up to `LINGER_S` (closing with unread bytes would reset the
    connection, and the client could lose the answer before reading it)."""
    transport = writer.transport
    if transport.is_closing():
        return
    try:
        if writer.can_write_eof():
            writer.write_eof()
        async with asyncio.timeout(LINGER_S):
            while await reader.read(1 << 16):
                pass
    except (OSError, TimeoutError, ssl.SSLError):
        pass
    finally:
        transport.abort()


def _parse_head(head: bytes) -> _Request:
    """The request line and headers (ContractError when they do not parse)."""
    try:
        lines = head.decode("latin-1").split("\r\n")
        method, target, version = lines[0].split(" ")
    except ValueError as e:
        raise ContractError(f"Bad request line. Received: {head[:80]!r}") from e
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            name, sep, value = line.partition(":")
            if not sep:
                raise ContractError(f"Bad header line. Received: {line[:80]!r}")
            headers[name.strip().lower()] = value.strip()
    conn = headers.get("connection", "").lower()
    keep = conn != "close" if version == "HTTP/1.1" else conn == "keep-alive"
    return _Request(method, target.split("?", 1)[0], headers, keep)


class OtlpHttpServer:
    """`/v1/logs` on `listen` (port 0: a free one), served on an event loop until `stop()`.

    Args:
        listen: host:port to bind.
        receiver: labels the requests.
        config: the limits (`max_request_bytes`, `http_*`).
        admission: the server's admission budget; None: one of this listener's own.
        metrics: counts errors by kind; None counts none.
        ssl_context: serve HTTPS with it (`logclust.rpc.tls.server_ssl_context`); None:
            plaintext.
        loop: the event loop to serve on; None: one of its own.

    Raises:
        OSError: the address could not be bound.
    """

    def __init__(
        self,
        listen: str,
        receiver: OtlpReceiver,
        config: OtlpConfig,
        admission: Admission | None = None,
        metrics: Metrics | None = None,
        ssl_context: ssl.SSLContext | None = None,
        loop: EventLoopThread | None = None,
    ) -> None:
        self.receiver = receiver
        self.config = config
        self.admission = admission or Admission(256, 64 << 20, config.retry_after_s)
        self.metrics = metrics
        self._own_loop = loop is None
        self.loop = EventLoopThread("logclust-otlp-http") if loop is None else loop
        self._conns: dict[_Conn, None] = {}  # open connections, the longest idle first
        self.refused_connections = 0  # at the cap with none idle (503)
        self.closed_idle = 0  # closed at the cap for a new connection
        host, _, port = listen.rpartition(":")
        try:
            self.server = self.loop.run(
                asyncio.start_server(
                    self._serve,
                    host.strip("[]"),
                    int(port),
                    ssl=ssl_context,
                    ssl_handshake_timeout=HANDSHAKE_TIMEOUT_S if ssl_context else None,
                    backlog=config.http_backlog,
                    limit=MAX_HEADER_BYTES,
                )
            )
        except BaseException:
            if self._own_loop:
                self.loop.close()
            raise
        self.port = int(self.server.sockets[0].getsockname()[1])
        scheme = "http" if ssl_context is None else "https"
        logger.info("OTLP/HTTP logs on %s://%s:%d%s", scheme, host, self.port, PATH)

    @property
    def connections(self) -> int:
        """Connections open now."""
        return len(self._conns)

    def _on_error(self, kind: str) -> None:
        if self.metrics is not None:
            self.metrics.on_error(kind)

    def _make_room(self) -> bool:
        """At the cap: closes the longest idle connection; False when none is idle."""
        if len(self._conns) < self.config.http_max_connections:
            return True
        for conn in self._conns:
            if conn.idle:
                del self._conns[conn]
                conn.writer.transport.abort()
                self.closed_idle += 1
                return True
        return False

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self._make_room():
            self.refused_connections += 1
            self._on_error("connections_full")
            retry = {"Retry-After": str(max(1, math.ceil(self.config.retry_after_s)))}
            msg = (
                f"Connection cap reached (http_max_connections={self.config.http_max_connections})"
            )
            await self._write(writer, 503, status_pb2.Status(message=msg), False, retry, True)
            writer.transport.abort()
            return
        conn = _Conn(writer)
        self._conns[conn] = None
        try:
            while await self._one_request(reader, conn):
                pass
        except (_Close, ConnectionError, TimeoutError, asyncio.IncompleteReadError) as e:
            logger.debug("OTLP/HTTP connection closed: %s", type(e).__name__)
        except ssl.SSLError as e:
            logger.info("OTLP/HTTP TLS connection closed: %s", e)
        finally:
            self._conns.pop(conn, None)
            await _linger(reader, writer)

    async def _one_request(self, reader: asyncio.StreamReader, conn: _Conn) -> bool:
        """Serves one request; False when the connection is to close."""
        cfg = self.config
        self._conns.pop(conn, None)
        conn.idle = True
        self._conns[conn] = None  # the most recently idle last
        first = await asyncio.wait_for(reader.readexactly(1), cfg.http_idle_timeout_s)
        conn.idle = False
        try:
            rest = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), cfg.http_header_timeout_s)
        except asyncio.LimitOverrunError:
            msg = f"Headers over {MAX_HEADER_BYTES} bytes"
            await self._error(conn.writer, 431, msg, False, close=True)
            return False
        try:
            request = _parse_head(first + rest)
        except ContractError as e:
            await self._error(conn.writer, 400, str(e), False, close=True)
            return False
        ticket = await self._admit(request, conn.writer)
        with ticket:
            try:
                body = await asyncio.wait_for(
                    reader.readexactly(ticket.nbytes), cfg.http_body_timeout_s
                )
            except TimeoutError:
                msg = f"Body not sent within {cfg.http_body_timeout_s} s (http_body_timeout_s)"
                await self._error(conn.writer, 408, msg, request.json_out, close=True)
                return False
            await self._export(request, body, ticket, reader, conn.writer)
        return request.keep_alive

    async def _admit(self, request: _Request, writer: asyncio.StreamWriter) -> Ticket:
        """Checks the request before its body is read and admits its length (an answer
        and `_Close` otherwise: the body is left unread)."""
        json_out = request.json_out
        limit = self.config.max_request_bytes
        length = request.headers.get("content-length")
        try:
            if request.method != "POST":
                await self._error(writer, 405, f"Only POST. Received: {request.method}", json_out)
            elif request.path != PATH:
                await self._error(
                    writer, 404, f"Only POST {PATH}. Received: {request.path}", json_out
                )
            elif "transfer-encoding" in request.headers or length is None or not length.isdigit():
                msg = f"Content-Length required. Received: {length!r}"
                await self._error(writer, 411, msg, json_out)
            elif int(length) > limit:
                msg = f"Request over {limit} bytes. Received: {length} bytes"
                await self._error(writer, 413, msg, json_out)
            else:
                decode.check_content_type(request.content_type)
                decode.check_encoding(request.headers.get("content-encoding", ""))
                ticket = self.admission.admit(int(length), "OTLP/HTTP body")
                if request.headers.get("expect", "").lower() == "100-continue":
                    writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                return ticket
        except Exception as e:  # noqa: BLE001 - every error becomes a status here
            await self._refuse(writer, e, json_out, close=True)
        raise _Close()

    async def _export(
        self,
        request: _Request,
        body: bytes,
        ticket: Ticket,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        coding = decode.check_encoding(request.headers.get("content-encoding", ""))
        peer = writer.get_extra_info("peername")

        def alive() -> bool:  # the client has not hung up
            return not writer.is_closing() and not reader.at_eof()

        fut = self.receiver.submit_body(
            ("otlp-http", str(peer)), body, request.content_type, coding, ticket, alive
        )
        try:
            response = await asyncio.wrap_future(fut)
        except CallerGoneError as e:
            raise _Close() from e
        except Exception as e:  # noqa: BLE001 - every error becomes a status here
            await self._refuse(writer, e, request.json_out, close=not request.keep_alive)
            return
        finally:
            # The error's traceback holds this frame, which holds the future, which holds
            # the error: a cycle that would keep the request's buffers (its body, what it
            # inflated) until a garbage collection; cut here, they go with the answer.
            del fut, body
        await self._write(writer, 200, response, request.json_out, None, not request.keep_alive)

    async def _refuse(
        self, writer: asyncio.StreamWriter, error: Exception, json_out: bool, close: bool
    ) -> None:
        """Answers the status `error` maps to (`errors.http_status_for`)."""
        code = errors.http_status_for(error)
        if isinstance(error, RetryLaterError):
            retry = str(max(1, math.ceil(error.retry_after_s)))
            return await self._error(
                writer, code, str(error), json_out, {"Retry-After": retry}, close
            )
        if code != 413:
            self._on_error(errors.status_for(error).name.lower())
        if code == 500:
            logger.error("internal error", exc_info=error)
            msg = f"internal error: {type(error).__name__}"
            return await self._error(writer, code, msg, json_out, close=close)
        await self._error(writer, code, str(error), json_out, close=close)

    async def _error(
        self,
        writer: asyncio.StreamWriter,
        code: int,
        message: str,
        json_out: bool,
        headers: dict[str, str] | None = None,
        close: bool = True,
    ) -> None:
        await self._write(
            writer, code, status_pb2.Status(message=message), json_out, headers, close
        )

    async def _write(
        self,
        writer: asyncio.StreamWriter,
        code: int,
        msg: Message,
        json_out: bool,
        headers: dict[str, str] | None,
        close: bool,
    ) -> None:
        body = json_format.MessageToJson(msg).encode() if json_out else msg.SerializeToString()
        lines = [
            f"HTTP/1.1 {code} {HTTPStatus(code).phrase}",
            f"Content-Type: {JSON if json_out else PROTOBUF}",
            f"Content-Length: {len(body)}",
            *(f"{k}: {v}" for k, v in (headers or {}).items()),
        ]
        if close:
            lines.append("Connection: close")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        await asyncio.wait_for(writer.drain(), self.config.http_body_timeout_s)

    async def _stop(self) -> None:
        self.server.close()
        for conn in [c for c in self._conns if c.idle]:
            conn.writer.transport.abort()
        waited = 0.0
        while any(not c.idle for c in self._conns) and waited < STOP_WAIT_S:
            await asyncio.sleep(0.01)
            waited += 0.01
        for conn in list(self._conns):
            conn.writer.transport.abort()
        await self.server.wait_closed()

    def stop(self) -> None:
        """Stops accepting, waits for requests in flight, closes the connections."""
        self.loop.run(self._stop())
        if self._own_loop:
            self.loop.close()
