"""Settings of the OTLP logs endpoints: where they listen, how records map, how they leave."""

from __future__ import annotations

from dataclasses import dataclass

# Schemes `forward` may start with: https dials TLS, http plaintext.
HTTPS, HTTP = "https://", "http://"
# Latency attribute units (`name:unit`) and their factor to milliseconds.
LATENCY_UNITS: dict[str, float] = {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1000.0}


def _without_scheme(addr: str) -> str:
    for scheme in (HTTPS, HTTP):
        if addr.startswith(scheme):
            return addr[len(scheme) :]
    return addr


def _check_addr(name: str, addr: str | None, schemes: bool = False) -> None:
    if addr is None:
        return
    host, sep, port = (_without_scheme(addr) if schemes else addr).rpartition(":")
    if not sep or not host or not port.isdigit() or (schemes and "/" in host):
        form = "[https://|http://]HOST:PORT" if schemes else "HOST:PORT"
        raise ValueError(f"{name} must be {form}. Received: {name}={addr!r}")


@dataclass(frozen=True)
class OtlpConfig:
    """The OTLP receivers (gRPC and/or HTTP) and the optional forwarder.

    The mapping of a log record to the Arrow contract is documented in the README
    ("OpenTelemetry (OTLP)"): text from the body (or `body_attribute`), source from the
    resource attribute `source_attribute`, latency from the record attribute
    `latency_attribute`, time from `time_unix_nano` (observed time when unset).

    The receivers serve the TLS of the server they are part of (`ServerConfig.tls`),
    mutual TLS included, unless `grpc_plaintext`/`http_plaintext` opt one out. The
    forwarder has TLS settings of its own (`forward_ca_file` and the client pair).
    """

    # OTLP/gRPC host:port (LogsService/Export); None: no gRPC receiver.
    listen: str | None = None
    # OTLP/HTTP host:port (POST /v1/logs, protobuf or JSON); None: no HTTP receiver.
    http_listen: str | None = None
    # Next hop (OTLP/gRPC host:port) for labelled records; None: label and record only.
    # `https://host:port` dials TLS (the system's roots unless `forward_ca_file`), and so
    # does a plain host:port with `forward_ca_file`; otherwise plaintext.
    forward: str | None = None
    # Records waiting for the next hop; past this, Export answers RESOURCE_EXHAUSTED and
    # the senders keep the records and retry. A queued record holds its serialized bytes
    # and some overhead (RSS with the next hop down: `python -m bench.otlp_outage`): the
    # default keeps a full queue small beside the sidecar's own memory. A queue is a few
    # seconds of traffic at most either way.
    queue_records: int = 20_000
    # Bytes of requests waiting for the next hop (bounds memory when records are large;
    # at least `max_request_bytes`, so that any accepted request can wait).
    queue_bytes: int = 16 * 1024 * 1024
    # Largest Export request accepted (gRPC message or HTTP body, after gunzip).
    max_request_bytes: int = 16 * 1024 * 1024
    # Record attribute holding the text to cluster (e.g. `http.request.body`); records
    # without it fall back to the body. None: always the body.
    body_attribute: str | None = None
    # Resource attribute naming the source (each source has its own clusters).
    source_attribute: str = "service.name"
    # Record attribute with the latency, `name` (ms) or `name:unit` (ns, us, ms, s).
    latency_attribute: str = "latency_ms"
    # Records per downstream Export (queued requests are merged up to this).
    forward_batch_records: int = 2048
    # Deadline of one downstream Export.
    forward_timeout_s: float = 10.0
    # Retry backoff: first delay, doubled per failure up to the maximum.
    retry_initial_s: float = 0.2
    retry_max_s: float = 5.0
    # Delay suggested to senders (RetryInfo, Retry-After) when the queue is full.
    retry_after_s: float = 1.0
    # Forward only the records the storage budget keeps, each with the attribute
    # `logclust.sample_weight` (docs/sampling.md); needs `forward` and a budget.
    forward_sampled: bool = False
    # -- TLS (the receivers' own is the server's: `ServerConfig.tls`) --
    # PEM CA bundle the next hop's certificate must chain to (dials TLS).
    forward_ca_file: str | None = None
    # PEM client certificate chain and key shown to the next hop (mutual TLS; both or
    # neither, and only over TLS).
    forward_cert_file: str | None = None
    forward_key_file: str | None = None
    # Serve the OTLP/gRPC receiver in plaintext even when the server has TLS.
    grpc_plaintext: bool = False
    # Serve the OTLP/HTTP receiver in plaintext even when the server has TLS.
    http_plaintext: bool = False
    # -- sturdiness (docs/otlp.md "Limits") --
    # Share of the sidecar's `max_sources` that OTLP senders may open (at least one): one
    # sender naming new services cannot take the slots of `Label` clients.
    max_sources_share: float = 0.5
    # OTLP/HTTP connections open at once; at the cap the longest idle one is closed for a
    # new one, and with none idle the new one gets 503 and is closed.
    http_max_connections: int = 1024
    # Seconds a client has to send a request's line and headers once it started it.
    http_header_timeout_s: float = 10.0
    # Seconds a client has to send a request's body once its headers are in.
    http_body_timeout_s: float = 30.0
    # Seconds a keep-alive connection may wait for its next request.
    http_idle_timeout_s: float = 60.0
    # Listen backlog of the OTLP/HTTP socket (connections the kernel queues for accept).
    http_backlog: int = 1024

    def __post_init__(self) -> None:
        _check_addr("listen", self.listen)
        _check_addr("http_listen", self.http_listen)
        _check_addr("forward", self.forward, schemes=True)
        if self.listen is None and self.http_listen is None:
            raise ValueError(
                "An OTLP config needs listen or http_listen. "
                f"Received: listen={self.listen!r}, http_listen={self.http_listen!r}"
            )
        for name in ("queue_records", "queue_bytes", "max_request_bytes", "forward_batch_records"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive. Received: {name}={getattr(self, name)}")
        for name in ("http_max_connections", "http_backlog"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive. Received: {name}={getattr(self, name)}")
        if not 0.0 < self.max_sources_share <= 1.0:
            raise ValueError(
                f"max_sources_share must be in (0, 1]. Received: {self.max_sources_share}"
            )
        for name in (
            "forward_timeout_s",
            "retry_initial_s",
            "retry_max_s",
            "retry_after_s",
            "http_header_timeout_s",
            "http_body_timeout_s",
            "http_idle_timeout_s",
        ):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0. Received: {name}={getattr(self, name)}")
        if not self.source_attribute:
            raise ValueError("source_attribute must not be empty. Received: ''")
        self.latency_key()  # raises on an unknown unit
        if self.forward_sampled and self.forward is None:
            raise ValueError("forward_sampled needs forward. Received: forward=None")
        self._check_plaintext()
        self._check_forward_tls()

    def _check_plaintext(self) -> None:
        for name, listener in (("grpc_plaintext", "listen"), ("http_plaintext", "http_listen")):
            if getattr(self, name) and getattr(self, listener) is None:
                raise ValueError(f"{name} needs {listener}. Received: {name}=True, {listener}=None")

    def _check_forward_tls(self) -> None:
        files = {
            "forward_ca_file": self.forward_ca_file,
            "forward_cert_file": self.forward_cert_file,
            "forward_key_file": self.forward_key_file,
        }
        given = {name: path for name, path in files.items() if path is not None}
        if given and self.forward is None:
            raise ValueError(f"{', '.join(given)} needs forward. Received: forward=None")
        if (self.forward_cert_file is None) != (self.forward_key_file is None):
            raise ValueError(
                "A forward client certificate needs both forward_cert_file and "
                f"forward_key_file. Received: forward_cert_file={self.forward_cert_file!r}, "
                f"forward_key_file={self.forward_key_file!r}"
            )
        if self.forward is not None and self.forward.startswith(HTTP) and given:
            raise ValueError(
                f"An http:// forward dials plaintext and takes no {', '.join(given)}. "
                f"Received: forward={self.forward!r}"
            )
        if self.forward_cert_file is not None and not self.forward_tls():
            raise ValueError(
                "A forward client certificate needs TLS: give forward_ca_file or an "
                f"https:// forward. Received: forward={self.forward!r}, forward_ca_file=None"
            )

    def source_share(self, max_sources: int) -> int:
        """Sources OTLP senders may open of `max_sources` (`max_sources_share`, at least 1)."""
        return max(1, int(max_sources * self.max_sources_share))

    def forward_target(self) -> str | None:
        """`forward` as gRPC dials it (host:port, without a scheme); None without one."""
        return None if self.forward is None else _without_scheme(self.forward)

    def forward_tls(self) -> bool:
        """Whether the forwarder dials TLS: an `https://` forward or a forward CA."""
        if self.forward is None:
            return False
        return self.forward.startswith(HTTPS) or self.forward_ca_file is not None

    def latency_key(self) -> tuple[str, float]:
        """`(attribute name, factor to ms)` of `latency_attribute`."""
        name, sep, unit = self.latency_attribute.rpartition(":")
        if not sep:
            name, unit = self.latency_attribute, "ms"
        if not name or unit not in LATENCY_UNITS:
            raise ValueError(
                f"latency_attribute must be NAME or NAME:UNIT with unit in {list(LATENCY_UNITS)}. "
                f"Received: latency_attribute={self.latency_attribute!r}"
            )
        return name, LATENCY_UNITS[unit]
