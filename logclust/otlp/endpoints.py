"""The OTLP listeners started together: the gRPC and HTTP receivers on one `OtlpReceiver`,
and the forwarding queue behind it.

Both listeners serve the TLS they are given (the server's, `logclust.rpc.tls`): the
same certificate as the `LogClust` server, and with a client CA a client certificate
required on each. `OtlpConfig.grpc_plaintext`/`http_plaintext` opt a listener out.
"""

from __future__ import annotations

import logging
from concurrent import futures
from pathlib import Path

import grpc

from logclust.otlp.config import OtlpConfig
from logclust.otlp.forward import ForwardQueue
from logclust.otlp.http import OtlpHttpServer
from logclust.otlp.receiver import LabelPool, OtlpLogsService, OtlpReceiver
from logclust.otlp.spill import SPILL_NAME
from logclust.rpc.tls import TlsConfig, server_credentials, server_ssl_context
from logclust.sidecar.core import Sidecar
from logclust.sidecar.metrics import Metrics

logger = logging.getLogger(__name__)


class OtlpEndpoints:
    """The started OTLP receivers (gRPC, HTTP) and the forwarding queue.

    Args:
        config: what to start.
        sidecar: the labelling path shared with `Label`.
        metrics: the server's metrics (counters are added to its registry).
        max_workers: Export calls served at once over gRPC (taken in; labelled in `pool`).
        pool: the Label pool (see `OtlpReceiver`); None: in the receivers' threads.
        tls: the server's TLS, served by each listener that `config` does not opt out;
            None: plaintext.
        spill_dir: the store's directory: the forwarding queue is spilled there at a
            stop with the next hop down, and reloaded at start (`logclust.otlp.spill`).

    Raises:
        OSError: an address could not be bound, or a TLS file could not be read
            (whatever started is stopped).
    """

    def __init__(
        self,
        config: OtlpConfig,
        sidecar: Sidecar,
        metrics: Metrics,
        max_workers: int = 8,
        pool: LabelPool | None = None,
        tls: TlsConfig | None = None,
        spill_dir: str | None = None,
    ) -> None:
        self.config = config
        registry = metrics.registry
        self.grpc_server: grpc.Server | None = None
        self.http: OtlpHttpServer | None = None
        self.port = self.http_port = 0
        spill = None if spill_dir is None else Path(spill_dir) / SPILL_NAME
        self.queue = None if config.forward is None else ForwardQueue(config, registry, spill)
        self.receiver = OtlpReceiver(config, sidecar, self.queue, registry, pool)
        try:
            if config.listen is not None:
                grpc_tls = None if config.grpc_plaintext else tls
                self.grpc_server, self.port = self._start_grpc(
                    config.listen, metrics, max_workers, grpc_tls
                )
            if config.http_listen is not None:
                http_tls = None if config.http_plaintext else tls
                self.http = OtlpHttpServer(
                    config.http_listen,
                    self.receiver,
                    config.max_request_bytes,
                    metrics,
                    None if http_tls is None else server_ssl_context(http_tls),
                )
                self.http_port = self.http.port
        except BaseException:
            self.stop(0)
            raise
        if self.queue is not None:
            tls_note = " (TLS)" if config.forward_tls() else ""
            logger.info("forwarding OTLP logs to %s%s", config.forward, tls_note)

    def _start_grpc(
        self, listen: str, metrics: Metrics, workers: int, tls: TlsConfig | None
    ) -> tuple[grpc.Server, int]:
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="logclust-otlp"),
            options=[
                ("grpc.max_receive_message_length", self.config.max_request_bytes),
                ("grpc.so_reuseport", 0),
            ],
        )
        OtlpLogsService(self.receiver, metrics).add_to_server(server)
        try:
            if tls is None:
                port = server.add_insecure_port(listen)
            else:
                port = server.add_secure_port(listen, server_credentials(tls))
        except RuntimeError:
            port = 0
        if port == 0:
            raise OSError(f"Could not bind the OTLP gRPC receiver. Received: listen={listen!r}")
        server.start()
        note = "" if tls is None else " (TLS)"
        logger.info("OTLP/gRPC logs on %s:%d%s", listen.rpartition(":")[0], port, note)
        return server, port

    def stop(self, grace: float | None) -> None:
        """Stops the receivers (in-flight calls get `grace`), then sends what is queued
        for up to `grace` seconds more; what is left is dropped and logged."""
        if self.grpc_server is not None:
            self.grpc_server.stop(grace).wait()
        if self.http is not None:
            self.http.stop()
        if self.queue is not None:
            drained = self.queue.close(grace or 0.0)
            if not drained:
                logger.error("OTLP forwarding queue not drained within %s s", grace)
