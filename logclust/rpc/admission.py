"""One admission budget for every listener: requests in flight, by count and bytes.

`Label` batches, OTLP/gRPC exports and OTLP/HTTP bodies draw on the same `Admission`
(`ServerConfig.max_inflight_batches`, `max_inflight_bytes`), so that what waits to be
labelled stays within the memory budget whichever door it came in by. A request takes a
`Ticket` for its bytes before they are read where the protocol allows it (an HTTP
`Content-Length`; an OTLP/gRPC call before its message is taken in, at
`max_request_bytes`, see `logclust.otlp.receiver`), grows it while it inflates (gzip),
and gives it back when answered.

A request that does not fit is refused at once with `RetryLaterError`: RESOURCE_EXHAUSTED
with a `RetryInfo` over gRPC, 429 with `Retry-After` over HTTP (`logclust.rpc.errors`).
A request alone in flight is always taken (up to its listener's size cap), so a budget
smaller than one request cannot lock a sender out. Waiters (`wait`) are served first come,
first served, each from its own event loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from dataclasses import dataclass, field

from logclust.rpc.errors import RetryLaterError


@dataclass
class Ticket:
    """Bytes and one request slot held in an `Admission` until `release()`."""

    admission: Admission
    nbytes: int
    released: bool = field(default=False)

    def grow(self, more: int, what: str = "inflated body") -> None:
        """Holds `more` bytes too (a body inflating).

        Raises:
            RetryLaterError: the budget has no room for them (nothing more is held).
        """
        self.admission._grow(self, more, what)

    def resize(self, nbytes: int) -> None:
        """Holds exactly `nbytes` (a reservation replaced by the size now known); never
        refused: shrinking frees, growing past the budget only delays later requests."""
        self.admission._resize(self, nbytes)

    def release(self) -> None:
        """Gives the bytes and the slot back (once; later calls do nothing)."""
        self.admission._release(self)

    def __enter__(self) -> Ticket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class Admission:
    """Requests in flight over every listener, at most `max_requests` and `max_bytes`.

    Args:
        max_requests: requests in flight at once.
        max_bytes: bytes they hold (as received, and as inflated).
        retry_after_s: the delay suggested to refused senders.
    """

    def __init__(self, max_requests: int, max_bytes: int, retry_after_s: float = 1.0) -> None:
        if max_requests < 1 or max_bytes < 1 or not retry_after_s > 0:
            raise ValueError(
                "max_requests and max_bytes must be positive and retry_after_s > 0. Received: "
                f"max_requests={max_requests}, max_bytes={max_bytes}, "
                f"retry_after_s={retry_after_s}"
            )
        self.max_requests = max_requests
        self.max_bytes = max_bytes
        self.retry_after_s = retry_after_s
        self.requests = 0
        self.bytes = 0
        self.refused = 0  # requests refused so far (a test and bench counter)
        self._lock = threading.Lock()
        self._waiters: deque[tuple[int, asyncio.AbstractEventLoop, asyncio.Future[Ticket]]] = (
            deque()
        )

    def _fits(self, nbytes: int) -> bool:
        return self.requests == 0 or (
            self.requests < self.max_requests and self.bytes + nbytes <= self.max_bytes
        )

    def _refusal(self, what: str, nbytes: int) -> RetryLaterError:
        self.refused += 1
        return RetryLaterError(
            f"Server overloaded: {self.requests} requests of {self.bytes} bytes in flight "
            f"(max_inflight_batches={self.max_requests}, max_inflight_bytes={self.max_bytes}); "
            f"retry later. Received: one more {what} of {nbytes} bytes",
            self.retry_after_s,
        )

    def admit(self, nbytes: int, what: str = "request") -> Ticket:
        """A ticket for a request of `nbytes`, at once.

        Raises:
            RetryLaterError: no room (the message says how full the budget is).
        """
        with self._lock:
            if not self._fits(nbytes):  # waiters do not hold it back: it waits for nothing
                raise self._refusal(what, nbytes)
            self.requests += 1
            self.bytes += nbytes
            return Ticket(self, nbytes)

    async def wait(self, nbytes: int, timeout_s: float | None, what: str = "request") -> Ticket:
        """A ticket for `nbytes`, waiting (first come, first served) up to `timeout_s`.

        Raises:
            RetryLaterError: no room within `timeout_s`.
        """
        loop = asyncio.get_running_loop()
        with self._lock:
            if not self._waiters and self._fits(nbytes):
                self.requests += 1
                self.bytes += nbytes
                return Ticket(self, nbytes)
            if len(self._waiters) >= self.max_requests:
                raise self._refusal(what, nbytes)
            fut: asyncio.Future[Ticket] = loop.create_future()
            entry = (nbytes, loop, fut)
            self._waiters.append(entry)
        try:
            return await asyncio.wait_for(asyncio.shield(fut), timeout_s)
        except (TimeoutError, asyncio.CancelledError) as e:
            with self._lock:
                if entry in self._waiters:
                    self._waiters.remove(entry)
                    granted = None
                else:  # granted meanwhile: give it back
                    granted = fut
            if granted is not None:
                granted.add_done_callback(lambda f: f.result().release())
            if isinstance(e, TimeoutError):
                with self._lock:
                    raise self._refusal(what, nbytes) from None
            raise

    def _grant_waiters(self) -> None:
        """Hands freed room to waiters in order (under the lock)."""
        while self._waiters and self._fits(self._waiters[0][0]):
            nbytes, loop, fut = self._waiters.popleft()
            self.requests += 1
            self.bytes += nbytes
            ticket = Ticket(self, nbytes)
            loop.call_soon_threadsafe(_settle, fut, ticket)

    def _grow(self, ticket: Ticket, more: int, what: str) -> None:
        with self._lock:
            if ticket.released:
                return
            if self.requests > 1 and self.bytes + more > self.max_bytes:
                raise self._refusal(what, ticket.nbytes + more)
            self.bytes += more
            ticket.nbytes += more

    def _resize(self, ticket: Ticket, nbytes: int) -> None:
        with self._lock:
            if ticket.released:
                return
            self.bytes += nbytes - ticket.nbytes
            ticket.nbytes = nbytes
            self._grant_waiters()

    def _release(self, ticket: Ticket) -> None:
        with self._lock:
            if ticket.released:
                return
            ticket.released = True
            self.requests -= 1
            self.bytes -= ticket.nbytes
            self._grant_waiters()


def _settle(fut: asyncio.Future[Ticket], ticket: Ticket) -> None:
    if fut.done():  # the waiter went away: the ticket goes back
        ticket.release()
    else:
        fut.set_result(ticket)
