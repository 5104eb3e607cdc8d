"""Mutated Arrow IPC payloads through a real server: every answer is OK with the right
rows, or a clean INVALID_ARGUMENT / RESOURCE_EXHAUSTED; never INTERNAL or UNKNOWN, and
the server stays healthy. `LOGCLUST_FUZZ_N` payloads (default 5,000)."""

from __future__ import annotations

import datetime
import math
import os
import random
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import grpc
import pyarrow as pa

from logclust.client import Client
from logclust.proto import logclust_pb2 as pb
from logclust.proto import logclust_pb2_grpc as pb_grpc
from logclust.server import SidecarServer
from logclust.wire import ipc

FUZZ_N = int(os.environ.get("LOGCLUST_FUZZ_N", "5000"))
CLEAN = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED}


def _encode(table: pa.Table, compression: str | None = None) -> bytes:
    sink = pa.BufferOutputStream()
    options = pa.ipc.IpcWriteOptions(compression=compression)
    with pa.ipc.new_stream(sink, table.schema, options=options) as writer:
        writer.write(table)
    return bytes(sink.getvalue().to_pybytes())


def seeds() -> list[bytes]:
    """Valid payloads and schema variants (some break the contract on purpose)."""
    n = 12
    body = [f"user_id={i} action=login currency_code=EUR" for i in range(n)]
    now = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
    tables = [
        pa.table({"body": body}),
        pa.table({"body": body, "latency_ms": list(range(n))}),
        pa.table({"body": pa.array(body, pa.large_string()), "latency_ms": [1.5] * n}),
        pa.table({"body": body, "time": pa.array([now] * n, pa.timestamp("ms")), "x": [1] * n}),
        pa.table({"body": body, "source": ["a", None] * (n // 2), "latency_ms": [2.0] * n}),
        pa.table({"body": pa.array(body).dictionary_encode()}),
        pa.table({"body": [1] * n}),
        pa.table({"body": body, "cluster_id": [1] * n}),
        pa.table({"text": body}),
        pa.table({"body": body, "latency_ms": ["1"] * n}),
    ]
    out = [_encode(t) for t in tables]
    out += [_encode(tables[1], "zstd"), _encode(tables[4], "lz4")]
    return out


def mutate(rng: random.Random, seed: bytes, seeds: list[bytes]) -> bytes:
    data = bytearray(seed)
    kind = rng.randrange(7)
    if kind == 0:  # bit flips
        for _ in range(rng.randint(1, 8)):
            i = rng.randrange(len(data))
            data[i] ^= 1 << rng.randrange(8)
    elif kind == 1:  # truncation
        del data[rng.randrange(len(data)) :]
    elif kind == 2:  # random bytes
        return rng.randbytes(rng.randint(0, 512))
    elif kind == 3:  # overwrite a run with random bytes
        i = rng.randrange(len(data))
        data[i : i + 8] = rng.randbytes(8)
    elif kind == 4:  # an int field set to a large value (lengths, offsets)
        i = rng.randrange(max(len(data) - 8, 1))
        data[i : i + 8] = rng.choice([2**31 - 1, 2**32, 2**62, 2**63 - 1]).to_bytes(8, "little")
    elif kind == 5:  # two streams, or trailing garbage
        data += rng.choice(seeds) if rng.random() < 0.5 else rng.randbytes(rng.randint(1, 16))
    else:  # insert or delete a few bytes
        i = rng.randrange(len(data))
        if rng.random() < 0.5:
            del data[i : i + rng.randint(1, 8)]
        else:
            data[i:i] = rng.randbytes(rng.randint(1, 8))
    return bytes(data)


def _expected_rows(payload: bytes) -> pa.Table | None:
    """What a correct OK answer holds, decoded here independently; None if undecodable."""
    try:
        return pa.ipc.open_stream(pa.py_buffer(payload)).read_all()
    except (pa.ArrowException, OSError, ValueError):
        return None


def _rows(table: pa.Table) -> list[tuple[object, ...]]:
    """Rows with NaN made comparable (NaN != NaN), temporal values as their integers (a
    passed-through timestamp may lie outside what Python's datetime holds)."""
    for i, col in enumerate(table.columns):
        if pa.types.is_temporal(col.type):
            ints = pa.int64() if col.type.bit_width == 64 else pa.int32()
            table = table.set_column(i, table.field(i).with_type(ints), col.cast(ints))
    return [
        tuple("NaN" if isinstance(v, float) and math.isnan(v) else v for v in row.values())
        for row in table.to_pylist()
    ]


def check(stub: pb_grpc.LogClustStub, payload: bytes) -> str:
    request = pb.LabelRequest(batch_id="f", arrow_ipc=payload)
    try:
        (response,) = list(stub.Label(iter([request]), timeout=30))
    except grpc.RpcError as e:
        assert e.code() in CLEAN, (e.code(), e.details(), payload[:64].hex())
        return str(e.code().name)
    out = ipc.decode_trusted_ipc(response.arrow_ipc)
    sent = _expected_rows(payload)
    assert sent is not None, f"OK for bytes that do not decode: {payload[:64].hex()}"
    assert out.num_rows == sent.num_rows == response.num_rows
    assert _rows(out.select(sent.column_names)) == _rows(sent), "OK with different rows"
    return "OK"


def test_fuzzed_payloads_get_clean_answers(sidecar: tuple[SidecarServer, int]) -> None:
    srv, port = sidecar
    rng = random.Random(11)
    pool = seeds()
    payloads = [mutate(rng, rng.choice(pool), pool) for _ in range(FUZZ_N)]
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pb_grpc.LogClustStub(channel)
        one: Callable[[bytes], str] = lambda p: check(stub, p)  # noqa: E731
        with ThreadPoolExecutor(4) as workers:
            outcomes = Counter(workers.map(one, payloads))
    print(f"{FUZZ_N} fuzzed payloads: {dict(outcomes)}")
    assert sum(outcomes.values()) == FUZZ_N
    assert outcomes["OK"] > 0 and outcomes["INVALID_ARGUMENT"] > 0
    internal = srv.metrics.registry.get_sample_value("logclust_errors_total", {"kind": "internal"})
    assert not internal
    with Client(f"127.0.0.1:{port}") as client:
        assert client.health() == "SERVING"
        assert client.label(pa.table({"body": ["still here"]})).num_rows == 1
