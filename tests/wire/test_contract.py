"""The Arrow input contract: schema checks, IPC decoding of untrusted bytes, file readers."""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from logclust.cli import io as cli_io
from logclust.wire import contract, ipc
from logclust.wire.contract import ContractError, LimitExceededError
from logclust.wire.ipc_budget import decoded_size


def _table(**cols: object) -> pa.Table:
    return pa.table({"body": ["a 1", "b 2"], **cols})  # type: ignore[arg-type]


def non_utf8_ipc() -> bytes:
    offsets = pa.py_buffer(np.array([0, 2], np.int32).tobytes())
    bad = pa.Array.from_buffers(pa.string(), 1, [None, offsets, pa.py_buffer(b"\xff\xfe")])
    return ipc.encode_ipc(pa.table({"body": bad}))


def test_valid_batch_passes_with_all_contract_columns() -> None:
    t = pa.table(
        {
            "body": ["x"],
            "latency_ms": pa.array([1], pa.int16()),
            "time": pa.array([0], pa.timestamp("us")),
            "source": ["s"],
            "extra": [[1, 2]],
        }
    )
    contract.validate_batch(t)


@pytest.mark.parametrize(
    ("table", "match"),
    [
        (pa.table({"text": ["x"]}), "Missing required string column 'body'"),
        (pa.table({"body": [1]}), "'body' must be string"),
        (pa.table({"body": ["x", None]}), "must not contain nulls"),
        (pa.table({"body": ["x"], "latency_ms": ["1"]}), "'latency_ms' must be numeric"),
        (pa.table({"body": ["x"], "latency_ms": [-1.0]}), "finite and >= 0"),
        (pa.table({"body": ["x"], "latency_ms": [float("inf")]}), "finite and >= 0"),
        (pa.table({"body": ["x"], "time": [1]}), "'time' must be a timestamp"),
        (pa.table({"body": ["x"], "source": [1]}), "'source' must be string"),
        (pa.table({"body": ["x"], "cluster_id": [1]}), "Output columns"),
        (pa.table({"body": pa.array([], pa.string())}), "Empty batch"),
    ],
)
def test_contract_violations_name_the_problem(table: pa.Table, match: str) -> None:
    with pytest.raises(ContractError, match=match):
        contract.validate_batch(table)


def test_max_rows_is_a_limit_error() -> None:
    with pytest.raises(LimitExceededError, match="too many rows"):
        contract.validate_batch(_table(), max_rows=1)


def test_decode_round_trip_of_several_batches() -> None:
    t = pa.concat_tables([_table(), _table()])
    data = ipc.encode_ipc(t)
    out = ipc.decode_ipc(data)
    assert out.to_pydict() == t.to_pydict()


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"", "Empty payload"),
        (b"definitely not arrow", "not a valid Arrow IPC stream"),
        (ipc.encode_ipc(_table())[:-40], "not a valid Arrow IPC stream"),
        (non_utf8_ipc(), "not a valid Arrow IPC stream.*UTF8|not a valid Arrow IPC stream"),
    ],
)
def test_decode_rejects_bad_bytes(data: bytes, match: str) -> None:
    with pytest.raises(ContractError, match=match):
        ipc.decode_ipc(data)


def test_non_utf8_message_mentions_utf8() -> None:
    with pytest.raises(ContractError) as info:
        ipc.decode_ipc(non_utf8_ipc())
    assert "utf" in str(info.value).lower()


def test_defaults_for_source_time_and_latency() -> None:
    t = pa.table(
        {
            "body": ["a", "b"],
            "source": ["s", None],
            "time": pa.array([1_500, None], pa.timestamp("s")),
        }
    )
    assert contract.source_column(t).to_pylist() == ["s", "default"]
    assert contract.time_ms_column(t, receive_ms=7).tolist() == [1_500_000, 7]
    assert np.isnan(contract.latency_column(t)).all()
    t2 = pa.table({"body": ["a"], "time": pa.array([2_000_000], pa.timestamp("ns"))})
    assert contract.time_ms_column(t2, 0).tolist() == [2]


def test_with_labels_appends_typed_columns() -> None:
    out = contract.with_labels(_table(), np.array([3, -1]), np.array([0.1, 0.5]))
    assert out.column_names == ["body", "cluster_id", "cluster_distance", "group_id"]
    assert out.schema.field("cluster_id").type == pa.int32()
    assert out.schema.field("cluster_distance").type == pa.float32()
    assert out.schema.field("group_id").type == pa.int64()
    assert out.column("group_id").to_pylist() == [3, -1]  # no groups given: its own
    grouped = contract.with_labels(_table(), np.array([3, 4]), np.zeros(2), np.array([3, 3]))
    assert grouped.column("group_id").to_pylist() == [3, 3]


