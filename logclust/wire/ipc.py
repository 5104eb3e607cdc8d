"""Arrow IPC stream bytes: the payload of every gRPC message of the sidecar.

Untrusted IPC bytes are decoded defensively: any Arrow error becomes a `ContractError`,
and each decoded batch is checked with `validate(full=True)` (offsets, UTF-8) before any
compute kernel touches it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa

from logclust.wire.contract import (
    ContractError,
    LimitExceededError,
    validate_schema,
    validate_values,
)
from logclust.wire.ipc_budget import decoded_size


def decode_ipc(
    data: bytes, max_rows: int | None = None, max_decoded_bytes: int | None = None
) -> pa.Table:
    """Decodes untrusted Arrow IPC stream bytes and validates them fully.

    Args:
        data: Arrow IPC *stream* format bytes (one or more record batches).
        max_rows: rows allowed over all batches; None means no limit.
        max_decoded_bytes: bytes the batches may decode to (compressed buffers count
            what they claim to decompress to, checked before decompressing); None: no cap.

    Returns:
        The batches as one table.

    Raises:
        ContractError: the bytes are not a valid IPC stream or break the contract.
        LimitExceededError: more rows than `max_rows`, or decoded size over
            `max_decoded_bytes`.
    """
    if not data:
        raise ContractError("Empty payload: expected Arrow IPC stream bytes. Received: 0 bytes")
    try:
        if max_decoded_bytes is not None:
            size = decoded_size(data, max_decoded_bytes)
            if size > max_decoded_bytes:
                raise LimitExceededError(
                    f"Payload decompresses to more than {max_decoded_bytes} bytes "
                    f"(max_decompressed_bytes). Received: {len(data)} bytes claiming "
                    f"at least {size}"
                )
        # Zero-copy: the decoded arrays point into the request's bytes.
        source = pa.BufferReader(pa.py_buffer(data))
        reader = pa.ipc.open_stream(source)
        validate_schema(reader.schema)
        batches = []
        rows = 0
        for batch in reader:
            # Offsets and UTF-8 are checked before any kernel reads the buffers.
            batch.validate(full=True)
            rows += batch.num_rows
            if max_rows is not None and rows > max_rows:
                raise LimitExceededError(
                    f"Batch has too many rows (limit {max_rows}). Received: more than {rows}"
                )
            batches.append(batch)
        table = pa.Table.from_batches(batches, schema=reader.schema)
        if source.tell() != len(data):
            # A second stream (or garbage) after the end-of-stream marker: refused rather
            # than half the rows answered.
            raise ContractError(
                "Payload holds bytes after the end of the Arrow IPC stream (one stream "
                f"per message). Received: {len(data) - source.tell()} trailing bytes"
            )
    except ContractError:
        raise
    except (pa.ArrowException, OSError, ValueError) as e:
        raise ContractError(
            f"Payload is not a valid Arrow IPC stream. Received: {len(data)} bytes ({e})"
        ) from e
    validate_values(table, max_rows)
    return table


def encode_ipc(table: pa.Table | pa.RecordBatch) -> bytes:
    """Encodes a table or batch as Arrow IPC stream bytes."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write(table)
    return bytes(sink.getvalue().to_pybytes())


def decode_trusted_ipc(data: bytes) -> pa.Table:
    """Decodes IPC bytes from a peer we trust (the sidecar's own responses)."""
    return pa.ipc.open_stream(pa.py_buffer(data)).read_all()


def iter_slices(table: pa.Table, batch_size: int) -> Iterator[pa.Table]:
    """Consecutive zero-copy slices of at most `batch_size` rows."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive. Received: batch_size={batch_size}")
    for start in range(0, table.num_rows, batch_size):
        yield table.slice(start, batch_size)
