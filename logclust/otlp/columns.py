"""OTLP log records read as columns (`otlp_columns.proto`), for `mapping.RecordMapper`.

**Columns.** Reading a record's fields from Python costs a wrapper object per field and
an attribute scan a record, more than labelling it. When the request's bytes are at
hand, each scope is first read a second way, through `otlp_columns.proto`: there a
scope's records parse into one message whose repeated fields hold every record's body
string, times and attributes in order, converted to Python lists in C (no Python step a
record; `python -m bench.otlp`). A scope is taken from those lists only when their
counts show each record has exactly what the loop would read: one string body (and no
other kind), a time (else all an observed time, else none), and either no latency
attribute anywhere or the same attribute keys in the same order on every record with the
latency a finite double > 0. Any other scope (a map body, a missing body or time,
records with different attributes, an int latency) goes through the loop, as does every
scope when `body_attribute` is set. A request whose size re-encoded differs from its
bytes (a field given twice in one record) is read by the loop alone.

Two readings differ from the loop's, both for input no OTLP encoder writes: the same keys
on every record are taken as one record's attributes each (OTLP forbids a key twice in
one record), and a time written in packed form, which the loop ignores as an unknown
field, is read as the record's time (and checked like any other).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from logclust.proto.otlp_columns_pb2 import LogsColumns, RecordColumns

# A double-valued AnyValue on the wire: field 4, wire type 1, then 8 bytes.
_DOUBLE_TAG = 0x21
_DOUBLE_BYTES = 9
# The latest time the contract holds (int64 nanoseconds).
MAX_NS = (1 << 63) - 1


@dataclass
class ScopeRows:
    """One scope's records as contract values, in record order."""

    texts: Sequence[str]
    latencies: list[float | None]
    times: list[int | None]


def column_views(request: ExportLogsServiceRequest, data: bytes) -> Any:
    """The resources of `request`, parsed again from `data` as columns
    (`otlp_columns.proto`); None when `data` is not in canonical form (its size
    re-encoded differs: a field given twice in one record, which the columns would count
    twice) or does not parse that way: the record loop reads it then."""
    if request.ByteSize() != len(data):
        return None
    try:
        views = LogsColumns.FromString(data).resource_logs
    except DecodeError:
        return None
    return views if len(views) == len(request.resource_logs) else None


def read_scope(
    cols: RecordColumns, n: int, latency_name: str, latency_scale: float
) -> ScopeRows | None:
    """A scope's `n` records from their columns, when the columns show that the record
    loop would read the same (see the module docstring); None otherwise.

    Args:
        cols: the scope's records as columns.
        n: the scope's record count (from the parsed request).
        latency_name: the latency attribute's key.
        latency_scale: its factor to milliseconds.
    """
    if n == 0:
        return ScopeRows([], [], [])
    body = cols.body
    if len(body.string_value) != n:
        return None
    if (
        body.bool_value
        or body.int_value
        or body.double_value
        or body.array_value
        or body.kvlist_value
        or body.bytes_value
    ):
        return None
    times = _times(cols, n)
    if times is None:
        return None
    latencies = _latencies(cols, n, latency_name, latency_scale)
    if latencies is None:
        return None
    return ScopeRows(body.string_value, latencies, times)


def _times(cols: RecordColumns, n: int) -> list[int | None] | None:
    """Each record's time as the loop reads it (`time_unix_nano`, else the observed
    time, else None) when every record has the same kind; None otherwise."""
    for column in (cols.time_unix_nano, cols.observed_time_unix_nano):
        if len(column) == n:
            times = np.array(column, np.uint64)
            if not np.all((times > 0) & (times <= MAX_NS)):
                return None
            return times.tolist()  # type: ignore[no-any-return]
        if column:
            return None
    return [None] * n


def _latencies(cols: RecordColumns, n: int, name: str, scale: float) -> list[float | None] | None:
    """Each record's latency from the attribute columns; None when they do not tell
    which record an attribute belongs to, or a value needs the record loop."""
    keys = cols.attributes.key
    if name not in keys:
        return [None] * n
    values = cols.attributes.value
    m, extra = divmod(len(keys), n)
    if extra or len(values) != len(keys):
        return None
    first = list(keys[:m])
    if len(set(first)) != m or list(keys) != first * n:
        return None  # not the same keys on every record
    raw = values[first.index(name) :: m]
    if set(map(len, raw)) != {_DOUBLE_BYTES}:
        return None
    wire = np.frombuffer(b"".join(raw), np.uint8).reshape(n, _DOUBLE_BYTES)
    if not np.all(wire[:, 0] == _DOUBLE_TAG):
        return None
    ms = wire[:, 1:].copy().view("<f8").ravel() * scale
    if not np.all((ms > 0.0) & (ms < math.inf)):
        return None  # zero or a value to refuse: the loop says which
    return ms.tolist()  # type: ignore[no-any-return]
