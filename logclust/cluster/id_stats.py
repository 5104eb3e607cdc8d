"""Per-id statistics of one source's clusters: sizes, first and last seen, members.

Sizes and times live in arrays indexed by stable id, so the steady path updates them with
numpy, not with a Python loop per cluster; templates and members live in a `ClusterStats`
per id, looked at again only when a cluster short of members has grown enough.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from logclust.cluster.descriptions import ClusterStats, template_of

# A cluster short of template members looks again at least this often (rows).
MEMBERS_EVERY = 10_000
# First/last seen of an id no row has reached yet.
NO_TIME_LO = np.iinfo(np.int64).max
NO_TIME_HI = np.iinfo(np.int64).min


class IdStats:
    """Statistics per stable id.

    Args:
        template_members: distinct masked members kept per cluster for its template.
    """

    def __init__(self, template_members: int) -> None:
        self.template_members = template_members
        self.stats: dict[int, ClusterStats] = {}  # templates, members and state per id
        self.size = np.zeros(0, np.int64)
        self.first = np.zeros(0, np.int64)
        self.last = np.zeros(0, np.int64)
        self._tried = np.zeros(0, np.int64)  # size at the last look for members
        self._n_members = np.zeros(0, np.int64)

    def grow(self, n: int) -> None:
        """Room in the per-id arrays for ids below `n`."""
        have = self.size.size
        if n <= have:
            return
        more = max(n, 2 * have, 64) - have
        self.size = np.concatenate([self.size, np.zeros(more, np.int64)])
        self.first = np.concatenate([self.first, np.full(more, NO_TIME_LO)])
        self.last = np.concatenate([self.last, np.full(more, NO_TIME_HI)])
        self._tried = np.concatenate([self._tried, np.zeros(more, np.int64)])
        self._n_members = np.concatenate([self._n_members, np.zeros(more, np.int64)])

    def add_batch(
        self, keys: list[str], uid: np.ndarray, ids: np.ndarray, time_ms: np.ndarray
    ) -> bool:
        """Adds a batch to the sizes, times and members of its clusters.

        Args:
            keys: distinct masked texts `(u,)` of the batch.
            uid: `(u,)` id of each text.
            ids: `(n,)` id of each row.
            time_ms: `(n,)` event time of each row.

        Returns:
            Whether any cluster's stats or members changed (not only its counters).
        """
        # Cluster ids are small non-negative ints: counted with bincount.
        counts = np.bincount(ids)
        self.grow(counts.size)
        cids = np.flatnonzero(counts)
        self.size[: counts.size] += counts
        lo_all, hi_all = int(time_ms.min()), int(time_ms.max())
        if lo_all == hi_all:  # one event time (no time column: the arrival time)
            self.first[cids] = np.minimum(self.first[cids], lo_all)
            self.last[cids] = np.maximum(self.last[cids], hi_all)
        else:
            np.minimum.at(self.first, ids, time_ms)
            np.maximum.at(self.last, ids, time_ms)
        return self._add_members(keys, uid, cids)

    def _add_members(self, keys: list[str], uid: np.ndarray, cids: np.ndarray) -> bool:
        # A cluster short of members looks for new ones after its size doubles (at least
        # every `MEMBERS_EVERY` rows), not in every batch: the loop below is empty on a
        # steady stream.
        cap = self.template_members
        size, tried = self.size[cids], self._tried[cids]
        look = cids[
            (self._n_members[cids] < cap) & (size - tried >= np.minimum(tried, MEMBERS_EVERY))
        ]
        changed = False
        for cid in look.tolist():
            st = self.stats.get(cid)
            if st is None:
                st = self.stats[cid] = ClusterStats(cid)
                changed = True
            self._tried[cid] = self.size[cid]
            st.add_members([keys[i] for i in np.flatnonzero(uid == cid)[:cap].tolist()], cap)
            if len(st.members) != self._n_members[cid]:
                changed = True
            self._n_members[cid] = len(st.members)
        return changed

    def look_again(self, ids: np.ndarray) -> None:
        """The clusters `ids` (-1 ignored) look for members at their next batch."""
        self._tried[ids[ids >= 0]] = 0

    def merge(self, gone: int, into: int) -> None:
        """Moves the size, times and members of `gone` to `into`; `gone` stays described,
        inactive, with `merged_into` set."""
        self.grow(max(gone, into) + 1)
        self.size[into] += self.size[gone]
        self.first[into] = min(self.first[into], self.first[gone])
        self.last[into] = max(self.last[into], self.last[gone])
        old = self.stats.get(gone)
        if old is None:
            return
        old.active = False
        old.merged_into = into
        st = self.stats.setdefault(into, ClusterStats(into))
        st.add_members(old.members, self.template_members)
        self._n_members[into] = len(st.members)
        if st.members:
            st.template = template_of(st.members)

    def copy_of(self, st: ClusterStats) -> ClusterStats:
        """A copy of `st` with its size and times from the per-id arrays."""
        cid = st.cluster_id
        out = ClusterStats(**{**st.to_dict(), "members": list(st.members)})
        if cid < self.size.size:
            out.size = int(self.size[cid])
            first, last = int(self.first[cid]), int(self.last[cid])
            out.first_seen_ms = None if first == NO_TIME_LO else first
            out.last_seen_ms = None if last == NO_TIME_HI else last
        return out

    def describe(self, ids: set[int] | None = None) -> list[ClusterStats]:
        """Copies of every cluster's stats (or of `ids` only), sorted by id."""
        return [
            self.copy_of(s) for cid, s in sorted(self.stats.items()) if ids is None or cid in ids
        ]

    def restore(self, stats: Iterable[ClusterStats], next_id: int) -> None:
        """Sets the stats (sizes and times included) of a restored state."""
        self.stats = {st.cluster_id: st for st in stats}
        self.grow(max([next_id, *self.stats]) + 1)
        for st in self.stats.values():
            cid = st.cluster_id
            self.size[cid] = st.size
            if st.first_seen_ms is not None:
                self.first[cid] = st.first_seen_ms
            if st.last_seen_ms is not None:
                self.last[cid] = st.last_seen_ms
            self._n_members[cid] = len(st.members)
            self._tried[cid] = st.size

    def set_counters(self, size: np.ndarray, first: np.ndarray, last: np.ndarray, n: int) -> None:
        """Sets the sizes and times of ids below `n` (saved counters)."""
        self.grow(n)
        self.size[:n], self.first[:n], self.last[:n] = size, first, last
