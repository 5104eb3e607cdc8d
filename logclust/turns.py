"""Yield points of long work: `checkpoint(cost)` lets the thread's scheduler run others.

Labelling code calls `checkpoint` between steps of one request (after masking, between
slices of new texts to embed). In a thread of the server's Label pool (`FairExecutor`,
which installs its hook here) the call charges `cost` to the request's stream and, when
another stream's work has a smaller start tag, gives the core to it and returns once its
own turn comes again: a burst of new texts on one stream then holds the others up for one
slice, not for the burst. In any other thread (tests, `logclust label`, Spark tasks, the
flush) it does nothing.

A caller must hold no lock that other requests take: the thread may wait here.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

# Cost of embedding one new text, in the pool's unit (request bytes): one new text costs
# the encoder about as much as labelling a whole 1,000-row request of known texts (about
# 100 KB), so it is charged as such a request (`python -m bench.hot_path` measures a
# batch, `python -m bench.label_costs` the encoder; BENCHMARKS.md).
EMBED_COST = 100_000

_local = threading.local()


def install(hook: Callable[[float], None] | None) -> None:
    """Sets (None: clears) this thread's hook."""
    _local.hook = hook


def checkpoint(cost: float = 0.0) -> None:
    """Charges `cost` to the work running in this thread; may let other work run first."""
    hook: Callable[[float], None] | None = getattr(_local, "hook", None)
    if hook is not None:
        hook(cost)


class CallerGoneError(Exception):
    """The caller of the work in this thread has gone (deadline passed, cancelled): the
    work stops at its next checkpoint, before anything is recorded."""
