"""A thread pool that shares its cores fairly between streams (start-time fair queuing).

With a FIFO pool, a light client's 20-row batch queued behind every heavy batch already
waiting, so its p99 grew with the heavy streams' backlog (`python -m bench.contention`
measures it beside 32 heavy streams). Here each stream (a `key`) has its own queue and a
virtual time, the cost of the work it has been served (the request's bytes), which is
the start tag of its next item. A free slot goes to the item with the smallest start
tag, the cheaper first on a tie, so a stream that sends little goes ahead of one that
sends much. A stream that arrives, or comes back after a pause, starts at the start tag
of the item last started (or the smallest waiting, if smaller): it gets no credit for
the time it was away, and a small item goes ahead of every item waiting.
(Each Label stream holds one batch in flight, so heavy streams keep coming back from
"idle": starting them at the largest tag begun, with ties in arrival order, left a light
client's batch behind many heavy ones; finish tags instead, behind a whole round of them.)

**Slots and yield points.** At most `slots` items run at once (the cores: more only share
a core and the GIL, and every batch then takes longer). A running item may call
`logclust.turns.checkpoint(cost)`: `cost` is charged to its stream, and the running item
counts as its start tag plus what its checkpoints charged, then its cost. When a waiting
item is less (a cheaper one at the same tag, or any once the charges add up), the running
one parks (its thread waits, holding its work) and its slot goes to the waiting one; it
resumes when it is again the least. So a long item (a
burst of new texts to embed) holds the others up for one step, not for its length, and one
slot is enough on a one-core sidecar. The pool has `slots + spare` threads, so that parked
items leave threads to start others; with none spare, a checkpoint does not park.

`FairExecutor.submit` returns a `concurrent.futures.Future`, like `ThreadPoolExecutor`.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
from collections import deque
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import logclust.turns as turns

logger = logging.getLogger(__name__)

# Threads beyond the slots: items parked at a checkpoint at once, at most.
SPARE_THREADS = 4


# A queued item: its cost, future, call, and whether its caller still wants it.
_Item = tuple[float, Future[Any], Callable[[], Any], Callable[[], bool] | None]


@dataclass
class _Running:
    """The item a worker runs: its stream, start tag, cost, and cost charged since."""

    key: Hashable
    start: float
    cost: float
    extra: float = 0.0
    alive: Callable[[], bool] | None = None


class FairExecutor:
    """`slots` items at a time, served from the streams' queues by least start tag.

    Args:
        slots: items running at once (the cores to use).
        thread_name_prefix: the workers' names.
        spare: threads beyond `slots`, for items parked at a checkpoint.
        initializer: called first in each worker thread (like `ThreadPoolExecutor`'s).
    """

    def __init__(
        self,
        slots: int,
        thread_name_prefix: str = "logclust-fair",
        spare: int = SPARE_THREADS,
        initializer: Callable[[], None] | None = None,
    ) -> None:
        if slots < 1 or spare < 0:
            raise ValueError(
                f"slots must be positive and spare not negative. Received: slots={slots}, "
                f"spare={spare}"
            )
        self._slots = slots
        self._initializer = initializer
        self._cond = threading.Condition()
        self._queues: dict[Hashable, deque[_Item]] = {}
        self._vtime: dict[Hashable, float] = {}  # virtual start of a stream's next item
        # (start tag, cost, seq, key) of the next item of each stream with work
        self._ready: list[tuple[float, float, int, Hashable]] = []
        # (start tag, cost, seq, key) of items parked at a checkpoint
        self._parked: list[tuple[float, float, int, Hashable]] = []
        self._seq = itertools.count()
        self._now = 0.0  # start tag of the item last started
        self._running = 0  # slots taken
        self._idle = 0  # threads waiting for an item
        self._current = threading.local()  # `run`: the item this thread runs
        self._shutdown = False
        self._threads = [
            threading.Thread(target=self._work, name=f"{thread_name_prefix}-{i}", daemon=True)
            for i in range(slots + spare)
        ]
        for t in self._threads:
            t.start()

    def submit(
        self,
        key: Hashable,
        cost: float,
        fn: Callable[..., Any],
        *args: Any,
        alive: Callable[[], bool] | None = None,
    ) -> Future[Any]:
        """Runs `fn(*args)` on a worker, in `key`'s turn; `cost` (> 0) is what it counts
        against `key` (bytes of the request, say).

        `alive` (None: always) says whether the caller still wants the result: asked
        before the item starts and at each of its checkpoints; once False the item ends
        with `turns.CallerGoneError` there (before it records anything, as labelling
        records only after its last checkpoint), and its turn goes to others.

        Raises:
            RuntimeError: after `shutdown`.
        """
        fut: Future[Any] = Future()
        with self._cond:
            if self._shutdown:
                raise RuntimeError("cannot submit after shutdown")
            cost = max(float(cost), 1.0)
            queue = self._queues.get(key)
            if queue is None:
                queue = self._queues[key] = deque()
                # Back from idle (or new): no credit for the time away; it starts at the
                # start tag of the work in service (so a cheap item ties with it and goes
                # first at its next checkpoint) or the least waiting, if smaller.
                heads = [h[0] for h in (self._ready[:1] + self._parked[:1])]
                now = min([self._now, *heads])
                self._vtime[key] = max(self._vtime.get(key, 0.0), now)
                heapq.heappush(self._ready, (self._vtime[key], cost, next(self._seq), key))
            queue.append((cost, fut, lambda: fn(*args), alive))
            self._cond.notify_all()
        return fut

    def _parked_first(self) -> bool:
        """Whether the least waiting item is a parked one (under the lock)."""
        return bool(self._parked) and (not self._ready or self._parked[0][:3] < self._ready[0][:3])

    def _take(self) -> tuple[_Running, Future[Any], Callable[[], Any]] | None:
        """The next item by least start tag, once a slot is free (None once shut down and
        drained)."""
        with self._cond:
            while not (self._ready and self._running < self._slots and not self._parked_first()):
                if self._shutdown and not self._ready and not self._parked:
                    return None
                self._idle += 1
                self._cond.wait()
                self._idle -= 1
            start, cost, _, key = heapq.heappop(self._ready)
            queue = self._queues[key]
            _, fut, call, alive = queue.popleft()
            self._running += 1
            self._now = max(self._now, start)
            self._vtime[key] = start + cost
            if queue:
                heapq.heappush(self._ready, (start + cost, queue[0][0], next(self._seq), key))
            else:
                del self._queues[key]
                if len(self._vtime) > 4 * len(self._queues) + 1024:  # forget idle streams
                    keep = set(self._queues) | {p[3] for p in self._parked}
                    self._vtime = {k: v for k, v in self._vtime.items() if k in keep}
            return _Running(key, start, cost, alive=alive), fut, call

    def _checkpoint(self, cost: float) -> None:
        """`turns.checkpoint` in a worker: charges `cost`, parks while others go first.

        The running item counts as (its start tag + the cost charged at its checkpoints,
        its cost): it parks when a waiting item is less (a cheaper one that arrived at its
        start tag, or any once its checkpoints have charged enough)."""
        run: _Running | None = getattr(self._current, "run", None)
        if run is None:
            return
        if run.alive is not None and not run.alive():
            raise turns.CallerGoneError("the caller has gone (deadline passed or cancelled)")
        with self._cond:
            run.extra += max(float(cost), 0.0)
            self._vtime[run.key] = run.start + run.cost + run.extra
            me = (run.start + run.extra, run.cost)
            heads = [h[:2] for h in (self._ready[:1] + self._parked[:1])]
            if not heads or min(heads) >= me:
                return  # still the least: go on
            if not self._parked_first() and self._idle == 0:
                return  # no thread free to start the waiting item
            entry = (me[0], me[1], next(self._seq), run.key)
            heapq.heappush(self._parked, entry)
            self._running -= 1
            self._cond.notify_all()
            while not (
                self._running < self._slots and self._parked[0] is entry and self._parked_first()
            ):
                self._cond.wait()
            heapq.heappop(self._parked)
            self._running += 1
            self._now = max(self._now, me[0])
            self._cond.notify_all()

    def _work(self) -> None:
        if self._initializer is not None:
            self._initializer()
        turns.install(self._checkpoint)
        while (item := self._take()) is not None:
            run, fut, call = item
            try:
                if not fut.set_running_or_notify_cancel():
                    continue
                self._current.run = run
                try:
                    if run.alive is not None and not run.alive():
                        raise turns.CallerGoneError("the caller went away before its turn")
                    result = call()
                except BaseException as e:  # handed to the caller, like ThreadPoolExecutor
                    fut.set_exception(e)
                else:
                    fut.set_result(result)
            finally:
                self._current.run = None
                with self._cond:
                    self._running -= 1
                    self._cond.notify_all()

    def shutdown(self, wait: bool = True) -> None:
        """Runs what is queued, then stops the workers (joined when `wait`)."""
        with self._cond:
            self._shutdown = True
            self._cond.notify_all()
        if wait:
            for t in self._threads:
                t.join()
