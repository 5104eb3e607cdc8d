"""The decoded size of untrusted Arrow IPC bytes, read before anything is decompressed.

A record batch body may be LZ4- or ZSTD-compressed buffer by buffer; each compressed
buffer starts with its uncompressed length as a little-endian int64 (-1: stored as is).
A small payload can so claim gigabytes. `decoded_size` walks the messages with
`pa.ipc.MessageReader` (zero-copy slices of the request, nothing decompressed), reads each
batch's buffer list from its flatbuffer metadata, and adds up the lengths the buffers
claim. Checking `batch.nbytes` after decoding batch by batch would not bound memory: a
single batch can be the bomb.
"""

from __future__ import annotations

import struct

import pyarrow as pa

from logclust.wire.contract import ContractError

# Message.header_type values of the Arrow IPC schema (Message.fbs).
_RECORD_BATCH, _DICTIONARY_BATCH = 3, 2
_BUFFER_STRUCT = 16  # struct Buffer { offset: long; length: long; }


class _Table:
    """Read-only view of one flatbuffer table (bounds-checked: the bytes are untrusted)."""

    def __init__(self, buf: bytes, pos: int) -> None:
        self.buf, self.pos = buf, pos
        self.vtable = pos - struct.unpack_from("<i", buf, pos)[0]
        self.vtable_size = struct.unpack_from("<H", buf, self.vtable)[0]

    def _field(self, index: int) -> int:
        slot = 4 + 2 * index
        if slot + 2 > self.vtable_size:
            return 0
        return int(struct.unpack_from("<H", self.buf, self.vtable + slot)[0])

    def scalar(self, index: int, fmt: str, default: int = 0) -> int:
        off = self._field(index)
        return default if off == 0 else int(struct.unpack_from(fmt, self.buf, self.pos + off)[0])

    def table(self, index: int) -> _Table | None:
        off = self._field(index)
        if off == 0:
            return None
        at = self.pos + off
        return _Table(self.buf, at + struct.unpack_from("<I", self.buf, at)[0])

    def vector(self, index: int) -> tuple[int, int]:
        """(position of the first element, element count); (0, 0) when absent."""
        off = self._field(index)
        if off == 0:
            return 0, 0
        at = self.pos + off
        start = at + struct.unpack_from("<I", self.buf, at)[0]
        return start + 4, int(struct.unpack_from("<I", self.buf, start)[0])


def _batch_size(meta: bytes, body: pa.Buffer) -> int:
    """Bytes one batch message decodes to: its body, or what its compressed buffers claim."""
    message = _Table(meta, struct.unpack_from("<I", meta, 0)[0])
    kind = message.scalar(1, "<B")
    header = message.table(2)
    if header is not None and kind == _DICTIONARY_BATCH:
        header = header.table(1)  # DictionaryBatch.data: a RecordBatch
    if header is None or kind not in (_RECORD_BATCH, _DICTIONARY_BATCH):
        return body.size
    if header.table(3) is None:  # RecordBatch.compression: absent means uncompressed
        return body.size
    first, count = header.vector(2)  # RecordBatch.buffers
    if first + count * _BUFFER_STRUCT > len(meta):
        raise ContractError(f"Buffer list past the metadata. Received: {count} buffers")
    total = 0
    view = memoryview(body)
    for i in range(count):
        offset, length = struct.unpack_from("<qq", meta, first + i * _BUFFER_STRUCT)
        if length < 8:
            continue  # an empty buffer (no length prefix)
        if offset < 0 or offset + 8 > body.size:
            raise ContractError(f"Buffer outside the message body. Received: offset={offset}")
        claimed = struct.unpack_from("<q", view, offset)[0]
        total += length - 8 if claimed < 0 else claimed
    return total


def decoded_size(data: bytes, cap: int) -> int:
    """Bytes the batches of an IPC stream decode to, stopping once past `cap`.

    Raises:
        ContractError: the messages or their metadata are malformed.
    """
    total = 0
    try:
        reader = pa.ipc.MessageReader.open_stream(pa.BufferReader(pa.py_buffer(data)))
        while total <= cap:
            try:
                msg = reader.read_next_message()
            except StopIteration:
                break
            if msg.type in ("record batch", "dictionary"):
                total += _batch_size(msg.metadata.to_pybytes(), msg.body)
    except (struct.error, RecursionError) as e:
        raise ContractError(f"Malformed Arrow IPC message metadata. Received: ({e})") from e
    return total
