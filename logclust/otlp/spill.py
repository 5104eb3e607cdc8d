"""The forwarding queue on disk across a restart (`<store>/otlp-forward.spill`).

When the sidecar stops with records still queued for the next hop (it was down for the
whole grace period), the queue writes them here instead of dropping them, and the next
start queues them again first: a restart during an outage loses nothing that was acked.
The file is pickle-free: a magic, then per request its record count, reserved bytes and
serialized `ExportLogsServiceRequest`, each length-prefixed. It is written to a temporary
name and renamed (never half-written), and deleted once read back.
"""

from __future__ import annotations

import logging
import os
import struct
from collections.abc import Iterable
from pathlib import Path

logger = logging.getLogger(__name__)

SPILL_NAME = "otlp-forward.spill"
_MAGIC = b"LCQ1"
_ITEM = struct.Struct("<QQQ")  # records, reserved bytes, request length

# (serialized request, records, reserved bytes)
Spilled = tuple[bytes, int, int]


def write_spill(path: Path, items: Iterable[Spilled]) -> int:
    """Writes `items` to `path` (atomically, owner-only); returns the records written."""
    tmp = path.with_name(path.name + ".tmp")
    records = 0
    fd = os.open(tmp, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(_MAGIC)
        for request, n, nbytes in items:
            f.write(_ITEM.pack(n, nbytes, len(request)))
            f.write(request)
            records += n
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return records


def read_spill(path: Path) -> list[Spilled]:
    """The requests spilled to `path` (deleted once read); [] when there is none. A file
    cut short keeps its whole requests (logged); one of another format is left in place."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    if not data.startswith(_MAGIC):
        logger.error("%s is not a forwarding-queue spill file: left in place, not loaded", path)
        return []
    items: list[Spilled] = []
    at = len(_MAGIC)
    while at + _ITEM.size <= len(data):
        n, nbytes, size = _ITEM.unpack_from(data, at)
        if at + _ITEM.size + size > len(data):
            break
        start = at + _ITEM.size
        items.append((data[start : start + size], n, nbytes))
        at = start + size
    if at != len(data):
        logger.warning("%s was cut short: %d whole requests loaded", path, len(items))
    path.unlink()
    return items
