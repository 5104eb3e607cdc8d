"""A sidecar with its page on port 0 and live traffic from a thread (tests/web)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from logclust.client import Client
from logclust.cluster.config import StreamClusterConfig
from logclust.server import ServerConfig, SidecarServer, create_server
from logclust.sidecar.config import StreamLabelerConfig
from tests.fakes import FAKE_KINDS, FakeLabeler, fake_traffic

# A kind held back until the source is past its start-up: it arrives as a new kind.
LATE_KIND = "signup"
XSS_SOURCE = "hostile"
# The page's "now" (p50, p99, rows/s): short, so that a test sees it move.
RATE_WINDOW_S = 10
XSS_BODIES = [
    "<script>window.__xss = 1</script> GET /cart",
    '<img src=x onerror="window.__xss = 2"> POST /login',
]


def config(grace_s: int = 2, **kwargs: object) -> ServerConfig:
    clusters = StreamClusterConfig(reservoir_size=1000, background_consolidation=False)
    labeler = StreamLabelerConfig(
        window_s=1, rate_window_s=RATE_WINDOW_S, new_kind_grace_s=grace_s, clusters=clusters
    )
    settings: dict[str, object] = {"http_listen": "127.0.0.1:0", **kwargs}
    return ServerConfig(
        listen="127.0.0.1:0",
        flush_interval_s=0.5,
        labeler=labeler,
        **settings,  # type: ignore[arg-type]
    )


def _batches(rows: int, seed: int, late: bool) -> list[pa.Table]:
    t = fake_traffic(rows, seed=seed).select(["body", "latency_ms", "source", "kind"])
    kinds = [k for k in FAKE_KINDS if late or k != LATE_KIND]
    t = t.filter(pc.is_in(t.column("kind"), pa.array(kinds))).drop_columns(["kind"])
    return [t.slice(i, 400) for i in range(0, t.num_rows, 400)]


def xss_batch() -> pa.Table:
    n = len(XSS_BODIES)
    return pa.table(
        {
            "body": pa.array(XSS_BODIES * 5, pa.string()),
            "latency_ms": pa.array([12.5] * (5 * n), pa.float64()),
            "source": pa.array([XSS_SOURCE] * (5 * n), pa.string()),
        }
    )


@dataclass
class Traffic:
    """Sends batches in a loop until stopped; `LATE_KIND` once `late` is set."""

    addr: str
    stop: threading.Event = field(default_factory=threading.Event)
    late: threading.Event = field(default_factory=threading.Event)
    batches_sent: int = 0
    sent: threading.Event = field(default_factory=threading.Event)  # first batch answered

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="traffic", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.stop.set()
        thread = getattr(self, "_thread", None)
        if thread is not None:
            thread.join(30)

    def run(self) -> None:
        early, later = _batches(6000, 0, False), _batches(6000, 1, True)
        with Client(self.addr) as client:
            client.label(xss_batch())
            i = 0
            while not self.stop.is_set():
                source = later if self.late.is_set() else early
                client.label(source[i % len(source)])
                self.batches_sent += 1
                self.sent.set()
                i += 1
                self.stop.wait(0.05)


@contextmanager
def live_sidecar(cfg: ServerConfig) -> Iterator[tuple[SidecarServer, int, Traffic]]:
    """The server, its gRPC port and the traffic (`start()` it; stopped on exit)."""
    srv, port = create_server(cfg, FakeLabeler())
    traffic = Traffic(f"127.0.0.1:{port}")
    with srv:
        try:
            yield srv, port, traffic
        finally:
            traffic.close()
