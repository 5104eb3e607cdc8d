"""Settings of the sidecar server, in a module light to import: the CLI parser reads
their defaults at every start (`logclust.cli.settings`)."""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from logclust.otlp.config import OtlpConfig
from logclust.rpc.tls import TlsConfig
from logclust.server.memory import SIZED_FIELDS, sizes_for_budget
from logclust.sidecar.config import StreamLabelerConfig
from logclust.sidecar.store import MAX_FLUSH_INTERVAL_S

DEFAULT_LISTEN = "127.0.0.1:50051"
# MiB of RSS for the whole process: a round budget above the minimum for 64 sources
# (the process itself counts as `BASE_MIB + HEADROOM_MIB`; a budget under the minimum
# stops `serve` at start, naming the smallest that fits).
DEFAULT_MEMORY_BUDGET_MB = 400
UNIX_PREFIX = "unix:"
# `encoder_variant` values (`logclust.embed.variant.CHOICES`; kept here, where the CLI
# parser reads them without importing the encoder).
ENCODER_VARIANTS = ("auto", "float32", "int8")


def check_listen(listen: str, name: str = "listen") -> None:
    """`HOST:PORT`, or `unix:///abs/path` / `unix:rel/path` (a Unix domain socket).

    Raises:
        ValueError: neither form.
    """
    if listen.startswith(UNIX_PREFIX):
        if not unix_path(listen).strip("/"):
            raise ValueError(f"{name} needs a socket path after 'unix:'. Received: {listen!r}")
        return
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"{name} must be HOST:PORT or unix:///PATH. Received: {name}={listen!r}")


def http_address(listen: str) -> tuple[str, int]:
    """`(host, port)` of `http_listen`: `HOST:PORT`, `:PORT` or `PORT` (127.0.0.1).

    Raises:
        ValueError: not one of these forms, or not a port.
    """
    host, _, port = listen.rpartition(":")
    if not port.isdigit() or int(port) > 65535 or listen.startswith(UNIX_PREFIX):
        raise ValueError(
            f"http_listen must be HOST:PORT, :PORT or PORT. Received: http_listen={listen!r}"
        )
    return host.strip("[]") or "127.0.0.1", int(port)


def unix_path(listen: str) -> str:
    """The socket file of a `unix:` address (gRPC's forms: `unix:path`, `unix:///abs`)."""
    rest = listen[len(UNIX_PREFIX) :]
    return "/" + rest.lstrip("/") if rest.startswith("//") else rest


