"""Server assembly: `create_server(config, labeler) -> (server, port)` and blocking `serve()`.

Shutdown (SIGTERM or SIGINT in `serve`, or `SidecarServer.stop`): health turns
NOT_SERVING so load balancers stop routing, in-flight calls get `grace_s` to finish, then
the state is flushed to the store a last time and the store is closed.
"""

from __future__ import annotations

import logging
import signal
import threading
from concurrent import futures
from types import FrameType, TracebackType

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from logclust.embed.embedding_cache import Embedder
from logclust.proto import logclust_pb2_grpc as pb_grpc
from logclust.server.config import ServerConfig
from logclust.server.otlp import OtlpEndpoints
from logclust.server.service import LogClustService
from logclust.sidecar.core import Sidecar
from logclust.sidecar.metrics import Metrics
from logclust.sidecar.store import MemoryStore, PeriodicFlusher, SqliteStore, StateStore
from logclust.sidecar.stream_labeler import StreamLabeler

logger = logging.getLogger(__name__)

SERVICE_NAME = "logclust.v1.LogClust"


class SidecarServer:
    """A started gRPC server with its sidecar, store flusher, health and metrics.

    Use as a context manager or call `stop()`; `stop` is idempotent.
    """

    def __init__(
        self,
        grpc_server: grpc.Server,
        sidecar: Sidecar,
        health_servicer: health.HealthServicer,
        flusher: PeriodicFlusher,
        store: StateStore,
        metrics: Metrics,
        port: int,
        otlp: OtlpEndpoints | None = None,
    ) -> None:
        self.grpc_server = grpc_server
        self.sidecar = sidecar
        self.health = health_servicer
        self.flusher = flusher
        self.store = store
        self.metrics = metrics
        self.port = port
        # OTLP receivers and forwarding queue (`config.otlp`); None when off.
        self.otlp = otlp
        self._stopped = threading.Event()
        self._stop_lock = threading.Lock()

    def stop(self, grace: float | None = None) -> None:
        """NOT_SERVING, `grace` seconds for in-flight calls, final flush, store closed."""
        with self._stop_lock:
            if self._stopped.is_set():
                return
            self.health.enter_graceful_shutdown()
            stopped = self.grpc_server.stop(grace)
            if self.otlp is not None:
                self.otlp.stop(grace)  # receivers, then the forwarding queue drains
            stopped.wait()
            self.sidecar.wait_for_consolidations(timeout=30)
            self.flusher.stop()
            close = getattr(self.store, "close", None)
            if close is not None:
                close()
            self.metrics.stop_http()
            self._stopped.set()
            logger.info("sidecar stopped")

    def wait_for_termination(self, timeout: float | None = None) -> bool:
        """Blocks until `stop()` finished; returns False on timeout."""
        return self._stopped.wait(timeout)

    def __enter__(self) -> SidecarServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop(grace=None)


def open_store(config: ServerConfig) -> StateStore:
    """SQLite store in `config.store_dir`, or memory when None."""
    return MemoryStore() if config.store_dir is None else SqliteStore(config.store_dir)


def create_server(
    config: ServerConfig, labeler: Embedder, store: StateStore | None = None
) -> tuple[SidecarServer, int]:
    """Builds, binds and starts the sidecar.

    Args:
        config: server settings; `listen` with port 0 binds a free port.
        labeler: the embedder (`Labeler.load(...)` or a test fake).
        store: overrides the store chosen by `config.store_dir`.

    Returns:
        `(server, port)`: the started server and the bound port.

    Raises:
        OSError: the address could not be bound.
    """
    store = open_store(config) if store is None else store
    metrics = Metrics(config.metrics_max_series)
    sidecar = Sidecar(StreamLabeler(labeler, config.labeler_config()), store, metrics)
    options = [
        ("grpc.max_receive_message_length", config.max_message_bytes),
        ("grpc.max_send_message_length", config.max_message_bytes),
        ("grpc.so_reuseport", 0),
    ]
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=config.max_workers, thread_name_prefix="logclust"),
        options=options,
    )
    pb_grpc.add_LogClustServicer_to_server(LogClustService(sidecar, metrics), server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    try:
        port = server.add_insecure_port(config.listen)
    except RuntimeError:
        port = 0
    if port == 0:
        close = getattr(store, "close", None)
        if close is not None:
            close()
        raise OSError(f"Could not bind the gRPC server. Received: listen={config.listen!r}")
    otlp = None
    if config.otlp is not None:
        try:
            otlp = OtlpEndpoints(config.otlp, sidecar, metrics, config.max_workers)
        except OSError:
            close = getattr(store, "close", None)
            if close is not None:
                close()
            raise
    flusher = PeriodicFlusher(sidecar.flush, config.flush_interval_s)
    if config.metrics_port is not None:
        host = config.listen.rpartition(":")[0].strip("[]")
        metrics.start_http(config.metrics_port, addr=host)
    server.start()
    flusher.start()
    for name in ("", SERVICE_NAME):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    logger.info("listening on %s:%d", config.listen.rpartition(":")[0], port)
    return (
        SidecarServer(server, sidecar, health_servicer, flusher, store, metrics, port, otlp),
        port,
    )


def serve(config: ServerConfig, labeler: Embedder) -> None:
    """Runs the sidecar until SIGTERM or SIGINT, then shuts down gracefully."""
    server, port = create_server(config, labeler)
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        logger.info(
            "signal %s: shutting down (grace %.1f s)", signal.Signals(signum).name, config.grace_s
        )
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        while not stop.wait(0.5):
            pass
    finally:
        server.stop(grace=config.grace_s)
        for s, handler in previous.items():
            signal.signal(s, handler)
