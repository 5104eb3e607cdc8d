"""256 idle Label streams open: health, queries and new streams are still answered."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator

import grpc
import numpy as np
import pyarrow as pa

from logclust.client import Client
from logclust.proto import logclust_pb2 as pb
from logclust.proto import logclust_pb2_grpc as pb_grpc
from logclust.server import SidecarServer
from logclust.wire import ipc

OPEN_STREAMS = 256
# Issue 11's target is 100 ms; a shared 2-core CI machine gets slack against flakes.
HEALTH_BOUND_S = 0.5


def test_256_idle_streams_starve_nothing(sidecar: tuple[SidecarServer, int]) -> None:
    _, port = sidecar
    addr = f"127.0.0.1:{port}"
    release: queue.Queue[None] = queue.Queue()
    first = ipc.encode_ipc(pa.table({"body": ["currency_code=EUR"], "latency_ms": [2.0]}))

    def idle() -> Iterator[pb.LabelRequest]:
        yield pb.LabelRequest(batch_id="0", arrow_ipc=first)
        release.get()  # then idle until the end of the test

    with grpc.insecure_channel(addr) as channel, Client(addr, timeout_s=5) as client:
        stub = pb_grpc.LogClustStub(channel)
        # Opened in waves below `max_inflight_batches` (32): 256 first batches at once are
        # answered RESOURCE_EXHAUSTED past it, by design, when the machine is slow.
        streams = []
        for _ in range(0, OPEN_STREAMS, 16):
            wave = [stub.Label(idle(), timeout=120) for _ in range(16)]
            for s in wave:
                assert next(s).num_rows == 1  # every stream was served and is held open
            streams += wave
        probes: list[float] = []
        for i in range(40):
            t0 = time.perf_counter()
            assert client.health() == "SERVING"
            probes.append(time.perf_counter() - t0)
            if i % 10 == 0:
                assert client.clusters().num_rows >= 1
                assert sum(client.latency().column("count").to_pylist()) >= OPEN_STREAMS
                out = client.label(pa.table({"body": [f"user_id={i} action=login"]}))
                assert out.num_rows == 1
        p99 = float(np.quantile(probes, 0.99))
        print(f"health p99 with {OPEN_STREAMS} open streams: {p99 * 1000:.1f} ms")
        assert max(probes) < HEALTH_BOUND_S
        for _ in streams:
            release.put(None)
        for s in streams:
            s.cancel()
    threading.Event().wait(0.1)
