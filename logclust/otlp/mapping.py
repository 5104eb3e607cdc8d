"""OTLP log records to the Arrow contract and back: with `columns`, the one place that
reads OTLP fields.

| Arrow column | from the log record |
|---|---|
| `body` | the body (a string; a map, array, number or bool as canonical JSON), or the |
|        | attribute `body_attribute` when set and present                              |
| `source` | the resource attribute `source_attribute` (`service.name`); missing: `"default"` |
| `latency_ms` | the record attribute `latency_attribute` (int or double), scaled by its unit; |
|              | over `max_latency_ms`: bounded where all listeners' rows are (`LatencyBook`) |
| `time` | `time_unix_nano`, else `observed_time_unix_nano`, else receive time |

A record that cannot be mapped (no body, a bytes body, a non-numeric or negative
latency) is refused on its own; the others go on.

**Columns.** When the request's bytes are at hand, regular scopes are read as columns
first (`logclust.otlp.columns`); the record loop here reads the others.
"""

from __future__ import annotations

import base64
import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord

from logclust.otlp.columns import MAX_NS, column_views, read_scope
from logclust.otlp.config import OtlpConfig
from logclust.proto.otlp_columns_pb2 import RecordColumns
from logclust.wire import contract
from logclust.wire.contract import ContractError

CLUSTER_ID_ATTRIBUTE = "logclust.cluster_id"
CLUSTER_ATTRIBUTE = "logclust.cluster"
# The record's group: clusters that mean the same share one (docs/sidecar.md, Groups).
GROUP_ID_ATTRIBUTE = "logclust.group_id"
# Reasons quoted in `partial_success.error_message` (the count covers them all).
MAX_REASONS = 3


class RecordError(ContractError):
    """One log record cannot be mapped to the contract (refused alone)."""


def parse_request(data: bytes) -> ExportLogsServiceRequest:
    """Decodes a binary `ExportLogsServiceRequest`.

    Raises:
        ContractError: the bytes are not one.
    """
    try:
        return ExportLogsServiceRequest.FromString(data)
    except DecodeError as e:
        raise ContractError(
            f"Not an OTLP ExportLogsServiceRequest: {e}. Received: {len(data)} bytes"
        ) from e


def count_records(request: ExportLogsServiceRequest) -> int:
    return sum(len(sl.log_records) for rl in request.resource_logs for sl in rl.scope_logs)


