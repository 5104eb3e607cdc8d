"""The OTLP listeners started together: the gRPC and HTTP receivers on one `OtlpReceiver`,
and the forwarding queue behind it.

Both listeners serve the TLS they are given (the server's, `logclust.rpc.tls`): the
same certificate as the `LogClust` server, and with a client CA a client certificate
required on each. `OtlpConfig.grpc_plaintext`/`http_plaintext` opt a listener out.

Both serve on one asyncio event loop of their own (open connections and waiting calls
cost no thread) and draw on the server's one admission budget (`logclust.rpc.admission`).
"""

from __future__ import annotations

import logging
from pathlib import Path

import grpc

from logclust.otlp.config import OtlpConfig
from logclust.otlp.forward import ForwardQueue
from logclust.otlp.http import OtlpHttpServer
from logclust.otlp.receiver import LabelPool, OtlpLogsService, OtlpReceiver
from logclust.otlp.spill import SPILL_NAME
from logclust.rpc.admission import Admission
from logclust.rpc.loop import EventLoopThread
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
        admission: the server's admission budget (shared with `Label`); None: one of
            the OTLP listeners' own (256 requests, 64 MiB).
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
        admission: Admission | None = None,
        pool: LabelPool | None = None,
        tls: TlsConfig | None = None,
        spill_dir: str | None = None,
    ) -> None:
        self.config = config
        registry = metrics.registry
        self.admission = admission or Admission(256, 64 << 20, config.retry_after_s)
        self.loop = EventLoopThread("logclust-otlp")
        self.grpc_server: grpc.aio.Server | None = None
        self.grpc_service: OtlpLogsService | None = None
        self.http: OtlpHttpServer | None = None
        self.port = self.http_port = 0
        spill = None if spill_dir is None else Path(spill_dir) / SPILL_NAME
        self.queue = None if config.forward is None else ForwardQueue(config, registry, spill)
        self.receiver = OtlpReceiver(config, sidecar, self.queue, registry, pool)
        try:
            if config.listen is not None:
                grpc_tls = None if config.grpc_plaintext else tls
                self.grpc_service = OtlpLogsService(self.receiver, self.admission, metrics)
                self.grpc_server, self.port = self.loop.run(
                    self._start_grpc(config.listen, self.grpc_service, grpc_tls)
                )
            if config.http_listen is not None:
                http_tls = None if config.http_plaintext else tls
                self.http = OtlpHttpServer(
                    config.http_listen,
                    self.receiver,
                    config,
                    self.admission,
                    metrics,
                    None if http_tls is None else server_ssl_context(http_tls),
                    self.loop,
                )
                self.http_port = self.http.port
        except BaseException:
            self.stop(0)
            raise
        if self.queue is not None:
            tls_note = " (TLS)" if config.forward_tls() else ""
            logger.info("forwarding OTLP logs to %s%s", config.forward, tls_note)

    async def _start_grpc(
        self, listen: str, service: OtlpLogsService, tls: TlsConfig | None
    ) -> tuple[grpc.aio.Server, int]:
        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", self.config.max_request_bytes),
                ("grpc.so_reuseport", 0),
                # Read ahead at most 64 KiB of a call not admitted yet (no window grown
                # by bandwidth probes): 40 fat exports waiting for room are not buffered.
                ("grpc.http2.bdp_probe", 0),
                ("grpc.http2.lookahead_bytes", 64 * 1024),
                # Idle connections are closed like OTLP/HTTP's keep-alives.
                ("grpc.max_connection_idle_ms", int(self.config.http_idle_timeout_s * 1000)),
            ],
        )
        service.add_to_server(server)
        try:
            if tls is None:
                port = server.add_insecure_port(listen)
            else:
                port = server.add_secure_port(listen, server_credentials(tls))
        except RuntimeError:
            port = 0
        if port == 0:
            raise OSError(f"Could not bind the OTLP gRPC receiver. Received: listen={listen!r}")
        await server.start()
        note = "" if tls is None else " (TLS)"
        logger.info("OTLP/gRPC logs on %s:%d%s", listen.rpartition(":")[0], port, note)
        return server, port

    def stop(self, grace: float | None) -> None:
        """Stops the receivers (in-flight calls get `grace`), then sends what is queued
        for up to `grace` seconds more; what is left is dropped and logged."""
        if self.grpc_server is not None:
            self.loop.run(self.grpc_server.stop(grace))
        if self.http is not None:
            self.http.stop()
        self.loop.close()
        if self.queue is not None:
            drained = self.queue.close(grace or 0.0)
            if not drained:
                logger.error("OTLP forwarding queue not drained within %s s", grace)
