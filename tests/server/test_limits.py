"""Availability and admission on the asyncio server: idle streams, overload, internal
errors, answers over the message limit and decompression bombs (issue 11)."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterator

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
from tests.fakes import FakeLabeler, SlowLabeler

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
        stream = pb_grpc.LogClustStub(channel).Label(requests(), timeout=30)
        t0 = time.monotonic()
        assert next(stream).num_rows == 10
        with pytest.raises(grpc.RpcError) as info:
            next(stream)
        held.put(None)
        assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert 1.9 < time.monotonic() - t0 < 15
        assert "stream_idle_timeout_s" in info.value.details()
        assert _errors(srv, "idle_timeout") == 1
    assert any("idle for" in r.getMessage() for r in caplog.records)


def test_overload_is_refused_at_once_not_queued() -> None:
    srv, port = _server(SlowLabeler(0.4), max_workers=1, max_inflight_batches=2)
    addr = f"127.0.0.1:{port}"
    results: list[grpc.StatusCode | None] = []
    lock = threading.Lock()

    def send(i: int) -> None:
        t0 = time.monotonic()
        body = f"user_id={i} action=login"  # a miss each: the slow embedder runs
        try:
            with Client(addr) as c:
                c.label(pa.table({"body": [body]}))
            code = None
        except grpc.RpcError as e:
            code = e.code()
            assert time.monotonic() - t0 < 2.0, "refused late: it was queued"
        with lock:
            results.append(code)

    with srv:
        threads = [threading.Thread(target=send, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert results.count(None) >= 2
        assert results.count(EXHAUSTED) >= 1
        assert set(results) <= {None, EXHAUSTED}
        assert _errors(srv, "resource_exhausted") == results.count(EXHAUSTED)
        with Client(addr) as c:
            assert c.health() == "SERVING"


def test_request_bytes_in_flight_are_bounded_but_a_request_alone_is_taken() -> None:
    big = bytes(_batch(400, body="user_id=7 action=login"))  # a miss: the slow embedder runs
    srv, port = _server(SlowLabeler(0.8), max_inflight_bytes=len(big) // 2)
    results: list[grpc.StatusCode | None] = []
    details: list[str] = []
    lock = threading.Lock()

    def send(batch_id: int) -> None:
        try:
            list(
                stub.Label(
                    iter([pb.LabelRequest(batch_id=str(batch_id), arrow_ipc=big)]), timeout=30
                )
            )
            code = None
        except grpc.RpcError as e:
            code = e.code()
            details.append(e.details() or "")
        with lock:
            results.append(code)

    with srv, grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pb_grpc.LogClustStub(channel)
        threads = [threading.Thread(target=send, args=(i,)) for i in (1, 2)]
        for t in threads:
            t.start()
            time.sleep(0.2)
        for t in threads:
            t.join(30)
    # The first, alone, is taken although it is over the bound; the second is not.
    assert sorted(results, key=str) == sorted([None, EXHAUSTED], key=str)
    assert "max_inflight_bytes" in details[0]


def test_internal_error_is_internal_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    srv, port = _server(BrokenLabeler())
    with srv, Client(f"127.0.0.1:{port}") as client:
        with pytest.raises(grpc.RpcError) as info:
            client.label(pa.table({"body": ["hello"]}))
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
