"""The sidecar's page over HTTP(S): `PageServer`, read-only, from threads of its own.

Routes (GET and HEAD only; any other path is 404, any other method 405):

* `/` the cluster table, `/cluster?source=S&id=N` one cluster (static HTML);
* `/static/<name>` the script, the style sheet (files of this package: offline);
* `/api/overview` and `/api/cluster?source=S&id=N`: the JSON the pages draw.

Data never enters HTML on the server: the pages set it as text (`textContent`) and
every answer carries a Content-Security-Policy allowing only this server's own script
and style (no inline script runs), so a template or exemplar holding markup is shown as
text. The JSON escapes `<`, `>` and `&` as well.

A request costs a thread of this server and a snapshot that is shared for
`PageData.max_age_s`; labelling never waits for a page (the snapshot takes each
source's lock for a copy of its stats, as `Clusters` does). Connections are capped at
`MAX_CONNECTIONS`; more are closed at once.
"""

from __future__ import annotations

import logging
import socket
import ssl
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

from logclust.web.data import PageData
from logclust.web.encode import to_json

logger = logging.getLogger(__name__)

# Open connections served at once (a browser holds a few).
MAX_CONNECTIONS = 32
# An idle keep-alive connection, or a TLS handshake, is dropped after this long.
IDLE_TIMEOUT_S = 30.0
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
_PAGES = {"/": "index.html", "/index.html": "index.html", "/cluster": "cluster.html"}
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def _static_files() -> dict[str, bytes]:
    """Every file of `logclust/web/static`, read once."""
    root = resources.files("logclust.web") / "static"
    return {f.name: f.read_bytes() for f in root.iterdir() if f.is_file()}


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    timeout = IDLE_TIMEOUT_S

    def setup(self) -> None:
        if isinstance(self.request, ssl.SSLSocket):
            self.request.settimeout(self.timeout)
            self.request.do_handshake()  # in this thread, bounded by `timeout`
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
        logger.debug("%s " + format, self.address_string(), *args)

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        self._answer(body=True)

    def do_HEAD(self) -> None:  # noqa: N802 - stdlib name
        self._answer(body=False)

    def _not_allowed(self) -> None:
        self._send(405, b"read-only: GET and HEAD only\n", "text/plain; charset=utf-8", True)

    do_POST = do_PUT = do_DELETE = do_PATCH = _not_allowed  # noqa: N815 - stdlib names

    def _answer(self, body: bool) -> None:
        url = urlsplit(self.path)
        path, query = url.path, parse_qs(url.query)
        files = self.server.files
        try:
            if path in _PAGES:
                name = _PAGES[path]
                self._send(200, files[name], _TYPES[".html"], body)
            elif path.startswith("/static/") and path[8:] in files:
                name = path[8:]
                ext = name[name.rfind(".") :]
                self._send(200, files[name], _TYPES.get(ext, "application/octet-stream"), body)
            elif path == "/api/overview":
                self._send(200, self.server.data.overview_json(), "application/json", body)
            elif path == "/api/cluster":
                self._cluster(query, body)
            else:
                self._json(404, {"error": f"No such page. Received: {path[:200]!r}"}, body)
        except (BrokenPipeError, ConnectionResetError):
            raise
        except Exception:
            logger.exception("page request %s failed", self.path[:200])
            self._json(500, {"error": "internal error (logged)"}, body)

    def _cluster(self, query: dict[str, list[str]], body: bool) -> None:
        source, ident = query.get("source", [None])[0], query.get("id", [""])[0]
        if source is None or not ident.lstrip("-").isdigit():
            msg = f"Needs ?source=NAME&id=N. Received: source={source!r}, id={ident[:40]!r}"
            self._json(400, {"error": msg}, body)
            return
        found = self.server.data.cluster(source, int(ident))
        if found is None:
            msg = f"No such cluster. Received: source={source[:200]!r}, id={ident}"
            self._json(404, {"error": msg}, body)
        else:
            self._json(200, found, body)

    def _json(self, status: int, doc: Any, body: bool) -> None:
        self._send(status, to_json(doc), "application/json", body)

    def _send(self, status: int, data: bytes, ctype: str, body: bool) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for name, value in _HEADERS.items():
            self.send_header(name, value)
        self.end_headers()
        if body:
            self.wfile.write(data)


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a browser's idle keep-alive connection must not hold stop()
    block_on_close = False
    data: PageData
    files: dict[str, bytes]
    ssl_context: ssl.SSLContext | None = None
    _open = 0
    _count_lock = threading.Lock()

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, addr = super().get_request()
        if self.ssl_context is None:
            return sock, addr
        # The handshake waits for `_Handler.setup`, in the connection's thread.
        return self.ssl_context.wrap_socket(
            sock, server_side=True, do_handshake_on_connect=False
        ), addr

    def verify_request(self, request: Any, client_address: Any) -> bool:
        with self._count_lock:
            if self._open >= MAX_CONNECTIONS:
                logger.info("page connection from %s refused: %d open", client_address, self._open)
                return False
            self._open += 1
        return True

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._count_lock:
                self._open -= 1

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, (ssl.SSLError, ConnectionError, TimeoutError)):
            logger.info("page connection from %s closed: %s", client_address, error)
            return
        logger.error("page connection from %s failed", client_address, exc_info=error)


class PageServer:
    """The page on `host:port` (port 0: a free one), served from threads until `stop()`.

    Args:
        data: the snapshots the page draws.
        host: address to bind (loopback unless asked).
        port: port to bind.
        ssl_context: serve HTTPS with it (`logclust.rpc.tls.server_ssl_context`); None:
            plaintext.

    Raises:
        OSError: the address could not be bound.
    """

    def __init__(
        self,
        data: PageData,
        host: str = "127.0.0.1",
        port: int = 0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.server = _Server((host.strip("[]"), port), _Handler)
        self.server.data = data
        self.server.files = _static_files()
        self.server.ssl_context = ssl_context
        self.port = int(self.server.server_address[1])
        self.scheme = "http" if ssl_context is None else "https"
        self._thread = threading.Thread(
            target=self.server.serve_forever, name="logclust-page", daemon=True
        )
        self._thread.start()
        logger.info("page on %s://%s:%d/", self.scheme, host, self.port)

    def stop(self) -> None:
        """Stops accepting and closes the socket (open connections end with the process
        or at their idle timeout)."""
        self.server.shutdown()
        self.server.server_close()
