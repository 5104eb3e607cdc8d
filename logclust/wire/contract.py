"""The Arrow contract of the sidecar: column names, checks, and the columns it reads.

A batch sent for labelling must have:

* `body` (string or large_string, no nulls): the text that is masked, embedded and clustered.

and may have, with these meanings:

* `latency_ms` (any integer or floating type): request latency; nulls and NaN mean "not
  measured", negative or infinite values are rejected; a value above the sidecar's
  `max_latency_ms` (default one day, `MAX_LATENCY_MS`) is refused for its row alone (the
  row is labelled, its latency not recorded; counted in `logclust_latency_over_max_rows`).
* `time` (any timestamp type): event time; nulls (or a missing column) mean receive time.
* `source` (string): stream the row belongs to; clusters are fitted per source; nulls (or a
  missing column) mean `"default"`.

Every other column passes through untouched. `cluster_id`, `cluster_distance` and
`group_id` are added by the sidecar, so an input that already has them is rejected; so
are `keep` and `sample_weight` when a storage budget is set (docs/sampling.md).

Bytes on the wire are Arrow IPC streams (`logclust.wire.ipc`). The sidecar, the server,
the client and the CLI all speak this one contract, and nothing else of each other.
"""

from __future__ import annotations

import logging

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

logger = logging.getLogger(__name__)

BODY = "body"
LATENCY_MS = "latency_ms"
TIME = "time"
SOURCE = "source"
CLUSTER_ID = "cluster_id"
CLUSTER_DISTANCE = "cluster_distance"
# The meaning level (docs/sidecar.md, "Groups"): clusters that mean the same share a group.
GROUP_ID = "group_id"
DEFAULT_SOURCE = "default"
# Added with a storage budget (docs/sampling.md): whether a row is kept, and the rows a
# kept row stands for (0 for dropped rows).
KEEP = "keep"
SAMPLE_WEIGHT = "sample_weight"
SAMPLE_FIELDS: tuple[pa.Field, ...] = (
    pa.field(KEEP, pa.bool_()),
    pa.field(SAMPLE_WEIGHT, pa.float64()),
)
# Latest event time accepted (9999-12-31T23:59:59Z, Unix seconds).
MAX_TIME_S = 253_402_300_799
# Largest latency recorded by default, ms (one day): a larger value is taken as "not
# measured" for its row (counted), so no single row can stretch a cluster's sketch.
MAX_LATENCY_MS = 86_400_000.0
# Quantiles a latency query reports when the caller names none.
DEFAULT_QUANTILES: tuple[float, ...] = (0.5, 0.9, 0.99)
OUTPUT_FIELDS: tuple[pa.Field, ...] = (
    pa.field(CLUSTER_ID, pa.int32()),
    pa.field(CLUSTER_DISTANCE, pa.float32()),
    pa.field(GROUP_ID, pa.int64()),
)


class ContractError(ValueError):
    """A batch breaks the input contract (maps to INVALID_ARGUMENT)."""


class LimitExceededError(ContractError):
    """The input exceeds a configured limit: rows, sources (maps to RESOURCE_EXHAUSTED)."""


def _is_string(t: pa.DataType) -> bool:
    return bool(pa.types.is_string(t) or pa.types.is_large_string(t))


def validate_schema(schema: pa.Schema) -> None:
    """Checks column names and types of the input contract.

    Raises:
        ContractError: on a missing or mistyped column, a duplicate contract column, or an
            output column already present.
    """
    names = schema.names
    for name in (BODY, LATENCY_MS, TIME, SOURCE, CLUSTER_ID, CLUSTER_DISTANCE):
        if names.count(name) > 1:
            raise ContractError(f"Column {name!r} appears more than once. Received: {names}")
    if BODY not in names:
        raise ContractError(f"Missing required string column 'body'. Received: columns={names}")
    body_type = schema.field(BODY).type
    if not _is_string(body_type):
        raise ContractError(f"Column 'body' must be string. Received: type={body_type}")
    if LATENCY_MS in names:
        t = schema.field(LATENCY_MS).type
        if not (pa.types.is_integer(t) or pa.types.is_floating(t)):
            raise ContractError(f"Column 'latency_ms' must be numeric. Received: type={t}")
    if TIME in names:
        t = schema.field(TIME).type
        if not pa.types.is_timestamp(t):
            raise ContractError(f"Column 'time' must be a timestamp. Received: type={t}")
    if SOURCE in names:
        t = schema.field(SOURCE).type
        if not _is_string(t):
            raise ContractError(f"Column 'source' must be string. Received: type={t}")
    taken = [n for n in (CLUSTER_ID, CLUSTER_DISTANCE, GROUP_ID) if n in names]
    if taken:
        raise ContractError(
            f"Output columns are added by the sidecar; drop them first. Received: {taken}"
        )


def validate_batch(batch: pa.RecordBatch | pa.Table, max_rows: int | None = None) -> None:
    """Checks one batch against the input contract, values included.

    Args:
        batch: a decoded record batch or table.
        max_rows: rows allowed per batch; None means no limit.

    Raises:
        ContractError: the batch breaks the contract.
        LimitExceededError: the batch has more than `max_rows` rows.
    """
    validate_schema(batch.schema)
    validate_values(batch, max_rows)


