"""Frees what gRPC's own reference cycles hold, once enough request bytes went through.

grpc.aio's server keeps each call's handler lookup in a closure that refers to itself (a
reference cycle of a few objects per call). The cycle keeps the call's native buffers,
the received message among them, alive until Python's cyclic collector runs, and that
runs by object counts, not by bytes: 15 MiB OTLP exports sent one after the other raised
a server's RSS by about 15 MB each until a full collection (seen: 126 -> 510 MB over 17
exports, back to 333 MB after one), and 40 at once peaked at 860-890 MB against a 400 MiB
budget. `CycleSweeper` runs a full collection once the requests finished since the last
one add up to `every_bytes`, so what such cycles hold stays under that amount, at the
cost of one collection (milliseconds to tens of them) per `every_bytes` of requests.
"""

from __future__ import annotations

import gc
import threading

# Requests' bytes between two collections: small next to the memory budget, large next
# to a collection's cost.
SWEEP_EVERY_BYTES = 8 << 20


class CycleSweeper:
    """Counts finished requests' bytes; collects cycles every `every_bytes` of them."""

    def __init__(self, every_bytes: int = SWEEP_EVERY_BYTES) -> None:
        if every_bytes <= 0:
            raise ValueError(f"every_bytes must be positive. Received: {every_bytes}")
        self.every_bytes = every_bytes
        self.sweeps = 0
        self._pending = 0
        self._lock = threading.Lock()

    def done(self, nbytes: int) -> bool:
        """A request of `nbytes` finished; returns whether this call collected."""
        with self._lock:
            self._pending += max(int(nbytes), 0)
            if self._pending < self.every_bytes:
                return False
            self._pending = 0
            self.sweeps += 1
        gc.collect()
        return True
