"""Server assembly: `create_server(config, labeler) -> (server, port)` and blocking `serve()`.

The one place where the listeners are wired together: the `LogClust` gRPC server and,
when `config.otlp` asks for them, the OTLP receivers (`logclust.otlp`), all serving
`config.tls` (see `logclust.rpc.tls`).

The gRPC server is grpc's asyncio server, on an event loop of its own thread: health
checks run on the loop and never wait for a thread, open Label streams are coroutines
(hundreds cost no threads), and the blocking work runs in bounded pools (see
`logclust.server.service`).

Shutdown (SIGTERM or SIGINT in `serve`, or `SidecarServer.stop`): health turns
NOT_SERVING so load balancers stop routing, in-flight calls get `grace_s` to finish, then
the state is flushed to the store a last time and the store is closed.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from concurrent import futures
from types import FrameType, TracebackType

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio

from logclust.cluster.catalog import bundle_id
from logclust.embed.embedding_cache import Embedder
from logclust.otlp.endpoints import OtlpEndpoints
from logclust.proto import logclust_pb2_grpc as pb_grpc
from logclust.rpc.admission import Admission
from logclust.rpc.loop import EventLoopThread
from logclust.rpc.tls import server_credentials, server_ssl_context
from logclust.server.config import UNIX_PREFIX, ServerConfig, http_address, unix_path
from logclust.server.fair import FairExecutor
from logclust.server.memory import (
    BASE_MIB,
    HEADROOM_MIB,
    MIB,
    raise_open_file_limit,
    rss_mib,
    state_bytes,
)
from logclust.server.service import Executors, LogClustService
from logclust.sidecar.catalog_watch import CatalogWatcher
from logclust.sidecar.core import Sidecar
from logclust.sidecar.metrics import Metrics
from logclust.sidecar.store import (
    MemoryStore,
    PeriodicFlusher,
    SqliteStore,
    StateStore,
    StoreDamagedError,
    move_aside,
)
from logclust.sidecar.stream_labeler import StreamLabeler
from logclust.web import PageData, PageServer

logger = logging.getLogger(__name__)

SERVICE_NAME = "logclust.v1.LogClust"
# Threads answering Latency and Clusters: apart from labelling, so queries never queue
# behind batches.
QUERY_WORKERS = 2
# Nice added to the Label pool's threads (see `lower_thread_priority`).
LABEL_NICE = 5


class SidecarServer:
    """A started gRPC server with its sidecar, store flusher, health and metrics.

    Use as a context manager or call `stop()`; `stop` is idempotent.
    """

    def __init__(
        self,
        grpc_server: grpc.aio.Server,
        loop: EventLoopThread,
        executors: Executors,
        sidecar: Sidecar,
        health_servicer: health_aio.HealthServicer,
        flusher: PeriodicFlusher,
        store: StateStore,
        metrics: Metrics,
        port: int,
        otlp: OtlpEndpoints | None = None,
        page: PageServer | None = None,
    ) -> None:
        self.grpc_server = grpc_server
        self._loop = loop
        self._executors = executors
        self.sidecar = sidecar
        self.health = health_servicer
        self.flusher = flusher
        self.store = store
        self.metrics = metrics
        # The bound TCP port; for a unix: address, 1 (gRPC's answer for a bound socket).
        self.port = port
        # OTLP receivers and forwarding queue (`config.otlp`); None when off.
        self.otlp = otlp
        # The page (`config.http_listen`); None when off.
        self.page = page
        # The catalog file served and watched (`config.catalog`); None when off.
        self.catalog: CatalogWatcher | None = None
        self._stopped = threading.Event()
        self._stop_lock = threading.Lock()

    def start_catalog(self, watcher: CatalogWatcher | None) -> None:
        """Keeps `watcher` (the catalog served) and starts its checks of the file."""
        self.catalog = watcher
        if watcher is not None:
            watcher.start()

    def stop(self, grace: float | None = None) -> None:
        """NOT_SERVING, `grace` seconds for in-flight calls, final flush, store closed."""
        with self._stop_lock:
            if self._stopped.is_set():
                return
            self._loop.run(self.health.enter_graceful_shutdown())
            if self.catalog is not None:
                self.catalog.stop()
            if self.page is not None:
                self.page.stop()
            self._loop.run(self.grpc_server.stop(grace))
            if self.otlp is not None:
                self.otlp.stop(grace)  # receivers, then the forwarding queue drains
            self._executors.shutdown()
            self._loop.close()
            self.sidecar.wait_for_consolidations(timeout=30)
            self.flusher.stop()
            _close_store(self.store)
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
    """SQLite store in `config.store_dir`, or memory when None.

    A damaged store raises `StoreDamagedError` (one line: the file and what to do); with
    `config.store_recover` its files are moved aside instead (`<name>.damaged-<time>`)
    and the sidecar starts empty, with a warning.
    """
    if config.store_dir is None:
        return MemoryStore()
    store = None
    try:
        store = SqliteStore(config.store_dir)
        if config.store_recover:
            store.load_state()  # every row read once, so that a damaged page shows now
        return store
    except StoreDamagedError as e:
        if not config.store_recover:
            raise
        if store is not None:
            _close_store(store)
        aside = move_aside(config.store_dir)
        logger.warning("%s; --store-recover: moved it to %s, starting empty", e, aside)
        return SqliteStore(config.store_dir)


def _close_store(store: StateStore) -> None:
    close = getattr(store, "close", None)
    if close is not None:
        close()


def _bind(server: grpc.aio.Server, config: ServerConfig) -> int:
    """Binds `config.listen` (TCP or Unix socket, TLS or not); returns the port, 0 on failure."""
    path = unix_path(config.listen) if config.listen.startswith(UNIX_PREFIX) else None
    if path is not None and os.path.exists(path):
        os.unlink(path)  # a stale socket of a previous run (a live one fails to bind below)
    try:
        if config.tls is None:
            port = server.add_insecure_port(config.listen)
        else:
            port = server.add_secure_port(config.listen, server_credentials(config.tls))
    except RuntimeError:
        return 0
    if path is not None and port:
        os.chmod(path, 0o600)  # only this user may connect
    return port


async def _start_grpc(
    config: ServerConfig, service: LogClustService, health_servicer: health_aio.HealthServicer
) -> tuple[grpc.aio.Server, int]:
    options = [
        ("grpc.max_receive_message_length", config.max_message_bytes),
        ("grpc.max_send_message_length", config.max_message_bytes),
        ("grpc.so_reuseport", 0),
    ]
    server = grpc.aio.server(options=options)
    pb_grpc.add_LogClustServicer_to_server(service, server)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    port = _bind(server, config)
    if port:
        await server.start()
        for name in ("", SERVICE_NAME):
            await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return server, port


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
        OSError: the address could not be bound, or a TLS file could not be read.
        ValueError: `config.memory_budget_mb` is too small for
            `config.labeler.max_sources`.
    """
    config = config.sized(labeler.dim)
    _log_memory(config, labeler.dim)
    store = open_store(config) if store is None else store
    metrics = Metrics(config.metrics_max_series)
    sidecar = Sidecar(StreamLabeler(labeler, config.labeler), store, metrics)
    executors = Executors(
        label=FairExecutor(
            config.label_pool_size(),
            thread_name_prefix="logclust",
            initializer=lower_thread_priority,
        ),
        query=futures.ThreadPoolExecutor(QUERY_WORKERS, thread_name_prefix="logclust-query"),
    )
    raise_open_file_limit()
    # One budget of requests in flight for every listener (`logclust.rpc.admission`).
    admission = Admission(config.max_inflight_batches, config.max_inflight_bytes)
    service = LogClustService(sidecar, metrics, executors, config.label_limits(), admission)
    loop = EventLoopThread("logclust-grpc")
    server: grpc.aio.Server | None = None
    otlp: OtlpEndpoints | None = None
    try:
        catalog = watch_catalog(config, sidecar, labeler, metrics)
        health_servicer = health_aio.HealthServicer()
        server, port = loop.run(_start_grpc(config, service, health_servicer))
        if port == 0:
            raise OSError(f"Could not bind the gRPC server. Received: listen={config.listen!r}")
        if config.otlp is not None:
            otlp = OtlpEndpoints(
                config.otlp,
                sidecar,
                metrics,
                admission,
                executors.label,
                config.tls,
                spill_dir=config.store_dir,
            )
        page = _start_page(config, sidecar)
    except BaseException:
        if otlp is not None:
            otlp.stop(None)
        if server is not None:
            loop.run(server.stop(None))  # before its loop goes
        loop.close()
        executors.shutdown()
        _close_store(store)
        raise
    flusher = PeriodicFlusher(sidecar.flush, config.flush_interval_s)
    metrics.watch_counter(
        "logclust_flushes", "Flushes of the state to the store.", lambda: flusher.flushes
    )
    if config.metrics_port is not None:
        metrics.start_http(config.metrics_port, addr=config.metrics_host)
    flusher.start()
    _log_listening(config, port)
    srv = SidecarServer(
        server, loop, executors, sidecar, health_servicer, flusher, store, metrics, port, otlp, page
    )
    srv.start_catalog(catalog)
    return srv, port