def usable_cores(cgroup_cpu_max: str = "/sys/fs/cgroup/cpu.max") -> int:
    """The cores this process may use: its CPU affinity, cut to a cgroup v2 CPU quota
    (`cpu.max`, "QUOTA PERIOD" or "max PERIOD"; a container's `--cpus`), at least 1."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cores = cores or 1
    try:
        quota, period = Path(cgroup_cpu_max).read_text().split()[:2]
        if quota != "max":
            cores = min(cores, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError):
        pass  # no cgroup v2 quota readable: the affinity stands
    return max(1, cores)


@dataclass(frozen=True)
class LabelLimits:
    """Bounds of the Label path, taken from a `ServerConfig` (`label_limits()`), where
    each is set and explained."""

    max_inflight_batches: int
    max_inflight_bytes: int
    stream_idle_timeout_s: float
    max_response_bytes: int
    max_decompressed_bytes: int


@dataclass(frozen=True)
class ServerConfig:
    """Everything `create_server` needs besides the embedder."""

    # host:port to bind (port 0 picks a free port, tests), or unix:///path (socket 0600).
    listen: str = DEFAULT_LISTEN
    # Directory of the SQLite store; None keeps state in memory only (lost on exit).
    store_dir: str | None = None
    # Prometheus HTTP port; None disables metrics, 0 picks a free port.
    metrics_port: int | None = None
    # Host the metrics endpoint binds: loopback unless asked, whatever `listen` is.
    metrics_host: str = "127.0.0.1"
    # A damaged store file (corrupt, truncated, not logclust's) is moved aside
    # (`<name>.damaged-<time>`) and the sidecar starts empty, with a warning; False: it
    # refuses to start, naming the file.
    store_recover: bool = False
    # host:port of the page (`logclust.web`: clusters, latency, new kinds; read-only);
    # a bare PORT or :PORT binds 127.0.0.1. None: no page. TLS as `tls`.
    http_listen: str | None = None
    # Seconds between flushes to the store: a crash loses at most this much.
    flush_interval_s: float = 1.0
    # gRPC message size limit in both directions (a larger request: RESOURCE_EXHAUSTED).
    max_message_bytes: int = 64 * 1024 * 1024
    # Memory budget of the whole process, MiB of RSS: `sized()` derives from it and
    # `labeler.max_sources` the sizes of what grows with use, so that every source present
    # with full caches fits (`logclust.server.memory.sizes_for_budget`). None: no budget.
    memory_budget_mb: int | None = DEFAULT_MEMORY_BUDGET_MB
    # Fields of `labeler.clusters` the budget leaves as given (the `serve` flags given),
    # besides those set to other values than their defaults.
    keep_sizes: frozenset[str] = frozenset()
    # Threads labelling batches (streams themselves are coroutines: open ones cost no
    # thread). Also the OTLP/gRPC receiver's pool size.
    max_workers: int = 8
    # Label batches labelled at once, shared fairly between streams (`FairExecutor` slots);
    # None: the cores this process may use (its CPU affinity and cgroup quota), at most
    # `max_workers`. More than the cores only interleave batches on a core: a light
    # stream's batch then shares it with a heavy one, and its p99 grows with the slots
    # per core (`python -m bench.contention`). A long batch yields at checkpoints, so one
    # slot does not let a burst of new texts hold every other stream.
    label_threads: int | None = None
    # Label batches in flight over all streams; one more is refused RESOURCE_EXHAUSTED at
    # once rather than queued without bound.
    max_inflight_batches: int = 256
    # Request bytes (Arrow IPC, as sent) in flight over all streams; one more is refused
    # RESOURCE_EXHAUSTED at once. Bounds what queued batches hold, whatever their number
    # and size (a request alone is always taken, up to `max_message_bytes`).
    max_inflight_bytes: int = 64 * 1024 * 1024
    # A Label stream with no request for this long is ended (DEADLINE_EXCEEDED).
    stream_idle_timeout_s: float = 300.0
    # Bytes one Label payload may decode to (a compressed payload is checked before it is
    # decompressed: a small zstd bomb can claim gigabytes).
    max_decompressed_bytes: int = 256 * 1024 * 1024
    # TLS (and mTLS) of every listener: the gRPC server and the OTLP receivers (unless
    # `otlp` opts one out); None: plaintext.
    tls: TlsConfig | None = None
    # On SIGTERM, in-flight calls get this long to finish.
    grace_s: float = 5.0
    # Distinct (source, cluster) label pairs in the latency histogram metric.
    metrics_max_series: int = 200
    # Encoder variant `logclust serve` loads: auto times both of the bundle's (float32,
    # int8) on a few batches at start, in bounded time, and keeps the faster; int8 pays on CPUs
    # with AVX-512 VNNI only (`logclust.embed.variant`). float32 or int8 force one.
    encoder_variant: str = "auto"
    # What the sidecar keeps and accepts: latency windows, sources, rows a batch, the
    # clustering, log formats.
    labeler: StreamLabelerConfig = field(default_factory=StreamLabelerConfig)
    # OTLP logs receivers and forwarding (README "OpenTelemetry (OTLP)"); None: off.
    otlp: OtlpConfig | None = None
    # The fleet's catalog file (`logclust catalog build`; docs/fleet.md): rows of its
    # kinds get its ids on every sidecar. None: ids in arrival order.
    catalog: str | None = None
    # Seconds between checks of the catalog file for a change (size, time, then digest):
    # a changed file is loaded without a restart; a bad one keeps the old catalog.
    catalog_poll_s: float = 5.0

    def __post_init__(self) -> None:
        check_listen(self.listen)
        if self.http_listen is not None:
            http_address(self.http_listen)
        if not 0.0 < self.flush_interval_s <= MAX_FLUSH_INTERVAL_S:
            raise ValueError(
                f"flush_interval_s must be in (0, {MAX_FLUSH_INTERVAL_S}]. "
                f"Received: flush_interval_s={self.flush_interval_s}"
            )
        limits = {
            "max_message_bytes": self.max_message_bytes,
            "max_workers": self.max_workers,
            "label_threads": self.label_threads or 1,
            "metrics_max_series": self.metrics_max_series,
            "max_inflight_batches": self.max_inflight_batches,
            "max_inflight_bytes": self.max_inflight_bytes,
            "max_decompressed_bytes": self.max_decompressed_bytes,
            "stream_idle_timeout_s": self.stream_idle_timeout_s,
            "catalog_poll_s": self.catalog_poll_s,
        }
        for name, value in limits.items():
            if value <= 0:
                raise ValueError(f"{name} must be positive. Received: {name}={value}")
        if self.encoder_variant not in ENCODER_VARIANTS:
            raise ValueError(
                f"encoder_variant must be one of {ENCODER_VARIANTS}. "
                f"Received: encoder_variant={self.encoder_variant!r}"
            )
        if self.metrics_port is not None and not 0 <= self.metrics_port < 65536:
            raise ValueError(f"metrics_port must be a port. Received: {self.metrics_port}")
        if self.grace_s < 0:
            raise ValueError(f"grace_s must be >= 0. Received: grace_s={self.grace_s}")
        budget = self.memory_budget_mb
        if budget is not None and budget <= 0:
            raise ValueError(
                f"memory_budget_mb must be positive. Received: memory_budget_mb={budget}"
            )
        sampled = self.otlp is not None and self.otlp.forward_sampled
        if sampled and not self.labeler.sampling.enabled:
            raise ValueError(
                "otlp.forward_sampled needs a storage budget (labeler.sampling: "
                "--sample-fraction or --sample). Received: no budget"
            )
        unknown = sorted(set(self.keep_sizes) - set(SIZED_FIELDS))
        if unknown:
            raise ValueError(
                f"keep_sizes names fields the budget sets ({', '.join(SIZED_FIELDS)}). "
                f"Received: {unknown}"
            )

    def label_pool_size(self) -> int:
        """Slots of the Label pool (see `label_threads`)."""
        if self.label_threads is not None:
            return self.label_threads
        return min(self.max_workers, usable_cores())

    def sized(self, dim: int) -> ServerConfig:
        """This config with the sizes `memory_budget_mb` gives for embeddings of `dim`
        (itself without a budget); explicit settings are kept (see `keep_sizes`).

        Raises:
            ValueError: the budget is too small for `labeler.max_sources` (the message
                names the smallest budget that fits).
        """
        if self.memory_budget_mb is None:
            return self
        labeler = self.labeler
        sizes = sizes_for_budget(self.memory_budget_mb, labeler.max_sources, dim)
        labeler = dataclasses.replace(
            labeler,
            clusters=sizes.apply(labeler.clusters, self.keep_sizes),
            latency_max_bytes=labeler.latency_max_bytes or sizes.latency_max_bytes,
        )
        return dataclasses.replace(self, labeler=labeler)

    def label_limits(self) -> LabelLimits:
        """The bounds of the Label path, as the servicer takes them."""
        return LabelLimits(
            max_inflight_batches=self.max_inflight_batches,
            max_inflight_bytes=self.max_inflight_bytes,
            stream_idle_timeout_s=self.stream_idle_timeout_s,
            max_response_bytes=self.max_message_bytes,
            max_decompressed_bytes=self.max_decompressed_bytes,
        )