def validate_values(batch: pa.RecordBatch | pa.Table, max_rows: int | None) -> None:
    """`validate_batch` after the schema check (`decode_ipc` has done that already)."""
    if batch.num_rows == 0:
        raise ContractError("Empty batch: at least one row is required. Received: 0 rows")
    if max_rows is not None and batch.num_rows > max_rows:
        raise LimitExceededError(
            f"Batch has too many rows (limit {max_rows}). Received: {batch.num_rows} rows"
        )
    nulls = batch.column(BODY).null_count
    if nulls:
        raise ContractError(f"Column 'body' must not contain nulls. Received: {nulls} nulls")
    if TIME in batch.schema.names:
        _check_times(batch.column(TIME))
    if LATENCY_MS in batch.schema.names:
        # safe=False: an integer past 2**53 rounds (as any latency in float64) instead of
        # raising an Arrow error that would surface as INTERNAL (found by the fuzzer).
        lat = batch.column(LATENCY_MS).cast(pa.float64(), safe=False)
        bad = pc.sum(pc.or_(pc.less(lat, 0.0), pc.is_inf(lat))).as_py() or 0
        if bad:
            raise ContractError(
                f"Column 'latency_ms' must be finite and >= 0. Received: {bad} bad values"
            )


def _check_times(col: pa.Array | pa.ChunkedArray) -> None:
    """Refuses event times outside [1970-01-01, 9999-12-31]: later ones overflow the
    calendar (and `timestamp("s")` of 2**62 would wrap around in milliseconds)."""
    ints = col.cast(pa.int64())
    per_s = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}[col.type.unit]
    lo, hi = pc.min_max(ints).values()
    if lo.as_py() is None:
        return
    if lo.as_py() < 0 or hi.as_py() > MAX_TIME_S * per_s:
        raise ContractError(
            "Column 'time' must lie between 1970-01-01 and 9999-12-31. "
            f"Received: {col.type.unit} values from {lo.as_py()} to {hi.as_py()}"
        )


def column_array(table: pa.Table, name: str) -> pa.Array:
    """One column as a single array; zero-copy when it has one chunk (one IPC batch)."""
    col = table.column(name)
    return col.chunk(0) if col.num_chunks == 1 else col.combine_chunks()


def source_column(table: pa.Table) -> pa.Array:
    """The `source` column with nulls (or a missing column) filled with the default."""
    if SOURCE not in table.schema.names:  # already dictionary-encoded: one value
        return pa.DictionaryArray.from_arrays(
            pa.array(np.zeros(table.num_rows, np.int32)), pa.array([DEFAULT_SOURCE], pa.string())
        )
    col = column_array(table, SOURCE).cast(pa.string())
    return pc.fill_null(col, DEFAULT_SOURCE)


def time_ms_column(table: pa.Table, receive_ms: int) -> np.ndarray:
    """Event time in Unix milliseconds (int64), receive time where missing."""
    if TIME not in table.schema.names:
        return np.full(table.num_rows, receive_ms, dtype=np.int64)
    col = column_array(table, TIME)
    unit = col.type.unit
    ints = col.cast(pa.int64())
    divisor = {"s": None, "ms": 1, "us": 1_000, "ns": 1_000_000}[unit]
    ms = pc.multiply(ints, 1000) if divisor is None else pc.divide(ints, divisor)
    return np.asarray(pc.fill_null(ms, receive_ms).to_numpy(zero_copy_only=False), np.int64)


def latency_column(table: pa.Table) -> np.ndarray:
    """Latency in ms as float64; NaN where not measured (null, NaN or missing column)."""
    if LATENCY_MS not in table.schema.names:
        return np.full(table.num_rows, np.nan)
    col = column_array(table, LATENCY_MS).cast(pa.float64(), safe=False)
    return np.asarray(col.to_numpy(zero_copy_only=False), np.float64)


def check_sample_columns(schema: pa.Schema) -> None:
    """With a storage budget the sidecar adds `keep` and `sample_weight`.

    Raises:
        ContractError: the input has either already.
    """
    # each name looked up in the schema's index (no list of its names built: every batch)
    taken = [name for name in (KEEP, SAMPLE_WEIGHT) if schema.get_all_field_indices(name)]
    if taken:
        raise ContractError(
            f"Columns added by the sidecar's sampling; drop or rename them first. Received: {taken}"
        )


def with_sample(table: pa.Table, keep: np.ndarray, weight: np.ndarray) -> pa.Table:
    """`table` with `keep` (`(n,)` bool) and `sample_weight` (`(n,)` float64) appended,
    each column one `pa.array` of its numpy array (the flags packed to Arrow's bits, the
    weights without a copy): after a labelling, when little of pyarrow's code is warm,
    fewer calls cost less than building each column from its buffers."""
    table = table.append_column(SAMPLE_FIELDS[0], pa.array(keep, pa.bool_()))
    return table.append_column(SAMPLE_FIELDS[1], pa.array(weight, pa.float64()))


def over_max_latency(latency_ms: np.ndarray, max_ms: float) -> np.ndarray:
    """The rows whose latency exceeds `max_ms` (the one check every listener's rows go
    through, in `LatencyBook.record`); NaN (not measured) is never over."""
    with np.errstate(invalid="ignore"):
        return np.asarray(latency_ms > max_ms)


def with_labels(
    table: pa.Table,
    ids: np.ndarray,
    distances: np.ndarray,
    groups: np.ndarray | None = None,
    wide: bool = False,
) -> pa.Table:
    """The caller's table with `cluster_id`, `cluster_distance` and `group_id` appended
    (`groups` None: each cluster its own group). `cluster_id` is int32, or int64 when
    `wide` (a sidecar under a fleet catalog: local kinds' ids are 63-bit)."""
    kind = pa.int64() if wide else pa.int32()
    table = table.append_column(pa.field(CLUSTER_ID, kind), pa.array(ids, kind))
    table = table.append_column(OUTPUT_FIELDS[1], pa.array(distances, pa.float32()))
    group = ids if groups is None else groups
    return table.append_column(OUTPUT_FIELDS[2], pa.array(group, pa.int64()))