def _log_listening(config: ServerConfig, port: int) -> None:
    where = (
        config.listen
        if config.listen.startswith(UNIX_PREFIX)
        else f"{config.listen.rpartition(':')[0]}:{port}"
    )
    logger.info("listening on %s%s", where, " (TLS)" if config.tls else "")


def watch_catalog(
    config: ServerConfig, sidecar: Sidecar, labeler: Embedder, metrics: Metrics
) -> CatalogWatcher | None:
    """Serves `config.catalog` (None when unset); its watcher is not started yet.

    Raises:
        CatalogError: the file cannot be used (missing, bad, of another bundle).
    """
    if config.catalog is None:
        return None
    bundle = getattr(labeler, "bundle", None)  # a test embedder has none: not checked
    manifest = getattr(bundle, "manifest", None)
    watcher = CatalogWatcher(
        config.catalog,
        sidecar.labeler.stream,
        None if manifest is None else bundle_id(manifest),
        config.catalog_poll_s,
    )
    watcher.load()
    watcher.watch_metrics(metrics)
    return watcher


def _start_page(config: ServerConfig, sidecar: Sidecar) -> PageServer | None:
    """The page on `config.http_listen` (TLS as the other listeners); None when off."""
    if config.http_listen is None:
        return None
    host, port = http_address(config.http_listen)
    ctx = None if config.tls is None else server_ssl_context(config.tls)
    return PageServer(PageData(sidecar), host, port, ctx)


