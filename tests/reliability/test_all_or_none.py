"""A call does all its work or none (issue 27): an answer that cannot be sent, or a
caller gone before its batch's turn, leaves nothing recorded, so a retry counts once."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import grpc
import numpy as np
import pyarrow as pa
import pytest

from logclust.client import Client
from logclust.proto import logclust_pb2 as pb
from logclust.proto import logclust_pb2_grpc as pb_grpc
from logclust.server import SidecarServer
from logclust.server.fair import FairExecutor
from logclust.sidecar.config import StreamLabelerConfig
from logclust.turns import CallerGoneError
from logclust.wire import ipc
from tests.reliability.conftest import hold_after_placement, sizes, start
from tests.reliability.test_bounds import _label, _zstd


def recorded(srv: SidecarServer) -> int:
    return int(sum(srv.sidecar.latency().column("count").to_pylist()))


def drained(pool: FairExecutor, timeout_s: float = 30.0) -> None:
    """Waits until the label pool has nothing queued or running."""
    with pool._cond:
        ok = pool._cond.wait_for(lambda: not pool._queues and not pool._running, timeout_s)
    assert ok, "the label pool did not drain"


def test_unsendable_answer_is_refused_before_recording(
    sidecar: tuple[SidecarServer, int],
) -> None:
    srv, port = sidecar  # max_message_bytes = 4 MiB
    big = pa.table({"body": ["GET /x " + "a" * 600_000] * 8, "latency_ms": [5.0] * 8})
    payload = _zstd(big)  # ~1 KB that answers ~4.8 MB
    assert len(payload) < 4096
    for _ in range(3):  # the client's retries
        error = _label(port, payload)
        assert error is not None and error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "message limit" in (error.details() or "")
    assert recorded(srv) == 0
    small = _zstd(big.slice(0, 4))  # fits: recorded once
    assert _label(port, small) is None
    assert recorded(srv) == 4


@pytest.fixture
def one_slot() -> Iterator[tuple[SidecarServer, int]]:
    srv, port = start(label_threads=1)
    with srv:
        yield srv, port


def test_batch_past_its_deadline_is_not_recorded(one_slot: tuple[SidecarServer, int]) -> None:
    srv, port = one_slot
    pool = srv._executors.label
    gate = threading.Event()
    pool.submit("blocker", 1.0, gate.wait)  # the one slot is taken: the batch waits
    payload = ipc.encode_ipc(pa.table({"body": ["currency_code=EUR"] * 5, "latency_ms": [3.0] * 5}))
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pb_grpc.LogClustStub(channel)
        request = pb.LabelRequest(batch_id="0", arrow_ipc=payload)
        with pytest.raises(grpc.RpcError) as e:
            list(stub.Label(iter([request]), timeout=0.5))
        assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        gate.set()
        drained(pool)
        assert recorded(srv) == 0  # the client's retry is the one that counts
        assert len(list(stub.Label(iter([request]), timeout=30))) == 1
    assert recorded(srv) == 5


def test_a_batch_whose_caller_left_during_its_placement_counts_once_with_its_retry(
    one_slot: tuple[SidecarServer, int],
) -> None:
    srv, port = one_slot
    gate, held = hold_after_placement(srv)
    payload = ipc.encode_ipc(pa.table({"body": ["currency_code=EUR"] * 5, "latency_ms": [3.0] * 5}))
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pb_grpc.LogClustStub(channel)
        request = pb.LabelRequest(batch_id="0", arrow_ipc=payload)
        with pytest.raises(grpc.RpcError) as e:
            list(stub.Label(iter([request]), timeout=3.0))  # time to reach the placement
        assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert held.is_set()  # it was placed when its caller left
        gate.set()
        drained(srv._executors.label)
        assert recorded(srv) == 0 and sizes(srv) == 0
        assert srv.sidecar.abandoned_batches == 1
        assert len(list(stub.Label(iter([request]), timeout=30))) == 1  # the retry
    assert recorded(srv) == 5 and sizes(srv) == 5  # once


def test_cancelled_stream_records_only_what_was_answered(
    one_slot: tuple[SidecarServer, int],
) -> None:
    srv, port = one_slot
    pool = srv._executors.label
    payload = ipc.encode_ipc(pa.table({"body": ["currency_code=EUR"] * 3, "latency_ms": [3.0] * 3}))
    gate, second = threading.Event(), threading.Event()

    def requests() -> Iterator[pb.LabelRequest]:
        yield pb.LabelRequest(batch_id="0", arrow_ipc=payload)
        second.wait(30)
        yield pb.LabelRequest(batch_id="1", arrow_ipc=payload)
        gate.wait(30)  # the stream stays open until cancelled

    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = pb_grpc.LogClustStub(channel).Label(requests(), timeout=60)
        assert next(call).num_rows == 3
        pool.submit("blocker", 1.0, gate.wait)
        second.set()
        with pool._cond:  # the second batch waits behind the blocker
            assert pool._cond.wait_for(lambda: len(pool._queues) >= 1, 30)
        call.cancel()
        gate.set()
        drained(pool)
    assert recorded(srv) == 3


def test_a_gone_caller_is_checked_before_anything_is_recorded(
    sidecar: tuple[SidecarServer, int],
) -> None:
    """The check the label pool makes when a batch's turn comes (the worker may have
    taken it before the cancellation reached the queue)."""
    srv, _ = sidecar
    payload = ipc.encode_ipc(pa.table({"body": ["login user=1"] * 4, "latency_ms": [1.0] * 4}))
    with pytest.raises(CallerGoneError, match="nothing recorded"):
        srv.sidecar.label_ipc(payload, still_wanted=lambda: False)
    assert recorded(srv) == 0 and srv.sidecar.describe() == []
    registry = srv.metrics.registry
    assert registry.get_sample_value("logclust_abandoned_batches_total") == 1


def test_one_absurd_latency_cannot_move_the_percentiles(
    sidecar: tuple[SidecarServer, int],
) -> None:
    srv, port = sidecar
    rng = np.random.default_rng(0)
    normal = rng.uniform(1.0, 100.0, 1000)
    absurd = [1e30, 1e308, float(2**63 - 1)]
    latency = pa.array(np.concatenate([normal, absurd]))
    table = pa.table({"body": ["currency_code=EUR"] * len(latency), "latency_ms": latency})
    with Client(f"127.0.0.1:{port}") as client:
        out = client.label(table)
        assert out.column("cluster_id").null_count == 0  # every row labelled, absurd ones too
        lat = client.latency(quantiles=[0.5, 0.9, 0.99])
    assert lat.column("count").to_pylist() == [1000]
    for q in (0.5, 0.9, 0.99):
        got = lat.column(f"p{int(q * 100)}")[0].as_py()
        assert got == pytest.approx(np.quantile(normal, q), rel=0.011)
    assert lat.column("max")[0].as_py() < 100.0
    registry = srv.metrics.registry
    assert registry.get_sample_value("logclust_latency_over_max_rows_total") == 3
    ints = ipc.encode_ipc(pa.table({"body": ["x"], "latency_ms": pa.array([2**63 - 1])}))
    assert _label(port, ints) is None
    assert registry.get_sample_value("logclust_latency_over_max_rows_total") == 4


def test_the_latency_bound_is_a_setting() -> None:
    with pytest.raises(ValueError, match="max_latency_ms"):
        StreamLabelerConfig(max_latency_ms=float("inf"))
    with pytest.raises(ValueError, match="sketch buckets"):
        StreamLabelerConfig(max_latency_ms=1e300)
