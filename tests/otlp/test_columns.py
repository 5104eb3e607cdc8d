"""OTLP records read as columns (`otlp_columns.proto`) map exactly as the record loop
maps them, and the columns are really taken where a scope allows it."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import (
    AnyValue,
    ArrayValue,
    KeyValue,
    KeyValueList,
)
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from logclust.otlp.config import OtlpConfig
from logclust.otlp.mapping import MappedRecords, RecordMapper, parse_request

CONFIG = OtlpConfig(listen="127.0.0.1:0")
NOW = 1_796_000_000_000_000_000


def _kv(key: str, value: AnyValue) -> KeyValue:
    return KeyValue(key=key, value=value)


def _regular(n: int, start: int = 0, latency: bool = True) -> list[LogRecord]:
    """Records a scope's columns can give: string bodies, times, the same keys."""
    out = []
    for i in range(start, start + n):
        attrs = [_kv("user", AnyValue(string_value=f"u{i}"))]
        if latency:
            attrs.append(_kv("latency_ms", AnyValue(double_value=0.5 + i)))
        attrs.append(_kv("status", AnyValue(int_value=200)))
        out.append(
            LogRecord(
                time_unix_nano=NOW + i,
                body=AnyValue(string_value=f"GET /item/{i} ok é"),
                attributes=attrs,
            )
        )
    return out


def _odd(rng: np.random.Generator, i: int) -> LogRecord:
    """A record with one of the shapes the loop reads otherwise (or refuses)."""
    rec = _regular(1, i)[0]
    kind = int(rng.integers(0, 12))
    if kind == 0:
        rec.body.CopyFrom(
            AnyValue(kvlist_value=KeyValueList(values=[_kv("a", AnyValue(int_value=1))]))
        )
    elif kind == 1:
        rec.ClearField("body")  # refused: no body
    elif kind == 2:
        rec.body.CopyFrom(AnyValue(bytes_value=b"\x00\x01"))  # refused
    elif kind == 3:
        rec.ClearField("time_unix_nano")
        rec.observed_time_unix_nano = NOW - i
    elif kind == 4:
        rec.ClearField("time_unix_nano")
    elif kind == 5:
        rec.attributes[1].value.CopyFrom(AnyValue(int_value=7))
    elif kind == 6:
        rec.attributes[1].value.CopyFrom(AnyValue(double_value=0.0))
    elif kind == 7:
        rec.attributes[1].value.CopyFrom(AnyValue(double_value=-2.0))  # refused
    elif kind == 8:
        rec.attributes[1].value.CopyFrom(AnyValue(double_value=math.nan))  # refused
    elif kind == 9:
        del rec.attributes[1]  # no latency
    elif kind == 10:
        rec.attributes.append(_kv("extra", AnyValue(bool_value=True)))
    else:
        rec.body.CopyFrom(AnyValue(array_value=ArrayValue(values=[AnyValue(string_value="x")])))
    return rec