def _log_memory(config: ServerConfig, dim: int) -> None:
    """Logs the sizes in force and the worst case they allow (a warning when explicit
    settings take it past the budget)."""
    c, sources = config.labeler.clusters, config.labeler.max_sources
    latency = config.labeler.latency_max_bytes
    worst = state_bytes(c, sources, dim, latency or 0) / MIB + BASE_MIB + HEADROOM_MIB
    logger.info(
        "memory: budget %s MiB, %d sources; cache %d texts, mask cache %d shapes; per source "
        "reservoir %d rows, memo %d texts, %d to %d clusters (%s in all); latency windows "
        "%s MiB; worst case about %.0f MiB (RSS now %.0f MiB)",
        config.memory_budget_mb,
        sources,
        c.cache_size,
        c.mask_cache_size,
        c.reservoir_size,
        min(c.memo_size, c.cache_size),
        c.reserved_clusters if c.max_clusters_total else c.max_clusters,
        c.max_clusters,
        c.max_clusters_total,
        "unbounded" if latency is None else f"{latency / MIB:.0f}",
        worst,
        rss_mib(),
    )
    budget = config.memory_budget_mb
    if budget is not None and worst > budget:
        logger.warning(
            "explicit sizes allow about %.0f MiB, over the memory budget of %d MiB", worst, budget
        )


def lower_thread_priority() -> None:
    """Lowers the calling (Label pool) thread's CPU priority by `LABEL_NICE`: on a busy
    core the event loop, which takes requests in and answers out, then runs as soon as it
    has work instead of after a labelling thread's time slice, which shortens a light
    client's wait beside heavy ones (`python -m bench.contention`). Linux only (a thread's
    nice)."""
    if sys.platform.startswith("linux"):
        try:
            tid = threading.get_native_id()
            os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + LABEL_NICE)
        except OSError as e:
            logger.debug("label thread priority unchanged: %s", e)


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
