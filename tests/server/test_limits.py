"""Availability and admission on the asyncio server: idle streams, overload, internal
errors, answers over the message limit and decompression bombs (issue 11)."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import numpy as np
import pyarrow as pa
import pytest

from logclust.client import Client
from logclust.cluster.config import StreamClusterConfig
from logclust.proto import logclust_pb2 as pb
from logclust.proto import logclust_pb2_grpc as pb_grpc
from logclust.server import ServerConfig, SidecarServer, create_server
from logclust.sidecar.config import StreamLabelerConfig
from logclust.wire import ipc
from tests.fakes import FakeLabeler

CLUSTERS = StreamClusterConfig(reservoir_size=1000, background_consolidation=False)
LABELER = StreamLabelerConfig(clusters=CLUSTERS)
EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED


class BrokenLabeler(FakeLabeler):
    """An internal bug that raises ValueError: not the caller's fault."""

    def embed_masked(self, masked: pa.Array) -> np.ndarray:
        raise ValueError("shapes do not match (a bug of ours)")


def _server(labeler: FakeLabeler, **kwargs: object) -> tuple[SidecarServer, int]:
    cfg = ServerConfig(listen="127.0.0.1:0", labeler=LABELER, **kwargs)  # type: ignore[arg-type]
    return create_server(cfg, labeler=labeler)


def _errors(srv: SidecarServer, kind: str) -> float:
    value = srv.metrics.registry.get_sample_value("logclust_errors_total", {"kind": kind})
    return value or 0.0


def _batch(n: int = 10, body: str = "currency_code=EUR") -> bytes:
    return ipc.encode_ipc(pa.table({"body": [body] * n, "latency_ms": [1.0] * n}))


def _counted(client: Client) -> int:
    return sum(client.latency().column("count").to_pylist())


def test_idle_stream_is_ended_with_deadline_exceeded(caplog: pytest.LogCaptureFixture) -> None:
    srv, port = _server(FakeLabeler(), stream_idle_timeout_s=2.0)
    held: queue.Queue[pb.LabelRequest | None] = queue.Queue()

    def requests() -> Iterator[pb.LabelRequest]:
        yield pb.LabelRequest(batch_id="0", arrow_ipc=_batch())
        held.get()  # then nothing, until the test ends

    caplog.set_level(logging.INFO, logger="logclust")
    with srv, grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        t0 = time.monotonic()  # before the call: the server's idle clock starts after it
        stream = pb_grpc.LogClustStub(channel).Label(requests(), timeout=120)
        assert next(stream).num_rows == 10
        with pytest.raises(grpc.RpcError) as info:
            next(stream)
        held.put(None)
        assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert "stream_idle_timeout_s" in info.value.details()  # the server's, not ours
        assert time.monotonic() - t0 > 1.9
        assert _errors(srv, "idle_timeout") == 1
    assert any("idle for" in r.getMessage() for r in caplog.records)


class HeldBatches:
    """Holds every batch the server's label pool takes until `gate` is set, counting them:
    a test keeps batches in flight for as long as it needs, and `wait_entered(n)` says
    when `n` are (instead of a sleep guessing it). Wraps `srv.sidecar.label_ipc`, which
    the pool calls for each admitted batch."""

    def __init__(self, srv: SidecarServer) -> None:
        self.gate = threading.Event()
        self.entered = 0
        self._entered = threading.Condition()
        inner = srv.sidecar.label_ipc

        def label_ipc(*args: Any, **kwargs: Any) -> tuple[bytes, int]:
            with self._entered:
                self.entered += 1
                self._entered.notify_all()
            assert self.gate.wait(120), "the test never opened the gate"
            return inner(*args, **kwargs)

        srv.sidecar.label_ipc = label_ipc  # type: ignore[method-assign]

    def wait_entered(self, batches: int) -> bool:
        with self._entered:
            return self._entered.wait_for(lambda: self.entered >= batches, 120)


def _label_once(port: int, body: str, rows: int = 1) -> grpc.StatusCode | None:
    """Labels one batch on a stream of its own: None when answered, else the status."""
    request = pb.LabelRequest(batch_id="0", arrow_ipc=_batch(rows, body))
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        try:
            list(pb_grpc.LogClustStub(channel).Label(iter([request]), timeout=120))
        except grpc.RpcError as e:
            return e.code()
    return None


def _in_background(fn: Callable[[], grpc.StatusCode | None]) -> Callable[[], object]:
    """Runs `fn` on a thread; the returned call joins it and gives `fn`'s result."""
    out: list[object] = []
    thread = threading.Thread(target=lambda: out.append(fn()))
    thread.start()

    def result() -> object:
        thread.join(120)
        assert out, "still running"
        return out[0]

    return result