def plain(value: AnyValue) -> Any:
    """An `AnyValue` as plain Python (bytes as base64 text), for JSON."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "kvlist_value":
        return {kv.key: plain(kv.value) for kv in value.kvlist_value.values}
    if kind == "array_value":
        return [plain(v) for v in value.array_value.values]
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value).decode("ascii")
    return getattr(value, kind)


def text_of(value: AnyValue, what: str) -> str:
    """The text to cluster from a body or attribute value.

    Raises:
        RecordError: empty or bytes value.
    """
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind is None or kind == "bytes_value":
        raise RecordError(f"{what} must be a string, map, array, number or bool. Received: {kind}")
    return json.dumps(plain(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _attribute(attributes: Any, key: str) -> AnyValue | None:
    for kv in attributes:
        if kv.key == key:
            return kv.value  # type: ignore[no-any-return]
    return None


@dataclass
class MappedRecords:
    """The accepted records of one request as a contract table, and what was refused.

    Attributes:
        table: `body`, `latency_ms`, `time`, `source`: one row per accepted record.
        records: the accepted records, in row order (annotated in place later).
        rejected: `(scope_logs, index)` of each refused record.
        reasons: the first distinct refusal reasons.
        accepted: the accepted records (rows of `table`).
    """

    table: pa.Table
    records: list[LogRecord]
    rejected: list[tuple[Any, int]] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    accepted: int = 0

    def error_message(self) -> str:
        if not self.rejected:
            return ""
        return f"{len(self.rejected)} log records refused: " + "; ".join(self.reasons)

    def drop_rejected(self) -> None:
        """Removes the refused records from their request (they are not forwarded)."""
        for scope, index in reversed(self.rejected):
            del scope.log_records[index]


@dataclass
class _Rows:
    """Contract columns as Python lists, filled scope by scope."""

    texts: list[str] = field(default_factory=list)
    sources: list[str | None] = field(default_factory=list)
    latencies: list[float | None] = field(default_factory=list)
    times: list[int | None] = field(default_factory=list)

    def table(self) -> pa.Table:
        return pa.table(
            {
                contract.BODY: pa.array(self.texts, pa.string()),
                contract.LATENCY_MS: pa.array(self.latencies, pa.float64()),
                contract.TIME: pa.array(self.times, pa.timestamp("ns", tz="UTC")),
                contract.SOURCE: pa.array(self.sources, pa.string()),
            }
        )


class RecordMapper:
    """Maps OTLP log records to contract rows, as `config` says."""

    def __init__(self, config: OtlpConfig) -> None:
        self.body_attribute = config.body_attribute
        self.source_attribute = config.source_attribute
        self.latency_name, self.latency_scale = config.latency_key()

    def map(
        self,
        request: ExportLogsServiceRequest,
        data: bytes | None = None,
        keep_records: bool = True,
    ) -> MappedRecords:
        """The contract table of `request`'s mappable records.

        Args:
            request: the parsed request.
            data: the bytes `request` was parsed from: scopes are read as columns where
                they allow it (see the module docstring); None: record by record.
            keep_records: fill `MappedRecords.records` (to annotate and forward them);
                False leaves it empty (`accepted` still counts them).
        """
        rows = _Rows()
        out = MappedRecords(pa.table({}), [])
        views = None
        if data is not None and self.body_attribute is None:
            views = column_views(request, data)
        for r, rl in enumerate(request.resource_logs):
            src = _attribute(rl.resource.attributes, self.source_attribute)
            source = None if src is None or not src.string_value else src.string_value
            scope_views = None if views is None else views[r].scope_logs
            if scope_views is not None and len(scope_views) != len(rl.scope_logs):
                scope_views = None
            for s, sl in enumerate(rl.scope_logs):
                n = len(sl.log_records)
                if scope_views is not None and self._columns(scope_views[s].log_records, n, rows):
                    if keep_records:
                        out.records.extend(sl.log_records)
                    out.accepted += n
                else:
                    self._records(sl, rows, out, keep_records)
            rows.sources.extend([source] * (len(rows.texts) - len(rows.sources)))
        out.table = rows.table()
        return out

    def _records(self, sl: Any, rows: _Rows, out: MappedRecords, keep_records: bool) -> None:
        """Appends the mappable records of scope `sl` to `rows`, one by one."""
        texts, latencies, times = rows.texts, rows.latencies, rows.times
        # The hot loop reads protobuf fields inline (a string body, one attribute scan):
        # a call per field would cost more than the read itself.
        # The latency attribute is read inline too: a double that is finite and > 0 needs
        # no call; anything else (an int, zero, a bad value) goes through `latency`.
        plain_body = self.body_attribute is None
        name, scale = self.latency_name, self.latency_scale
        for i, rec in enumerate(sl.log_records):
            body = rec.body
            try:
                if plain_body and body.WhichOneof("value") == "string_value":
                    text = body.string_value
                else:
                    text = self.text(rec)
                time_ns = rec.time_unix_nano or rec.observed_time_unix_nano or None
                if time_ns is not None and time_ns > MAX_NS:
                    raise RecordError(
                        f"time must be before 2262 (int64 nanoseconds). Received: {time_ns}"
                    )
                latency = None
                for kv in rec.attributes:
                    if kv.key == name:
                        ms = kv.value.double_value * scale
                        if ms > 0.0 and ms < math.inf:  # NaN fails both
                            latency = ms
                        else:  # an int, zero, or a value to refuse
                            latency = self.latency(rec)
                        break
            except RecordError as e:
                out.rejected.append((sl, i))
                if len(out.reasons) < MAX_REASONS and str(e) not in out.reasons:
                    out.reasons.append(str(e))
                continue
            texts.append(text)
            latencies.append(latency)
            times.append(time_ns)
            if keep_records:
                out.records.append(rec)
            out.accepted += 1

    def _columns(self, cols: RecordColumns, n: int, rows: _Rows) -> bool:
        """Appends a scope's `n` records to `rows` from their columns when they read as
        the record loop would (`columns.read_scope`); False (nothing appended) otherwise."""
        read = read_scope(cols, n, self.latency_name, self.latency_scale)
        if read is None:
            return False
        rows.texts.extend(read.texts)
        rows.latencies.extend(read.latencies)
        rows.times.extend(read.times)
        return True

    def text(self, rec: LogRecord) -> str:
        if self.body_attribute is not None:
            value = _attribute(rec.attributes, self.body_attribute)
            if value is not None:
                return text_of(value, f"attribute {self.body_attribute!r}")
        return text_of(rec.body, "body")

    def latency(self, rec: LogRecord) -> float | None:
        name = self.latency_name
        for kv in rec.attributes:
            if kv.key == name:
                value = kv.value
                break
        else:
            return None
        kind = value.WhichOneof("value")
        if kind == "double_value":
            raw: float = value.double_value
        elif kind == "int_value":
            raw = value.int_value
        else:
            raise RecordError(f"attribute {name!r} must be an int or double. Received: {kind}")
        ms = raw * self.latency_scale
        if not math.isfinite(ms) or ms < 0:
            raise RecordError(f"attribute {name!r} must be finite and >= 0. Received: {raw}")
        return float(ms)


def _drop_labels(rec: LogRecord) -> None:
    """Removes the attributes an earlier logclust hop added (they are replaced)."""
    attrs = rec.attributes
    for i in reversed(range(len(attrs))):
        if attrs[i].key in (CLUSTER_ID_ATTRIBUTE, CLUSTER_ATTRIBUTE, GROUP_ID_ATTRIBUTE):
            del attrs[i]


def annotate(
    records: list[LogRecord],
    ids: np.ndarray,
    templates: list[str | None],
    replace: bool = True,
    groups: np.ndarray | None = None,
) -> None:
    """Adds `logclust.cluster_id`, `logclust.group_id` and `logclust.cluster` to each
    record, in place.

    Args:
        records: the records, in the order of `ids`.
        ids: `(n,)` cluster id of each record.
        templates: the description of each record's cluster (None: unknown, not set).
        replace: drop such attributes first (False when the request is known to have
            none: the scan costs more than the rest).
        groups: `(n,)` group id of each record; None: each cluster its own group.
    """
    # Appending serialized attributes (one C call per record, the bytes made once per
    # cluster) is far cheaper than building KeyValue messages per record.
    encoded: dict[tuple[int, int, str | None], bytes] = {}
    gids = (ids if groups is None else groups).tolist()
    for rec, cid, gid, template in zip(records, ids.tolist(), gids, templates, strict=True):
        extra = encoded.get((cid, gid, template))
        if extra is None:
            attrs = [
                KeyValue(key=CLUSTER_ID_ATTRIBUTE, value=AnyValue(int_value=cid)),
                KeyValue(key=GROUP_ID_ATTRIBUTE, value=AnyValue(int_value=gid)),
            ]
            if template is not None:
                attrs.append(KeyValue(key=CLUSTER_ATTRIBUTE, value=AnyValue(string_value=template)))
            extra = LogRecord(attributes=attrs).SerializeToString()
            encoded[(cid, gid, template)] = extra
        if replace:
            _drop_labels(rec)
        rec.MergeFromString(extra)
