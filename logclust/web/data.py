"""What the page shows, as JSON-ready dicts, from the same domain calls as the gRPC
`Clusters` and `Latency` answers (`Sidecar.cluster_views`, `Sidecar.latency`).

Reading is cheap and shared: one snapshot serves every page request for `max_age_s`
(several browsers refreshing cost one), and never more often than keeps the snapshots
under `CPU_SHARE` of one core (a snapshot of many clusters costs more: the next one waits
longer). The history behind the sparklines is kept between snapshots: a closed window
never changes, so each snapshot asks the latency book only for the windows still open
instead of for the whole retention.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from logclust.sidecar.activity import ClusterView
from logclust.sidecar.core import Sidecar
from logclust.web.encode import to_json

# Points of a sparkline and of a cluster page's charts at most: the history window is
# the smallest base window times a power of two that spans the data in this many.
POINTS = 60
# A new kind stays highlighted this long after it first appears (ms).
HIGHLIGHT_MS = 15 * 60_000
QUANTILES = (0.5, 0.99)
# Snapshots take at most this share of one core's time (their CPU time, measured).
CPU_SHARE = 0.02
# ... but a snapshot is never older than this when asked for (seconds): the page stays
# live however costly a snapshot is (a cold first one costs most).
MAX_WAIT_S = 4.0
# Exemplars per cluster in the overview (a cluster's page has them all).
TABLE_EXEMPLARS = 2


@dataclass
class _History:
    """Count, p50 and p99 per (source, cluster id) per history window; windows that
    started before `closed_ms` are final."""

    window_ms: int = 0
    closed_ms: int = 0
    points: dict[tuple[str, int], dict[int, tuple[int, float, float]]] = field(default_factory=dict)

    def update(self, sidecar: Sidecar, now: int, oldest: int) -> None:
        """Asks the book for the windows not final yet, after a new width if the data
        now spans more than `POINTS` windows."""
        base = sidecar.labeler.book.window_ms
        span = max(now - oldest, base)
        width = base
        while span > width * POINTS:
            width *= 2
        if width != self.window_ms:  # a new width: every window again
            self.window_ms, self.points = width, {}
            self.closed_ms = (now - span) // width * width
        table = sidecar.latency(list(QUANTILES), start_ms=self.closed_ms, window_ms=width)
        for r in _rows(table):
            start = r["window_start"]
            per = self.points.setdefault((r["source"], r["cluster_id"]), {})
            per[start] = (r["count"], r["p50"], r["p99"])
        # Rows reach the book up to one base window late (the open window's sketch).
        self.closed_ms = max(self.closed_ms, (now - base) // width * width)
        horizon = now - sidecar.labeler.book.retention_ms
        for key, per in list(self.points.items()):
            for start in [s for s in per if s + width <= horizon]:
                del per[start]
            if not per:
                del self.points[key]

    def series(self, source: str, cid: int) -> list[list[float]]:
        """`[window start ms, rows, p50, p99]` per window, oldest first."""
        per = self.points.get((source, cid), {})
        # Windows enter in time order (a new width refills them sorted).
        return [[s, *v] for s, v in per.items()]


def _rows(table: pa.Table) -> list[dict[str, Any]]:
    rows = table.to_pylist()
    if "window_start" in table.column_names:
        for r in rows:
            r["window_start"] = int(r["window_start"].timestamp() * 1000)
    return rows


class PageData:
    """Snapshots of the sidecar for the page, at most one per `max_age_s`.

    Args:
        sidecar: the domain core the gRPC servicer answers from.
        max_age_s: how long a snapshot serves.
        clock: seconds (monotonic), for tests.
    """

    def __init__(
        self,
        sidecar: Sidecar,
        max_age_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sidecar = sidecar
        self.max_age_s = max_age_s
        self.clock = clock
        self._lock = threading.Lock()
        self._history = _History()
        self._views: list[ClusterView] = []
        self._overview: dict[str, Any] | None = None
        self._now_latency: dict[tuple[str, int], dict[str, Any]] = {}
        self._now_ms = 0
        self._new: dict[tuple[str, int], int] = {}  # new kinds still highlighted
        self._taken = -float("inf")
        self._cost_s = 0.0  # CPU seconds of the last snapshot
        self._overview_json = b""
        self.snapshots = 0  # taken so far (tests, the bench)

    def overview_json(self) -> bytes:
        """`overview()` as escaped JSON (`to_json`), encoded once per snapshot."""
        with self._lock:
            if self._refresh() or not self._overview_json:
                self._overview_json = to_json(self._overview)
            return self._overview_json

    def overview(self) -> dict[str, Any]:
        """Every source's active clusters (template, exemplars, rows/s now and before,
        p50/p99 now, first seen, p99 history) and the recent new kinds."""
        with self._lock:
            self._refresh()
            assert self._overview is not None
            return self._overview

    def cluster(self, source: str, cluster_id: int) -> dict[str, Any] | None:
        """One cluster with its history and the clusters merged into it; None if unknown."""
        with self._lock:
            self._refresh()
            views = [v for v in self._views if v.source == source]
            found = [v for v in views if v.stats.cluster_id == cluster_id]
            if not found:
                return None
            out = self._cluster_row(found[0], self._now_latency)
            out["series"] = self._history.series(source, cluster_id)
            out["window_ms"] = self._history.window_ms
            out["aliases"] = [
                {"id": v.stats.cluster_id, "template": v.stats.template, "size": v.stats.size}
                for v in views
                if v.stats.merged_into == cluster_id
            ]
            return out

    def _refresh(self) -> bool:
        """A new snapshot if the last is older than `max_age_s` and than `CPU_SHARE`
        allows after its cost (at most `MAX_WAIT_S`; lock held); True when taken."""
        t = self.clock()
        wait = min(max(self.max_age_s, self._cost_s / CPU_SHARE), MAX_WAIT_S)
        if t - self._taken < wait:
            return False
        cpu0 = time.thread_time()
        sidecar = self.sidecar
        now = int(time.time() * 1000)
        views = sidecar.cluster_views()
        window_ms = sidecar.config.rate_window_s * 1000
        recent = sidecar.latency(list(QUANTILES), start_ms=now - window_ms)
        self._now_latency = {(r["source"], r["cluster_id"]): r for r in _rows(recent)}
        firsts = [v.stats.first_seen_ms for v in views if v.stats.first_seen_ms]
        self._history.update(sidecar, now, min(firsts, default=now))
        self._views, self._now_ms = views, now
        self._new = {
            (e.source, e.cluster_id): e.seen_ms
            for e in sidecar.activity.events()
            if now - e.seen_ms < HIGHLIGHT_MS
        }
        self._overview = self._build(views, now)
        self._taken = t
        self._cost_s = time.thread_time() - cpu0
        self.snapshots += 1
        return True

    def _build(self, views: list[ClusterView], now: int) -> dict[str, Any]:
        events = [e for e in self.sidecar.activity.events() if now - e.seen_ms < HIGHLIGHT_MS]
        sources: dict[str, list[dict[str, Any]]] = {}
        for v in views:
            if not v.stats.active:
                continue
            row = self._cluster_row(v, self._now_latency)
            row["exemplars"] = row["exemplars"][:TABLE_EXEMPLARS]
            row["spark"] = [[p[0], p[3]] for p in self._history.series(v.source, row["id"])]
            sources.setdefault(v.source, []).append(row)
        book = self.sidecar.labeler.book
        return {
            "now_ms": now,
            "rate_window_s": self.sidecar.config.rate_window_s,
            "history_window_ms": self._history.window_ms,
            "retention_s": book.retention_ms // 1000,
            "highlight_s": HIGHLIGHT_MS // 1000,
            "sources": [{"name": n, "clusters": c} for n, c in sorted(sources.items())],
            "new_kinds": [
                {
                    "source": e.source,
                    "id": e.cluster_id,
                    "seen_ms": e.seen_ms,
                    "template": e.template,
                }
                for e in reversed(events)
            ],
        }

    def _cluster_row(
        self, v: ClusterView, latency: dict[tuple[str, int], dict[str, Any]]
    ) -> dict[str, Any]:
        st = v.stats
        lat = latency.get((v.source, st.cluster_id), {})
        return {
            "source": v.source,
            "id": st.cluster_id,
            "template": st.template,
            "exemplars": st.members[: self.sidecar.config.clusters.max_exemplars],
            "size": st.size,
            "rows_per_s": round(v.rows_per_s, 3),
            "rows_per_s_before": round(v.rows_per_s_before, 3),
            "p50_ms": lat.get("p50"),
            "p99_ms": lat.get("p99"),
            "latency_rows": lat.get("count", 0),
            "first_seen_ms": st.first_seen_ms,
            "last_seen_ms": st.last_seen_ms,
            "new_since_ms": self._new.get((v.source, st.cluster_id)),
            "active": st.active,
            "merged_into": st.merged_into,
        }