def _request(scopes: list[tuple[str | None, list[LogRecord]]]) -> ExportLogsServiceRequest:
    resource_logs = []
    for service, records in scopes:
        attrs = [] if service is None else [_kv("service.name", AnyValue(string_value=service))]
        resource_logs.append(
            ResourceLogs(
                resource=Resource(attributes=attrs),
                scope_logs=[ScopeLogs(log_records=records[: len(records) // 2]), ScopeLogs()]
                + [ScopeLogs(log_records=records[len(records) // 2 :])],
            )
        )
    return ExportLogsServiceRequest(resource_logs=resource_logs)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field on the wire."""
    out, n = bytearray([number << 3 | 2]), len(payload)
    while n > 0x7F:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out) + payload


def _both(mapper: RecordMapper, data: bytes) -> tuple[MappedRecords, MappedRecords]:
    by_columns = mapper.map(parse_request(data), data)
    by_records = mapper.map(parse_request(data))
    return by_columns, by_records


def _same(a: MappedRecords, b: MappedRecords) -> None:
    assert a.table.equals(b.table)
    assert a.accepted == b.accepted == a.table.num_rows
    assert [r.SerializeToString() for r in a.records] == [r.SerializeToString() for r in b.records]
    assert [i for _, i in a.rejected] == [i for _, i in b.rejected]
    assert a.error_message() == b.error_message()


def _spy(mapper: RecordMapper, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the scopes the record loop reads."""
    calls: list[int] = []
    loop = mapper._records

    def counted(sl, *args):  # type: ignore[no-untyped-def]
        calls.append(len(sl.log_records))
        return loop(sl, *args)

    monkeypatch.setattr(mapper, "_records", counted)
    return calls


def test_regular_scopes_are_read_as_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    mapper = RecordMapper(CONFIG)
    data = _request(
        [("cart", _regular(40)), (None, _regular(30, 100, latency=False))]
    ).SerializeToString()
    loop = _spy(mapper, monkeypatch)
    by_columns = mapper.map(parse_request(data), data)
    assert loop == []  # no scope went through the loop
    monkeypatch.undo()
    _same(by_columns, RecordMapper(CONFIG).map(parse_request(data)))
    t = by_columns.table.to_pydict()
    assert t["source"] == ["cart"] * 40 + [None] * 30
    assert t["latency_ms"] == [0.5 + i for i in range(40)] + [None] * 30
    assert t["body"][3] == "GET /item/3 ok é"
    # Without the bytes, or with the body taken from an attribute: the loop alone.
    loop = _spy(mapper, monkeypatch)
    mapper.map(parse_request(data))
    assert len(loop) == 6  # two resources of three scopes (one empty)
    body_attr = RecordMapper(replace(CONFIG, body_attribute="user"))
    loop = _spy(body_attr, monkeypatch)
    body_attr.map(parse_request(data), data)
    assert len(loop) == 6  # two resources of three scopes (one empty)


@pytest.mark.parametrize("seed", range(12))
def test_columns_map_as_the_record_loop_does(seed: int) -> None:
    rng = np.random.default_rng(seed)
    scopes = []
    for s in range(int(rng.integers(1, 4))):
        records = _regular(int(rng.integers(0, 30)), 1000 * s)
        for _ in range(int(rng.integers(0, 3))):
            records.insert(int(rng.integers(0, len(records) + 1)), _odd(rng, len(records)))
        scopes.append((None if s == 2 else f"svc{s}", records))
    data = _request(scopes).SerializeToString()
    for config in (CONFIG, replace(CONFIG, latency_attribute="latency_ms:s")):
        _same(*_both(RecordMapper(config), data))


def test_a_field_twice_in_a_record_goes_through_the_loop() -> None:
    # Record 0 carries its body twice and record 1 none: the columns would count two
    # bodies for two records. The request's size re-encoded differs, so the loop reads it
    # and refuses record 1 (no body), as it would without the columns.
    first, second = _regular(2)
    second.ClearField("body")
    again = LogRecord(body=AnyValue(string_value="again")).SerializeToString()
    scope = _field(2, first.SerializeToString() + again) + _field(2, second.SerializeToString())
    data = _field(1, _field(2, scope))  # resource_logs { scope_logs { log_records... } }
    by_columns, by_records = _both(RecordMapper(CONFIG), data)
    _same(by_columns, by_records)
    assert by_columns.table.column("body").to_pylist() == ["again"]
    assert [i for _, i in by_columns.rejected] == [1]


def test_times_out_of_range_and_latencies_that_need_a_check() -> None:
    records = _regular(4)
    records[2].time_unix_nano = (1 << 64) - 1  # past int64: refused alone
    by_columns, by_records = _both(
        RecordMapper(CONFIG), _request([("a", records)]).SerializeToString()
    )
    _same(by_columns, by_records)
    assert [i for _, i in by_columns.rejected] == [0]  # first of its scope (the 2nd half)
    assert "time must be before 2262" in by_columns.error_message()
    records = _regular(4)
    records[1].attributes[1].value.double_value = math.inf
    _same(*_both(RecordMapper(CONFIG), _request([("a", records)]).SerializeToString()))


def test_mutated_requests_map_the_same_both_ways() -> None:
    """Bit flips, truncations and spliced bytes of a regular request: whatever still
    parses maps to the same rows, refusals and errors by columns as by the loop."""
    rng = np.random.default_rng(7)
    base = _request([("a", _regular(6)), (None, _regular(5, 50, latency=False))])
    data = base.SerializeToString()
    mapper = RecordMapper(CONFIG)
    parsed = 0
    for _ in range(3000):
        buf = bytearray(data)
        for _ in range(int(rng.integers(1, 4))):
            at = int(rng.integers(0, len(buf)))
            if rng.random() < 0.7:
                buf[at] ^= 1 << int(rng.integers(0, 8))
            else:
                buf[at:at] = buf[int(rng.integers(0, len(buf))) :][: int(rng.integers(1, 12))]
        if rng.random() < 0.2:
            del buf[int(rng.integers(0, len(buf))) :]
        mutated = bytes(buf)
        try:
            request = parse_request(mutated)
        except ValueError:
            continue
        parsed += 1
        outcomes = []
        for given in (mutated, None):
            try:
                outcomes.append(mapper.map(request, given))
            except Exception as e:  # noqa: BLE001 - compared below
                outcomes.append(e)
        if isinstance(outcomes[0], MappedRecords) and isinstance(outcomes[1], MappedRecords):
            _same(outcomes[0], outcomes[1])
        else:
            assert type(outcomes[0]) is type(outcomes[1]), outcomes
    assert parsed > 300
