"""Bounded resources under hostile input: a decompression bomb (real and with a forged
length prefix) and rows dated in future windows."""

from __future__ import annotations

import struct
import time

import grpc
import pyarrow as pa
import pytest

from logclust.client import Client
from logclust.proto import logclust_pb2 as pb
from logclust.proto import logclust_pb2_grpc as pb_grpc
from logclust.server import SidecarServer
from logclust.wire import ipc


def _zstd(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    options = pa.ipc.IpcWriteOptions(compression="zstd")
    with pa.ipc.new_stream(sink, table.schema, options=options) as writer:
        writer.write(table)
    return bytes(sink.getvalue().to_pybytes())


def _forge(payload: bytes, claim: int) -> bytes:
    """Sets the uncompressed-length prefix of the last compressed buffer to `claim`."""
    data = bytearray(payload)
    marker = struct.pack("<q", 4 * 1000)  # the body buffer: 4 rows of 1,000 bytes
    at = data.rfind(marker)
    assert at > 0
    data[at : at + 8] = struct.pack("<q", claim)
    return bytes(data)


def _label(port: int, payload: bytes) -> grpc.RpcError | None:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pb_grpc.LogClustStub(channel)
        try:
            list(stub.Label(iter([pb.LabelRequest(batch_id="0", arrow_ipc=payload)]), timeout=30))
        except grpc.RpcError as e:
            return e
    return None


def test_decompression_bombs_are_refused(sidecar: tuple[SidecarServer, int]) -> None:
    srv, port = sidecar  # max_decompressed_bytes = 32 MiB
    real = _zstd(pa.table({"body": ["a" * (16 << 20)] * 4}))  # 64 MiB in ~6 KB
    forged = _forge(_zstd(pa.table({"body": ["b" * 1000] * 4})), 1 << 40)  # claims 1 TiB
    assert len(real) < 64 * 1024
    for bomb in (real, forged):
        error = _label(port, bomb)
        assert error is not None and error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "max_decompressed_bytes" in (error.details() or "")
    with Client(f"127.0.0.1:{port}") as client:
        assert client.clusters().num_rows == 0 and client.health() == "SERVING"


def test_future_windows_are_counted_not_kept(sidecar: tuple[SidecarServer, int]) -> None:
    srv, port = sidecar
    now_s = int(time.time())
    n = 2000  # one row per future 10 s window, a day ahead and beyond
    times = pa.array([(now_s + 86_400 + 10 * i) * 1000 for i in range(n)], pa.timestamp("ms"))
    table = pa.table({"body": ["currency_code=EUR"] * n, "latency_ms": [5.0] * n, "time": times})
    with Client(f"127.0.0.1:{port}") as client:
        assert client.label(table, batch_size=500).num_rows == n
        assert client.latency().num_rows == 0
    book = srv.sidecar.labeler.book
    assert book.early_rows == n
    registry = srv.metrics.registry
    assert registry.get_sample_value("logclust_early_rows_total") == pytest.approx(n)


def test_huge_integer_latency_is_not_an_internal_error(
    sidecar: tuple[SidecarServer, int],
) -> None:
    _, port = sidecar
    payload = ipc.encode_ipc(pa.table({"body": ["x"], "latency_ms": pa.array([2**62])}))
    assert _label(port, payload) is None
