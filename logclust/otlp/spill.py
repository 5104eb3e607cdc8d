"""The forwarding queue on disk (`<store>/otlp-forward.spill`): while the next hop is
down, and across a restart.

**While the next hop is down** (from its first failed Export until one goes through),
every queued request is in the file: the queue rewrites the file with what it holds when
the outage starts (`SpillJournal.rewrite`), then appends each request it queues before
the receiver acks it (`append`). Requests are delivered in queue order, so what was
delivered is always a prefix of the file: the header holds the offset of the first
request not yet delivered, moved forward after each delivery (`delivered`), and the file
is deleted once its last request is delivered. A kill -9 during the outage thus loses
nothing acked: the next start queues the file's requests again first (`load`), and
forwards them once the next hop is back. Once the hop is back, new requests are not
written (the queue drains in moments); a SIGTERM writes what is left (`write_spill`).

**Size.** Only queued requests are written, and the file is rewritten (compacted) at the
start of each outage, so it holds at most the queue's content: bounded by the queue's
caps (`queue_records`, `queue_bytes` of requests received; a labelled request is somewhat
larger), plus what a previous run left.

**Durability (fsync policy).** Appends are written to the file at once, so a killed
process loses none; they are fsynced at most `FSYNC_EVERY_S` apart (a power cut may lose
that much), the rewrite and the stop's spill are fsynced before they replace the file.

The file is pickle-free: a magic and the header offset, then per request its record
count, reserved bytes and serialized `ExportLogsServiceRequest`, each length-prefixed.
"""

from __future__ import annotations

import logging
import os
import struct
import time
from collections.abc import Iterable
from pathlib import Path

logger = logging.getLogger(__name__)

SPILL_NAME = "otlp-forward.spill"
# Seconds at most between fsyncs of appended requests.
FSYNC_EVERY_S = 1.0
_MAGIC_V1 = b"LCQ1"  # no header offset: requests from byte 4
_MAGIC = b"LCQ2"
_HEAD = struct.Struct("<Q")  # offset of the first request not delivered
_START = len(_MAGIC) + _HEAD.size
_ITEM = struct.Struct("<QQQ")  # records, reserved bytes, request length

# (serialized request, records, reserved bytes)
Spilled = tuple[bytes, int, int]


def _pack(item: Spilled) -> bytes:
    request, n, nbytes = item
    return _ITEM.pack(n, nbytes, len(request)) + request


def write_spill(path: Path, items: Iterable[Spilled]) -> int:
    """Writes `items` to `path` (atomically, owner-only, fsynced); returns the records
    written."""
    _, _, records = _write(path, items)
    return records


def _write(path: Path, items: Iterable[Spilled]) -> tuple[int, list[int], int]:
    """`write_spill`: the descriptor of the new file (open to write), the end offset of
    each request, and the records."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_CREAT | os.O_TRUNC | os.O_RDWR, 0o600)
    try:
        chunks, ends, at, records = [_MAGIC + _HEAD.pack(_START)], [], _START, 0
        for item in items:
            chunks.append(_pack(item))
            at += len(chunks[-1])
            ends.append(at)
            records += item[1]
        os.write(fd, b"".join(chunks))
        os.fsync(fd)
        os.replace(tmp, path)
    except BaseException:
        os.close(fd)
        raise
    return fd, ends, records


def _parse(path: Path, data: bytes) -> tuple[list[tuple[Spilled, int]], int] | None:
    """The undelivered requests of a spill file with their end offsets, and where the
    whole ones end; None when `data` is not a spill file."""
    if data.startswith(_MAGIC) and len(data) >= _START:
        (at,) = _HEAD.unpack_from(data, len(_MAGIC))
        at = max(_START, min(at, len(data)))
    elif data.startswith(_MAGIC_V1):
        at = len(_MAGIC_V1)
    else:
        return None
    items: list[tuple[Spilled, int]] = []
    while at + _ITEM.size <= len(data):
        n, nbytes, size = _ITEM.unpack_from(data, at)
        if at + _ITEM.size + size > len(data):
            break
        start = at + _ITEM.size
        at = start + size
        items.append(((data[start:at], n, nbytes), at))
    if at != len(data):
        logger.warning("%s was cut short: %d whole requests loaded", path, len(items))
    return items, at


def read_spill(path: Path) -> list[Spilled]:
    """The requests spilled to `path` (deleted once read); [] when there is none. A file
    cut short keeps its whole requests (logged); one of another format is left in place."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    parsed = _parse(path, data)
    if parsed is None:
        logger.error("%s is not a forwarding-queue spill file: left in place, not loaded", path)
        return []
    path.unlink()
    return [item for item, _ in parsed[0]]


class SpillJournal:
    """The spill file of one queue, kept while it holds undelivered requests (see the
    module docstring). Not thread-safe: the queue calls it under its lock.

    Args:
        path: the file (`<store>/otlp-forward.spill`).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self._size = 0
        self._synced = 0.0
        self._foreign = False  # a file of another format is there: never written

    @property
    def open(self) -> bool:
        """Whether the file holds undelivered requests (appends go there)."""
        return self._fd is not None

    def load(self) -> list[tuple[Spilled, int]]:
        """The undelivered requests of the file left by the last run, with their end
        offsets; the file stays (and is appended to) until they are delivered."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return []
        parsed = _parse(self.path, data)
        if parsed is None:
            logger.error(
                "%s is not a forwarding-queue spill file: left in place, not loaded, "
                "and the queue is kept in memory only",
                self.path,
            )
            self._foreign = True
            return []
        items, end = parsed
        if not items:
            self.path.unlink()
            return []
        if data.startswith(_MAGIC_V1) or end != len(data):  # rewritten in today's form
            kept = [item for item, _ in items]
            return list(zip(kept, self.rewrite(kept), strict=True))
        self._fd = os.open(self.path, os.O_RDWR)
        self._size = end
        return items

    def rewrite(self, items: list[Spilled]) -> list[int]:
        """Replaces the file with `items` (fsynced); the end offset of each."""
        if self._foreign:
            return [0] * len(items)
        self.close()
        self._fd, ends, _ = _write(self.path, items)
        self._size = ends[-1] if ends else _START
        self._synced = time.monotonic()
        return ends

    def append(self, item: Spilled) -> int:
        """Appends one request (written at once, fsynced at most `FSYNC_EVERY_S` apart);
        its end offset."""
        assert self._fd is not None
        self._size += os.pwrite(self._fd, _pack(item), self._size)
        if time.monotonic() - self._synced >= FSYNC_EVERY_S:
            os.fsync(self._fd)
            self._synced = time.monotonic()
        return self._size

    def delivered(self, end: int) -> None:
        """The requests up to offset `end` are delivered: the file starts after them,
        and is deleted once none is left."""
        if self._fd is None:
            return
        if end >= self._size:
            self.discard()
        else:
            os.pwrite(self._fd, _HEAD.pack(end), len(_MAGIC))

    def discard(self) -> None:
        """Deletes the file (everything in it was delivered or is written elsewhere)."""
        if self._fd is None:
            return
        self.close()
        self.path.unlink(missing_ok=True)

    def close(self) -> None:
        """Closes the file, fsynced, and leaves it in place."""
        if self._fd is not None:
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = None