def test_readers(tmp_path) -> None:  # type: ignore[no-untyped-def]
    text = tmp_path / "in.log"
    text.write_text("first 1\n\nsecond 2\n")
    assert cli_io.read_table(text).column("body").to_pylist() == ["first 1", "second 2"]
    t = pa.table({"body": ["1", "b"], "n": [1, 2]})
    csv_path = tmp_path / "in.csv"
    csv_path.write_text("body,n\n1,1\nb,2\n")
    # `body` stays a string even when it looks numeric.
    assert cli_io.read_table(csv_path).to_pydict() == t.to_pydict()
    pq.write_table(t, tmp_path / "in.parquet")
    assert cli_io.read_table(tmp_path / "in.parquet").equals(t)
    with pa.OSFile(str(tmp_path / "in.arrow"), "wb") as f, pa.ipc.new_file(f, t.schema) as w:
        w.write_table(t)
    assert cli_io.read_table(tmp_path / "in.arrow").equals(t)
    pq.write_table(pa.table({"x": [1]}), tmp_path / "nobody.parquet")
    with pytest.raises(ContractError, match="body"):
        cli_io.read_table(tmp_path / "nobody.parquet")


def test_iter_slices() -> None:
    t = pa.table({"body": [str(i) for i in range(5)]})
    assert [s.num_rows for s in ipc.iter_slices(t, 2)] == [2, 2, 1]
    with pytest.raises(ValueError, match="Received: batch_size=0"):
        list(ipc.iter_slices(t, 0))


def test_absurd_times_are_refused_not_wrapped() -> None:
    year_20000 = pa.array([570_000_000_000_000], pa.int64()).cast(pa.timestamp("ms"))
    wraps = pa.array([2**62], pa.int64()).cast(pa.timestamp("s"))
    before_1970 = pa.array([-5], pa.int64()).cast(pa.timestamp("s"))
    for col in (year_20000, wraps, before_1970):
        with pytest.raises(ContractError, match="between 1970-01-01 and 9999-12-31"):
            contract.validate_batch(pa.table({"body": ["a"], "time": col}))
    ok = pa.array([1_700_000_000_000, None], pa.timestamp("ms"))
    contract.validate_batch(pa.table({"body": ["a", "b"], "time": ok}))


def test_a_second_stream_in_one_message_is_refused() -> None:
    one = ipc.encode_ipc(pa.table({"body": ["a", "b"]}))
    assert ipc.decode_ipc(one).num_rows == 2
    with pytest.raises(ContractError, match="trailing bytes"):
        ipc.decode_ipc(one + ipc.encode_ipc(pa.table({"body": ["c"]})))
    with pytest.raises(ContractError, match="trailing bytes"):
        ipc.decode_ipc(one + b"\x00garbage")


def test_decoded_size_reads_compressed_lengths_without_decompressing() -> None:
    table = pa.table({"body": ["a" * 100_000] * 20})
    for compression in (None, "zstd", "lz4"):
        sink = pa.BufferOutputStream()
        options = pa.ipc.IpcWriteOptions(compression=compression)
        with pa.ipc.new_stream(sink, table.schema, options=options) as writer:
            writer.write(table)
        data = sink.getvalue().to_pybytes()
        assert table.nbytes <= decoded_size(data, 1 << 40) <= table.nbytes + 64
        with pytest.raises(LimitExceededError, match="max_decompressed_bytes"):
            ipc.decode_ipc(data, max_decoded_bytes=table.nbytes // 2)
        assert ipc.decode_ipc(data, max_decoded_bytes=table.nbytes * 2).equals(table)


@pytest.mark.parametrize("n", [0, 1, 7, 8, 9, 1000])
def test_with_sample_builds_the_columns_pa_array_would(n: int) -> None:
    rng = np.random.default_rng(n)
    table = pa.table({"body": pa.array([f"line {i}" for i in range(n)], pa.string())})
    keep = rng.random(n) < 0.3
    weight = np.where(keep, 1.0 / 0.3, 0.0)
    got = contract.with_sample(table, keep, weight)
    assert got.column_names == ["body", contract.KEEP, contract.SAMPLE_WEIGHT]
    assert got.column(contract.KEEP).equals(pa.chunked_array([pa.array(keep, pa.bool_())]))
    assert got.column(contract.SAMPLE_WEIGHT).to_numpy().tobytes() == weight.tobytes()
    got.validate(full=True)


def test_check_sample_columns_refuses_the_sample_columns() -> None:
    contract.check_sample_columns(pa.schema([("body", pa.string())]))  # none: fine
    for names in (["body", "keep"], ["sample_weight"], ["keep", "body", "keep"]):
        schema = pa.schema([(name, pa.string()) for name in names])
        taken = sorted(set(names) & {contract.KEEP, contract.SAMPLE_WEIGHT})
        with pytest.raises(contract.ContractError, match=re.escape(f"Received: {taken}")):
            contract.check_sample_columns(schema)