def test_overload_is_refused_at_once_not_queued() -> None:
    srv, port = _server(FakeLabeler(), max_workers=2, label_threads=2, max_inflight_batches=2)
    held = HeldBatches(srv)  # batches stay in flight until the gate opens
    with srv:
        busy = [_in_background(lambda: _label_once(port, "user_id=7 action=login")) for _ in "ab"]
        assert held.wait_entered(2)
        # Refused while the two wait at the gate: a queued batch would wait there too.
        refused = [_label_once(port, "user_id=7 action=login") for _ in range(4)]
        held.gate.set()
        assert [b() for b in busy] == [None, None]
        assert refused == [EXHAUSTED] * 4
        assert _errors(srv, "resource_exhausted") == 4
        assert held.entered == 2
        with Client(f"127.0.0.1:{port}") as c:
            assert c.health() == "SERVING"


def test_request_bytes_in_flight_are_bounded_but_a_request_alone_is_taken() -> None:
    big = bytes(_batch(400, body="user_id=7 action=login"))
    srv, port = _server(FakeLabeler(), max_inflight_bytes=len(big) // 2)
    held = HeldBatches(srv)
    details: list[str] = []

    def send(batch_id: int) -> grpc.StatusCode | None:
        request = pb.LabelRequest(batch_id=str(batch_id), arrow_ipc=big)
        try:
            list(stub.Label(iter([request]), timeout=120))
        except grpc.RpcError as e:
            details.append(e.details() or "")
            return e.code()
        return None

    with srv, grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pb_grpc.LogClustStub(channel)
        first = _in_background(lambda: send(1))
        assert held.wait_entered(1)  # the first is in flight, alone, over the bound
        second = send(2)
        held.gate.set()
        assert first() is None
    assert second == EXHAUSTED
    assert "max_inflight_bytes" in details[0]


def test_internal_error_is_internal_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    srv, port = _server(BrokenLabeler())
    with srv, Client(f"127.0.0.1:{port}") as client:
        with pytest.raises(grpc.RpcError) as info:  # a body: placed by its embedding
            client.label(pa.table({"body": ['{"kind": "hello"}']}))
        assert info.value.code() == grpc.StatusCode.INTERNAL
        assert "a bug of ours" not in info.value.details()
        assert _errors(srv, "internal") == 1
    assert any(r.exc_info and "a bug of ours" in str(r.exc_info[1]) for r in caplog.records)


def test_answer_over_the_message_limit_is_refused_before_any_work() -> None:
    limit = 256 * 1024
    srv, port = _server(FakeLabeler(), max_message_bytes=limit)
    rows = 12_000  # request ~130 KB, answer ~130 KB + 12,000 * 8 bytes of labels
    payload = _batch(rows, "x")
    assert len(payload) < limit < len(payload) + 16 * rows
    with srv, Client(f"127.0.0.1:{port}") as client:
        with pytest.raises(grpc.RpcError) as info:
            list(client.label_stream([ipc.decode_trusted_ipc(payload)]))
        assert info.value.code() == EXHAUSTED
        assert "message limit" in info.value.details()
        assert _counted(client) == 0 and client.clusters().num_rows == 0
        assert client.label(pa.table({"body": ["x"] * 100}), batch_size=100).num_rows == 100


def _zstd(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    options = pa.ipc.IpcWriteOptions(compression="zstd")
    with pa.ipc.new_stream(sink, table.schema, options=options) as writer:
        writer.write(table)
    return bytes(sink.getvalue().to_pybytes())


def test_decompression_bomb_is_refused_before_decompressing() -> None:
    cap = 8 * 1024 * 1024
    bomb = _zstd(pa.table({"body": ["a" * (4 * 1024 * 1024)] * 4}))  # 16 MiB of 'a'
    assert len(bomb) < 64 * 1024
    srv, port = _server(FakeLabeler(), max_decompressed_bytes=cap)
    with srv, Client(f"127.0.0.1:{port}") as client:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.LogClustStub(channel)
            with pytest.raises(grpc.RpcError) as info:
                list(stub.Label(iter([pb.LabelRequest(batch_id="0", arrow_ipc=bomb)]), timeout=30))
            assert info.value.code() == EXHAUSTED
            assert "max_decompressed_bytes" in info.value.details()
            small = _zstd(pa.table({"body": ["a" * 1000] * 4}))
            out = list(stub.Label(iter([pb.LabelRequest(batch_id="1", arrow_ipc=small)])))
            assert out[0].num_rows == 4
        assert _counted(client) == 0
