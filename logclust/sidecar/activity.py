"""What each cluster is doing now: rows/s over the last window beside the window before,
and new kinds (a cluster first seen once its source is past its start-up).

`ClusterActivity.record` runs on the Label path, so it works on arrays: one `bincount` of
a source's ids per batch into the current window, and one `max` to spot ids never seen.
Cluster ids grow (a new cluster takes the next id), so an id above the largest seen is a
new cluster; one split off an existing cluster by a consolidation is new the same way.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from logclust.cluster.descriptions import ClusterStats

# New-kind events kept for the page (the metric counts them all).
MAX_EVENTS = 256


@dataclass(frozen=True)
class NewKind:
    """A cluster first seen after its source's start-up."""

    source: str
    cluster_id: int
    seen_ms: int  # Unix ms of the batch that opened it
    template: str = ""


@dataclass
class _SourceWindows:
    """Rows per cluster id of one source in the current window and the two before."""

    start_ms: int  # start of the current window
    first_ms: int  # first batch of the source in this process (start-up grace)
    max_id: int = -1  # the largest id seen
    counts: list[np.ndarray] = field(
        default_factory=lambda: [np.zeros(0, np.int64) for _ in range(3)]
    )  # [current, previous, the one before]

    def advance(self, now_ms: int, window_ms: int) -> None:
        """Moves the windows forward so that the current one holds `now_ms`."""
        start = now_ms // window_ms * window_ms
        steps = (start - self.start_ms) // window_ms
        if steps <= 0:
            return
        empty = np.zeros(0, np.int64)
        kept = self.counts[: max(3 - steps, 0)]
        self.counts = [empty] * min(steps, 3) + kept
        self.start_ms = start

    def add(self, ids: np.ndarray) -> None:
        counts = np.bincount(ids[ids >= 0])
        cur = self.counts[0]
        if cur.size < counts.size:
            cur = np.concatenate([cur, np.zeros(counts.size - cur.size, np.int64)])
        cur[: counts.size] += counts
        self.counts[0] = cur


def _pad(a: np.ndarray, n: int) -> np.ndarray:
    return np.concatenate([a, np.zeros(n - a.size, np.int64)]) if a.size < n else a[:n]


class ClusterActivity:
    """Rows/s per cluster and new-kind events, per source. Thread-safe.

    Args:
        window_ms: width of the rate windows.
        grace_ms: clusters first seen within this long of a source's first batch are not
            new kinds (a fresh start is not a flood).
    """

    def __init__(self, window_ms: int, grace_ms: int) -> None:
        if window_ms < 1 or grace_ms < 0:
            raise ValueError(
                "window_ms must be positive and grace_ms >= 0. "
                f"Received: window_ms={window_ms}, grace_ms={grace_ms}"
            )
        self.window_ms = window_ms
        self.grace_ms = grace_ms
        self._sources: dict[str, _SourceWindows] = {}
        self._events: deque[NewKind] = deque(maxlen=MAX_EVENTS)
        self._new_counts: dict[str, int] = {}
        self._lock = threading.Lock()

    def restored(self, source: str, max_id: int) -> None:
        """A source restored from the store: its ids up to `max_id` are known and its
        start-up is long past."""
        with self._lock:
            self._sources[source] = _SourceWindows(0, -self.grace_ms, max_id)

    def past_grace(self, source: str, now_ms: int) -> bool:
        """Whether a cluster `source` opens at `now_ms` counts as a new kind (the source
        has sent batches for `grace_ms` at least)."""
        with self._lock:
            win = self._sources.get(source)
            return win is not None and now_ms - win.first_ms >= self.grace_ms

    def record(
        self,
        source_names: Sequence[str],
        source_codes: np.ndarray,
        ids: np.ndarray,
        now_ms: int,
    ) -> list[tuple[str, list[int]]]:
        """Counts a labelled batch; returns the new kinds it opened, per source."""
        fresh: list[tuple[str, list[int]]] = []
        with self._lock:
            for code, name in enumerate(source_names):
                rows = ids if len(source_names) == 1 else ids[source_codes == code]
                if rows.size == 0:
                    continue
                win = self._sources.get(name)
                if win is None:
                    win = self._sources[name] = _SourceWindows(now_ms, now_ms)
                win.advance(now_ms, self.window_ms)
                win.add(rows)
                top = int(rows.max())
                if top <= win.max_id:
                    continue
                new = np.unique(rows[rows > win.max_id]).tolist()
                win.max_id = top
                if now_ms - win.first_ms >= self.grace_ms:
                    fresh.append((name, new))
                    self._new_counts[name] = self._new_counts.get(name, 0) + len(new)
        return fresh

    def add_event(self, event: NewKind) -> None:
        """Keeps `event` for the page (the newest `MAX_EVENTS`)."""
        with self._lock:
            self._events.append(event)

    def events(self) -> list[NewKind]:
        """New-kind events, oldest first."""
        with self._lock:
            return list(self._events)

    def new_counts(self) -> dict[str, int]:
        """New kinds counted per source since start (the metric), 0 for a source without
        any (its series exists from its first batch)."""
        with self._lock:
            return {name: self._new_counts.get(name, 0) for name in self._sources}

    def rates(self, source: str, now_ms: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows/s of ids `0..n-1` of `source` over the last window and the one before.

        The windows slide: the current (partial) window plus the part of the previous one
        still within the last `window_ms`, and likewise one window earlier.
        """
        w = self.window_ms
        with self._lock:
            win = self._sources.get(source)
            if win is None:
                return np.zeros(n), np.zeros(n)
            win.advance(now_ms, w)
            cur, prev, prev2 = (_pad(c, n).astype(np.float64) for c in win.counts)
        done = (now_ms - win.start_ms) / w  # share of the current window gone by
        now = (cur + prev * (1 - done)) / (w / 1000)
        before = (prev * done + prev2 * (1 - done)) / (w / 1000)
        return now, before

    def forget(self, source: str) -> None:
        """Drops what is known of `source` (forgotten or evicted)."""
        with self._lock:
            self._sources.pop(source, None)
            self._new_counts.pop(source, None)
            self._events = deque((e for e in self._events if e.source != source), MAX_EVENTS)


@dataclass(frozen=True)
class ClusterView:
    """One cluster as `Clusters` and the page show it: its stats and its rows/s."""

    source: str
    stats: ClusterStats
    rows_per_s: float  # over the last `rate_window_s`
    rows_per_s_before: float  # over the window before it
