"""Online clustering of a stream, per source, by distance, with ids that stay stable.

Behaviour for each source (settings in `StreamClusterConfig`; the rule itself in
`logclust.cluster.threshold`):

1. **Placement.** Each distinct masked text joins the nearest cluster whose centroid is
   within the threshold (the bundle's calibrated value, or a per-source override), and
   otherwise opens a new cluster at once, in the same batch: there is no warm-up, no k
   to give and no -1 for a new kind of line. Centroids are running means of their
   distinct members. What the current model gave each text is remembered, so a steady
   stream places each text once.
2. **Cap.** At most `max_clusters` clusters per source, and `max_clusters_total` over
   all sources (each keeps `reserved_clusters`; the rest goes first come first served),
   bound memory; past its cap a far text joins its nearest cluster, logged and counted
   (`cap_hits`, exported as a metric).
3. **Consolidation** (on a background thread unless `background_consolidation` is false),
   after `consolidate_every_rows` rows or `consolidate_new_clusters` new clusters, spaced
   so that it takes at most `consolidate_max_share` of the time: centroids are recomputed
   from a reservoir sample of the rows, members that drifted out of reach are placed
   again (the larger part keeps the id), and clusters whose centroids came within the
   threshold of each other are merged: the one with more rows keeps its id and the other
   becomes its alias (`ClusterStats.merged_into`; latency queries merge the two). A
   consolidation that changes nothing doubles the rows to the next one (up to
   `consolidate_backoff_max`), so a steady stream stops paying for it.
4. **State** (centroids, counts, ids, aliases, descriptions) is encoded without pickle
   by `SourceClusterer.to_bytes` and restored on restart, so ids survive restarts.

Each cluster is described by a template over its distinct masked members and a few
exemplars. Only masked text is kept, never raw bodies.
"""

from __future__ import annotations

import io
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from itertools import repeat
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from logclust import turns
from logclust.cluster.config import StreamClusterConfig
from logclust.cluster.descriptions import ClusterStats, template_of
from logclust.cluster.reservoir import Reservoir
from logclust.cluster.threshold import Centroids, Consolidation, consolidate, place
from logclust.embed.embedding_cache import Embedder, EmbeddingCache
from logclust.text.mask_cache import MaskCache
from logclust.wire.contract import LimitExceededError

logger = logging.getLogger(__name__)

_STATE_VERSION = 3
# Format 3 (`pack_state`): this prefix, the header's length (8 bytes, little-endian), a
# JSON header (the document and each array's dtype, shape and offset), the arrays' bytes.
STATE_MAGIC = b"logclust-state\x00"
_STATE_DTYPES = frozenset({"<f4", "<i4", "<i8"})
# New texts embedded per hold of the model before the clustering lock (about 0.1-0.2 s
# of one core with the shipped encoder): what another stream may wait for in a burst.
_EMBED_SLICE = 16
# A cluster short of template members looks again at least this often (rows).
_MEMBERS_EVERY = 10_000
# First/last seen of an id no row has reached yet.
_NO_TIME_LO = np.iinfo(np.int64).max
_NO_TIME_HI = np.iinfo(np.int64).min


@dataclass(frozen=True)
class _Snapshot:
    """What a consolidation starts from (copied under the lock)."""

    centroids: np.ndarray
    counts: np.ndarray
    sizes: np.ndarray
    k: int
    cap: int  # clusters the source may hold (splits stop there)


class SourceClusterer:
    """Online clustering state of one source (see the module docstring).

    Thread-safe: `assign` and the background consolidation share one re-entrant lock;
    the consolidation computes without the lock and only takes it to swap its result in.

    Args:
        source: the source's name.
        config: clustering settings.
        dim: embedding dimension.
        threshold: distance within which a text joins a cluster (see
            `StreamClusterConfig.threshold_for`).
    """

    def __init__(
        self, source: str, config: StreamClusterConfig, dim: int, threshold: float
    ) -> None:
        if not threshold > 0:
            raise ValueError(f"threshold must be positive. Received: threshold={threshold}")
        self.source = source
        self.config = config
        self.dim = dim
        self.threshold = float(threshold)
        self._table = Centroids.empty(dim)
        self._ids = np.zeros(0, np.int32)  # stable id of each row of the table
        self._next_id = 0
        self.aliases: dict[int, int] = {}  # merged id -> the id it was merged into
        # Templates, members and state per id; sizes and times live in arrays indexed by
        # id (the steady path updates them with numpy, not a Python loop per cluster).
        self.stats: dict[int, ClusterStats] = {}
        self._size = np.zeros(0, np.int64)
        self._first = np.zeros(0, np.int64)
        self._last = np.zeros(0, np.int64)
        self._tried = np.zeros(0, np.int64)  # size at the last look for members
        self._n_members = np.zeros(0, np.int64)
        self._sample = Reservoir(config.reservoir_size, dim, config.seed)
        self.rows_seen = 0
        # Wall-clock time of the last batch (Unix ms): idle sources are evicted by it.
        self.last_batch_ms = int(time.time() * 1000)
        self.cap_hits = 0
        self._rows_since = 0
        self._new_since = 0
        self._backoff = 1
        # What the current model gave each text: text -> slot of _known_uid / _known_d.
        self._known: dict[str, int] = {}
        self._known_uid = np.zeros(0, np.int32)
        self._known_d = np.zeros(0, np.float32)
        # Clusters this source may still open under a bound shared by all sources (set by
        # `StreamClusters` from `max_clusters_total`); None: up to `max_clusters`.
        self.room: Callable[[], int] | None = None
        # Texts the memo may hold now (set by `StreamClusters`: a share of the memo of
        # every source, so one busy source is not held to the worst case's share).
        self.memo_limit: Callable[[], int] = lambda: min(config.cache_size, config.memo_size)
        self._lock = threading.RLock()
        self._thread: threading.Thread | None = None
        self._after = 0.0  # time.monotonic() before which no consolidation starts
        self.consolidations = 0
        self.dirty = True  # anything changed since the last flush
        # The clusters themselves changed (centroids, ids, aliases, members), not only
        # their counters (sizes, times): a steady stream changes counters alone, and a
        # flush then writes `counters_bytes` (a few bytes a cluster), not the whole state.
        self.model_dirty = True

    @property
    def k(self) -> int:
        """Clusters in use (aliases not counted)."""
        return self._table.k

    def assign(
        self,
        keys: list[str],
        embed: Callable[[np.ndarray], np.ndarray],
        inv: np.ndarray,
        time_ms: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Labels rows given their distinct masked texts.

        Args:
            keys: distinct masked texts `(u,)` of this source's rows.
            embed: embeddings `(m, dim)` of `keys[idx]` for an index array `idx`; asked
                only for texts this model has not placed yet and for sampled rows.
            inv: `(n,)` index into `keys` of each row.
            time_ms: `(n,)` event times.

        Returns:
            `(ids, distances)` per row: int32 stable ids and float32 Euclidean distances
            to the centroid of the cluster when the text was placed.
        """
        with self._lock:
            self.last_batch_ms = int(time.time() * 1000)
            self._sample.offer(self.rows_seen, keys, embed, inv)
            self.rows_seen += inv.size
            self._rows_since += inv.size
            uid, d = self._assign_known(keys, embed)
            ids, dist = uid[inv], d[inv]
            self._update_stats(keys, uid, ids, time_ms)
            self.dirty = True
            self._maybe_consolidate()
        return ids, dist

    def _assign_known(
        self, keys: list[str], embed: Callable[[np.ndarray], np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray]:
        """`_place` through a memo of the id each text was given (bounded by
        `memo_limit`): a steady stream's texts are placed once, not once per batch. A
        consolidation rewrites the memo's merged ids to their survivors and marks the
        texts of split clusters (id -1) to be placed again."""
        if len(self._known) + len(keys) > self.memo_limit():
            self._known.clear()
        slot = np.fromiter(map(self._known.get, keys, repeat(-1)), np.int64, len(keys))
        held = slot >= 0
        stale = np.zeros(len(keys), bool)
        stale[held] = self._known_uid[slot[held]] < 0
        miss = np.flatnonzero(~held | stale)
        if miss.size:
            uid, d = self._place(embed(miss))
            self.model_dirty = True
            new = miss[~stale[miss]]
            start = len(self._known)
            if start + new.size > self._known_uid.size:
                grow = max(2 * self._known_uid.size, start + new.size)
                self._known_uid = np.resize(self._known_uid, grow)
                self._known_d = np.resize(self._known_d, grow)
            slot[new] = np.arange(start, start + new.size)
            self._known.update(
                zip([keys[i] for i in new.tolist()], range(start, start + new.size), strict=True)
            )
            self._known_uid[slot[miss]] = uid
            self._known_d[slot[miss]] = d
        return self._known_uid[slot], self._known_d[slot]

    def known_texts(self) -> dict[str, int]:
        """The memo (text -> slot); read without the lock, only to skip work (a text
        found here may still be placed again by `assign`)."""
        return self._known

    def _place(self, emb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        k0 = self._table.k
        cap = self._cap()
        cidx, d, forced = place(emb, self._table, self.threshold, cap)
        opened = self._table.k - k0
        if opened:
            fresh = np.arange(self._next_id, self._next_id + opened, dtype=np.int32)
            self._next_id += opened
            self._ids = np.concatenate([self._ids, fresh])
            self._new_since += opened
        if forced:
            if self.cap_hits == 0:
                logger.warning(
                    "source %r reached its cap of %d clusters (max_clusters=%d, "
                    "max_clusters_total=%s): far lines now join their nearest cluster "
                    "(counted in logclust_cluster_cap_hits_total)",
                    self.source,
                    cap,
                    self.config.max_clusters,
                    self.config.max_clusters_total,
                )
            self.cap_hits += forced
        return self._ids[cidx], d

    def _cap(self) -> int:
        """Clusters this source may hold now: `max_clusters`, or fewer while the bound
        shared with the other sources leaves no more room (never below 1)."""
        cap = self.config.max_clusters
        if self.room is not None:
            cap = min(cap, self._table.k + max(self.room(), 0))
        return max(cap, 1)

    def _grow(self, n: int) -> None:
        """Room in the per-id arrays for ids below `n`."""
        have = self._size.size
        if n <= have:
            return
        grow = max(n, 2 * have, 64)
        self._size = np.concatenate([self._size, np.zeros(grow - have, np.int64)])
        self._first = np.concatenate([self._first, np.full(grow - have, _NO_TIME_LO)])
        self._last = np.concatenate([self._last, np.full(grow - have, _NO_TIME_HI)])
        self._tried = np.concatenate([self._tried, np.zeros(grow - have, np.int64)])
        self._n_members = np.concatenate([self._n_members, np.zeros(grow - have, np.int64)])

    def _update_stats(
        self, keys: list[str], uid: np.ndarray, ids: np.ndarray, time_ms: np.ndarray
    ) -> None:
        """Adds the batch to the clusters' sizes, times and members."""
        # Cluster ids are small non-negative ints: counted with bincount.
        counts = np.bincount(ids)
        self._grow(counts.size)
        cids = np.flatnonzero(counts)
        self._size[: counts.size] += counts
        lo_all, hi_all = int(time_ms.min()), int(time_ms.max())
        if lo_all == hi_all:  # one event time (no time column: the arrival time)
            self._first[cids] = np.minimum(self._first[cids], lo_all)
            self._last[cids] = np.maximum(self._last[cids], hi_all)
        else:
            np.minimum.at(self._first, ids, time_ms)
            np.maximum.at(self._last, ids, time_ms)
        # A cluster short of members looks for new ones after its size doubles (at least
        # every `_MEMBERS_EVERY` rows), not in every batch: the loop below is empty on a
        # steady stream.
        cap = self.config.template_members
        size, tried = self._size[cids], self._tried[cids]
        look = cids[
            (self._n_members[cids] < cap) & (size - tried >= np.minimum(tried, _MEMBERS_EVERY))
        ]
        for cid in look.tolist():
            st = self.stats.get(cid)
            if st is None:
                st = self.stats[cid] = ClusterStats(cid)
                self.model_dirty = True
            self._tried[cid] = self._size[cid]
            st.add_members([keys[i] for i in np.flatnonzero(uid == cid)[:cap].tolist()], cap)
            if len(st.members) != self._n_members[cid]:
                self.model_dirty = True
            self._n_members[cid] = len(st.members)

    def _stats_of(self, st: ClusterStats) -> ClusterStats:
        """A copy of `st` with its size and times from the per-id arrays."""
        cid = st.cluster_id
        out = ClusterStats(**{**st.to_dict(), "members": list(st.members)})
        if cid < self._size.size:
            out.size = int(self._size[cid])
            first, last = int(self._first[cid]), int(self._last[cid])
            out.first_seen_ms = None if first == _NO_TIME_LO else first
            out.last_seen_ms = None if last == _NO_TIME_HI else last
        return out

    # -- consolidation -------------------------------------------------------------------

    def _maybe_consolidate(self) -> None:
        cfg = self.config
        due = self._rows_since >= cfg.consolidate_every_rows * self._backoff or (
            cfg.consolidate_new_clusters > 0 and self._new_since >= cfg.consolidate_new_clusters
        )
        busy = self._thread is not None and self._thread.is_alive()
        if not due or busy or self._table.k == 0 or time.monotonic() < self._after:
            return
        self._rows_since = self._new_since = 0
        snap, sample = self._snapshot()
        if cfg.background_consolidation:
            self._thread = threading.Thread(
                target=self._consolidate,
                args=(snap, sample),
                name=f"logclust-consolidate-{self.source}",
                daemon=True,
            )
            self._thread.start()
        else:
            self._consolidate(snap, sample)

    def consolidate_now(self) -> bool:
        """Runs one consolidation in this thread; True when it changed any cluster."""
        with self._lock:
            if self._table.k == 0:
                return False
            snap, sample = self._snapshot()
        return self._consolidate(snap, sample)

    def _snapshot(self) -> tuple[_Snapshot, np.ndarray]:
        k = self._table.k
        self._grow(self._next_id)
        sizes = self._size[self._ids]
        snap = _Snapshot(self._table.unit, self._table.counts[:k].copy(), sizes, k, self._cap())
        emb, texts = self._sample.contents(self.rows_seen)
        _, first = np.unique(texts, return_index=True)
        return snap, emb[np.sort(first)]

    def _consolidate(self, snap: _Snapshot, sample: np.ndarray) -> bool:
        start = time.monotonic()
        try:
            done = consolidate(
                snap.centroids,
                snap.counts,
                snap.sizes,
                sample,
                self.threshold,
                snap.cap,
                own=True,  # the snapshot's centroids are a copy made for it
            )
        except (ValueError, np.linalg.LinAlgError) as e:
            logger.error("consolidation of source %r failed, keeping the model: %s", self.source, e)
            return False
        took = time.monotonic() - start
        share = self.config.consolidate_max_share
        with self._lock:
            self._after = time.monotonic() + took * (1.0 - share) / share
            self._apply(snap, done)
        return done.changed

    def _apply(self, snap: _Snapshot, done: Consolidation) -> None:
        k_now = self._table.k
        old_ids = self._ids
        # Clusters opened while the consolidation ran stay as they are, at the end.
        later = slice(snap.k, k_now)
        split_ids = np.arange(self._next_id, self._next_id + done.split_off, dtype=np.int32)
        self._next_id += done.split_off
        if k_now > snap.k:
            centroids = np.concatenate([done.centroids, self._table.unit_rows(later)])
            counts = np.concatenate([done.counts, self._table.counts[later]])
        else:  # nothing opened meanwhile: no (k, dim) copy
            centroids, counts = done.centroids, done.counts
        self._table = Centroids.of(centroids, counts, own=True)
        self._ids = np.concatenate([old_ids[done.kept], split_ids, old_ids[later]])
        for src, dst in done.merged.items():
            if src < snap.k:
                self._alias(int(old_ids[src]), int(old_ids[dst]) if dst < snap.k else None)
        self.consolidations += 1
        self.model_dirty = True
        changed = done.changed
        self._backoff = (
            1 if changed else min(2 * self._backoff, self.config.consolidate_backoff_max)
        )
        if changed:
            was_split = old_ids[list(done.split)]
            self._remap_memo(was_split)
            survivors = [self.aliases.get(int(old_ids[s]), -1) for s in done.merged if s < snap.k]
            touched = np.concatenate([was_split, np.array(survivors, np.int32)])
            self._tried[touched[touched >= 0]] = 0  # these look for members again
            logger.info(
                "source %r consolidated: %d merged, %d split off, k=%d",
                self.source,
                len(done.merged),
                done.split_off,
                self._table.k,
            )
        self.dirty = True

    def _remap_memo(self, split_ids: np.ndarray) -> None:
        """Points the memo's merged ids at their survivors and marks the texts of split
        clusters to be placed again."""
        to = np.arange(max(self._next_id, 1), dtype=np.int32)
        for gone, into in self.aliases.items():
            to[gone] = into
        to[split_ids] = -1
        n = len(self._known)
        held = self._known_uid[:n]
        live = held >= 0
        held[live] = to[held[live]]

    def _alias(self, gone: int, into: int | None) -> None:
        """Records that id `gone` was merged into `into` (sizes and members move)."""
        if into is None:
            return
        self.aliases[gone] = into
        for g, t in list(self.aliases.items()):  # keep every alias pointing at a live id
            if t == gone:
                self.aliases[g] = into
        self._grow(max(gone, into) + 1)
        self._size[into] += self._size[gone]
        self._first[into] = min(self._first[into], self._first[gone])
        self._last[into] = max(self._last[into], self._last[gone])
        old = self.stats.get(gone)
        if old is None:
            return
        old.active = False
        old.merged_into = into
        st = self.stats.setdefault(into, ClusterStats(into))
        st.add_members(old.members, self.config.template_members)
        self._n_members[into] = len(st.members)
        if st.members:
            st.template = template_of(st.members)

    def wait_for_consolidation(self, timeout: float | None = None) -> None:
        """Blocks until a running background consolidation finishes."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)

    # -- description and state -----------------------------------------------------------

    def describe(self, ids: set[int] | None = None) -> list[ClusterStats]:
        """Copies of every cluster's stats (or of `ids` only), merged ones included
        (`merged_into` set)."""
        with self._lock:
            return [
                self._stats_of(s)
                for cid, s in sorted(self.stats.items())
                if ids is None or cid in ids
            ]

    def to_bytes(self) -> bytes:
        """Pickle-free state (`pack_state`): a JSON document and the centroid arrays, no
        reservoir."""
        with self._lock:
            meta = {
                "version": _STATE_VERSION,
                "source": self.source,
                "dim": self.dim,
                "threshold": self.threshold,
                "next_id": self._next_id,
                "rows_seen": self.rows_seen,
                "last_batch_ms": self.last_batch_ms,
                "cap_hits": self.cap_hits,
                "consolidations": self.consolidations,
                "aliases": [[g, t] for g, t in self.aliases.items()],
                "stats": [self._stats_of(s).to_dict() for s in self.stats.values()],
            }
            arrays = {  # the sums, not unit rows: no (k, dim) array made for a flush
                "sums": self._table.sums[: self._table.k],
                "counts": self._table.counts[: self._table.k],
                "ids": self._ids,
            }
            self.dirty = False
            return pack_state(meta, arrays)

    @classmethod
    def from_bytes(
        cls, data: bytes, config: StreamClusterConfig, dim: int, threshold: float
    ) -> SourceClusterer:
        """Restores `to_bytes` output (and the format before it: k-search centroids).

        The threshold given wins over the stored one, so a changed setting applies.

        Raises:
            ValueError: unknown format version or a different embedding dimension.
        """
        if data[: len(STATE_MAGIC)] == STATE_MAGIC:
            meta, arrays = unpack_state(data)
        else:  # formats 1 and 2: an .npz
            with np.load(io.BytesIO(data), allow_pickle=False) as z:
                meta = json.loads(z["meta"].tobytes().decode())
                arrays = {k: z[k] for k in ("centroids", "counts", "ids") if k in z.files}
        version = meta.get("version")
        if version not in (1, 2, _STATE_VERSION) or meta.get("dim") != dim:
            raise ValueError(
                f"Cluster state needs format 1 to {_STATE_VERSION} and dim {dim}. "
                f"Received: version={version}, dim={meta.get('dim')}"
            )
        self = cls(meta["source"], config, dim, threshold)
        self._next_id, self.rows_seen = meta["next_id"], meta["rows_seen"]
        self.consolidations = meta.get("consolidations", meta.get("fits", 0))
        self.cap_hits = meta.get("cap_hits", 0)
        self.last_batch_ms = int(meta.get("last_batch_ms", self.last_batch_ms))
        self.aliases = {int(g): int(t) for g, t in meta.get("aliases", [])}
        stats = [s for s in meta["stats"] if s["cluster_id"] >= 0]  # format 1 kept -1
        self.stats = {s["cluster_id"]: ClusterStats(**s) for s in stats}
        self._grow(max([self._next_id, *self.stats]) + 1)
        for st in self.stats.values():
            cid = st.cluster_id
            self._size[cid] = st.size
            if st.first_seen_ms is not None:
                self._first[cid] = st.first_seen_ms
            if st.last_seen_ms is not None:
                self._last[cid] = st.last_seen_ms
            self._n_members[cid] = len(st.members)
            self._tried[cid] = st.size
        if "sums" in arrays:
            sums = np.ascontiguousarray(arrays["sums"], np.float32)
            counts = arrays["counts"].astype(np.int64)
            self._table = Centroids(sums, counts, len(sums))
            self._ids = arrays["ids"].astype(np.int32)
        elif "centroids" in arrays:
            centroids = arrays["centroids"].astype(np.float32)
            counts = arrays.get("counts", np.ones(len(centroids), np.int64))
            self._table = Centroids.of(centroids, counts)
            self._ids = arrays["ids"].astype(np.int32)
            if version == 1:  # retired k-search clusters are dropped from the table
                live = np.array(
                    [self.stats.get(i, ClusterStats(i)).active for i in self._ids.tolist()], bool
                )
                self._table = Centroids.of(centroids[live], counts[live])
                self._ids = self._ids[live]
        self.dirty = self.model_dirty = version != _STATE_VERSION
        return self

    def counters_bytes(self) -> bytes:
        """What a steady stream changes (`pack_state`): rows seen, and each id's size and
        first and last time. Far smaller than `to_bytes` with many clusters (8 bytes x 3 a
        cluster against its 1.5 KB centroid row and its members)."""
        with self._lock:
            n = self._next_id
            self._grow(n)
            meta = {
                "version": _STATE_VERSION,
                "rows_seen": self.rows_seen,
                "last_batch_ms": self.last_batch_ms,
                "cap_hits": self.cap_hits,
                "next_id": n,
            }
            arrays = {"size": self._size[:n], "first": self._first[:n], "last": self._last[:n]}
            return pack_state(meta, arrays)

    def take_state(self) -> tuple[bytes | None, bytes]:
        """`(to_bytes() or None when only counters changed, counters_bytes())`, and
        both marked saved."""
        with self._lock:
            model = self.to_bytes() if self.model_dirty else None
            self.model_dirty = self.dirty = False
            return model, self.counters_bytes()

    def load_counters(self, data: bytes) -> None:
        """Applies `counters_bytes` output saved after (or with) the state loaded.

        Raises:
            ValueError: malformed counters, or counters of ids this state does not have.
        """
        meta, arrays = unpack_state(data)
        n = int(meta["next_id"])
        if n > self._next_id or any(len(arrays[k]) != n for k in ("size", "first", "last")):
            raise ValueError(
                f"Counters do not fit the state of source {self.source!r}. "
                f"Received: next_id={n} for a state with {self._next_id}"
            )
        with self._lock:
            self._grow(n)
            self._size[:n], self._first[:n], self._last[:n] = (
                arrays["size"],
                arrays["first"],
                arrays["last"],
            )
            self.rows_seen = int(meta["rows_seen"])
            self.last_batch_ms = int(meta["last_batch_ms"])
            self.cap_hits = int(meta["cap_hits"])


def pack_state(meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> bytes:
    """Format 3 of a source's state. The arrays are joined straight into the result: with
    thousands of clusters a flush made the centroids' bytes three times over through
    `np.savez` (a zip in a growing buffer, then copied out), 16-18 MB of peak RSS a second
    on a busy source."""
    specs: list[list[Any]] = []
    parts: list[memoryview] = []
    offset = 0
    for name, a in arrays.items():
        flat = np.ascontiguousarray(a).reshape(-1)
        specs.append([name, flat.dtype.str, list(a.shape), offset])
        parts.append(flat.view(np.uint8).data)
        offset += flat.nbytes
    head = json.dumps({"meta": meta, "arrays": specs}).encode()
    return b"".join([STATE_MAGIC, len(head).to_bytes(8, "little"), head, *parts])


def unpack_state(data: bytes) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """`(meta, arrays)` of `pack_state` output.

    Raises:
        ValueError: a truncated or malformed state.
    """
    start = len(STATE_MAGIC) + 8
    n = int.from_bytes(data[len(STATE_MAGIC) : start], "little")
    if len(data) < start + n:
        raise ValueError(f"Cluster state is truncated. Received: {len(data)} bytes")
    head = json.loads(data[start : start + n])
    base, arrays = start + n, {}
    for name, dtype, shape, offset in head["arrays"]:
        if dtype not in _STATE_DTYPES:
            raise ValueError(f"Cluster state array {name!r} has dtype {dtype!r}")
        count = int(np.prod(shape))
        end = base + offset + count * np.dtype(dtype).itemsize
        if offset < 0 or end > len(data):
            raise ValueError(f"Cluster state array {name!r} lies outside the {len(data)} bytes")
        arrays[name] = np.frombuffer(data, dtype, count, base + offset).reshape(shape).copy()
    return head["meta"], arrays


class StreamClusters:
    """Masks, dedupes and embeds a batch once, then clusters its rows per source.

    The hot path works on distinct values, never on rows in Python: `MaskCache` masks
    each digit shape once (exact), `EmbeddingCache` embeds each masked text once, and each
    source places each distinct text once per model (a memo cleared when a consolidation
    changes the model); the distinct texts travel as the mask cache's own strings.

    Args:
        embedder: provides `masker`, `dim` and `embed_masked`.
        config: clustering settings shared by every source.
        max_sources: distinct sources kept; a batch adding more is refused.
        threshold: the bundle's calibrated threshold, used where the config sets none.

    Raises:
        ValueError: `config.max_clusters_total` cannot reserve `reserved_clusters` for
            each of `max_sources`.
    """

    def __init__(
        self,
        embedder: Embedder,
        config: StreamClusterConfig | None = None,
        max_sources: int = 64,
        threshold: float | None = None,
    ) -> None:
        self.embedder = embedder
        self.config = config or StreamClusterConfig()
        self.max_sources = max_sources
        total, reserved = self.config.max_clusters_total, self.config.reserved_clusters
        if total is not None and total < reserved * max_sources:
            raise ValueError(
                "max_clusters_total must cover reserved_clusters for each source. Received: "
                f"max_clusters_total={total}, reserved_clusters={reserved}, "
                f"max_sources={max_sources}"
            )
        self.default_threshold = threshold
        self.masks = MaskCache(embedder.masker, self.config.cache_size)
        self.cache = EmbeddingCache(embedder, self.config.cache_size)
        self.sources: dict[str, SourceClusterer] = {}
        self._lock = threading.Lock()
        # The embedding cache and the model, taken apart from `_lock` (see `_embed_new`).
        self._embed_lock = threading.Lock()

    def threshold_for(self, source: str) -> float:
        """The threshold a source clusters with (per-source override, config, bundle)."""
        return self.config.threshold_for(source, self.default_threshold)

    def label(
        self, body: pa.Array, source: pa.Array, time_ms: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, list[str], np.ndarray]:
        """Cluster ids and distances of every row.

        Returns:
            `(ids, distances, source_names, source_codes)`; the last two describe the
            `source` column dictionary-encoded, for per-source bookkeeping by the caller.

        Raises:
            LimitExceededError: the batch would exceed `max_sources`.
        """
        # One source for every row (`arrow_io.source_column` of a batch without a source
        # column) is already encoded as `dictionary_encode` would encode it.
        single = (
            isinstance(source, pa.DictionaryArray)
            and len(source.dictionary) == 1
            and len(source) > 0
            and source.null_count == 0
        )
        src = source if single else pc.dictionary_encode(source)
        names: list[str] = src.dictionary.to_pylist()
        codes = src.indices.to_numpy(zero_copy_only=False)
        with self._lock:
            new = [s for s in names if s not in self.sources]
            if len(self.sources) + len(new) > self.max_sources:
                raise LimitExceededError(
                    f"Too many distinct sources (limit {self.max_sources}). "
                    f"Received: {len(new)} new sources, e.g. {new[:3]}"
                )
            # Created under the same lock as the check: concurrent batches cannot all pass
            # it and overshoot the limit together (80 held of 64 before, issue 11).
            for name in new:
                self._source(name)
        # (u,) distinct masked texts (the mask cache's own strings), (n,) row -> text
        keys, inv = self.masks.distinct_keys(body)
        self._embed_new(keys, [self.sources.get(n) for n in names])
        with self._lock:
            if len(names) == 1:  # one source: every distinct text is its own
                ids, dist = self._source(names[0]).assign(
                    keys, self._embedder_of(keys), inv, time_ms
                )
                return ids, dist, names, codes
            ids = np.empty(inv.size, np.int32)
            dist = np.empty(inv.size, np.float32)
            for code, name in enumerate(names):
                rows = np.flatnonzero(codes == code)
                u_s, local = np.unique(inv[rows], return_inverse=True)
                keys_s = [keys[i] for i in u_s.tolist()]
                ids[rows], dist[rows] = self._source(name).assign(
                    keys_s, self._embedder_of(keys_s), local.ravel(), time_ms[rows]
                )
        return ids, dist, names, codes

    def _embed_new(self, keys: list[str], clusterers: list[SourceClusterer | None]) -> None:
        """Embeds the texts that none of the batch's sources has placed yet, before the
        clustering lock and a slice at a time: a burst of new texts on one stream then
        holds up another stream's batch for one slice, not for the whole burst (10,000
        new texts took 13.4 s of another stream's batch latency when they were encoded
        under the lock). Each slice is a `turns.checkpoint`: in the server's Label pool
        the burst gives its slot to waiting streams there. The embeddings land in the
        cache, where `assign` finds them. Every text of the batch counts here as one use
        for the cache's eviction: looked up if new to the sources, else touched."""
        miss = np.ones(len(keys), bool)
        for c in clusterers:  # one dict probe per text in C (a Python loop cost 0.6 ms)
            if c is not None:
                known = c.known_texts()
                miss &= np.fromiter(map(known.get, keys, repeat(-1)), np.int64, len(keys)) < 0
        new = [keys[i] for i in np.flatnonzero(miss).tolist()]
        if len(new) < len(keys):  # placed from the memo: still a use of their embeddings
            with self._embed_lock:
                self.cache.touch([keys[i] for i in np.flatnonzero(~miss).tolist()])
        turns.checkpoint()  # masked and probed: a waiting stream with a smaller tag goes first
        for start in range(0, len(new), _EMBED_SLICE):
            part = new[start : start + _EMBED_SLICE]
            with self._embed_lock:
                self.cache.embed(part)
            # Charged to this stream: a burst yields to the others after each slice.
            turns.checkpoint(turns.EMBED_COST * len(part))

    def _embedder_of(self, keys: list[str]) -> Callable[[np.ndarray], np.ndarray]:
        """Embeddings of `keys[idx]` through the embedding cache, computed when first
        asked (each text of the batch at most once). Not a use for the eviction again:
        `_embed_new` counted every text of the batch."""
        done = np.zeros(len(keys), bool)
        rows = np.empty((len(keys), self.embedder.dim), np.float32)  # touched when filled

        def embed(idx: np.ndarray) -> np.ndarray:
            need = np.unique(idx[~done[idx]])
            if need.size:
                with self._embed_lock:
                    rows[need] = self.cache.embed([keys[i] for i in need.tolist()], touch=False)
                done[need] = True
            return rows[idx]

        return embed

    def _source(self, name: str) -> SourceClusterer:
        clus = self.sources.get(name)
        if clus is None:
            clus = self.sources[name] = self._shared(
                SourceClusterer(name, self.config, self.embedder.dim, self.threshold_for(name))
            )
        return clus

    def _shared(self, clus: SourceClusterer) -> SourceClusterer:
        """Puts `clus` under `max_clusters_total` (when set) and the shared memo."""
        if self.config.max_clusters_total is not None:
            clus.room = partial(self._room_of, clus)
        clus.memo_limit = self._memo_limit
        return clus

    def _memo_limit(self) -> int:
        """Memo entries a source may hold: `memo_size` for each of `max_sources` is what
        the memory budget allows, shared by the sources present (at most `cache_size`
        each: an older text's embedding must still be cached to place it again)."""
        cfg = self.config
        share = cfg.memo_size * self.max_sources // max(len(self.sources), 1)
        return min(cfg.cache_size, share)

    def _room_of(self, clus: SourceClusterer) -> int:
        """Clusters `clus` may still open under `max_clusters_total`: what is left of its
        `reserved_clusters`, plus what no source claims. Every source, present or still to
        come, keeps its reserve; the rest goes first come first served."""
        total, reserved = self.config.max_clusters_total, self.config.reserved_clusters
        assert total is not None  # only set as `room` when there is a total
        present = list(self.sources.values())
        claimed = sum(max(c.k, reserved) for c in present)
        claimed += reserved * max(self.max_sources - len(present), 0)
        return max(reserved - clus.k, 0) + max(total - claimed, 0)

    def describe(
        self, source: str | None = None, ids: set[int] | None = None
    ) -> list[tuple[str, ClusterStats]]:
        """`(source, stats)` of every cluster (or of `ids` only), sorted by source then id."""
        with self._lock:
            chosen = sorted(s for s in self.sources if source is None or s == source)
            clusterers = [self.sources[s] for s in chosen]
        return [(c.source, st) for c in clusterers for st in c.describe(ids)]

    def aliases(self) -> dict[tuple[str, int], int]:
        """`(source, merged id) -> surviving id` of every source."""
        with self._lock:
            clusterers = list(self.sources.values())
        return {(c.source, g): t for c in clusterers for g, t in dict(c.aliases).items()}

    def counts(self) -> dict[str, tuple[int, int]]:
        """Per source: clusters held, and rows forced into a cluster past `max_clusters`
        (cumulative)."""
        with self._lock:
            return {name: (c.k, c.cap_hits) for name, c in self.sources.items()}

    def forget(self, source: str) -> bool:
        """Drops a source's clusters (its slot is free again); False when unknown."""
        with self._lock:
            return self.sources.pop(source, None) is not None

    def evict_idle(self, before_ms: int) -> list[str]:
        """Drops the sources whose last batch came before `before_ms`; returns them."""
        with self._lock:
            gone = [n for n, c in self.sources.items() if c.last_batch_ms < before_ms]
            for name in gone:
                del self.sources[name]
        return gone

    def take_dirty_parts(self) -> dict[str, tuple[bytes | None, bytes]]:
        """`SourceClusterer.take_state` of each source changed since the last call.

        Each source is encoded under its own lock only: holding the lock of every source
        while all of them were encoded stalled every stream for the whole flush (33 busy
        sources: a light client's batches waited up to 170 ms once a second)."""
        with self._lock:
            dirty = [(name, c) for name, c in self.sources.items() if c.dirty]
        return {name: c.take_state() for name, c in dirty}

    def load_states(
        self, states: dict[str, bytes], counters: dict[str, bytes] | None = None
    ) -> None:
        """Restores sources, with their counters saved since (`take_dirty_parts`); a state
        that does not fit (other bundle) is skipped, logged."""
        counters = counters or {}
        with self._lock:
            for name, data in states.items():
                try:
                    clus = SourceClusterer.from_bytes(
                        data, self.config, self.embedder.dim, self.threshold_for(name)
                    )
                except (ValueError, KeyError, OSError) as e:
                    logger.warning("ignoring stored cluster state of %r: %s", name, e)
                    continue
                if name in counters:
                    try:
                        clus.load_counters(counters[name])
                    except (ValueError, KeyError) as e:
                        logger.warning("ignoring stored counters of %r: %s", name, e)
                self.sources[name] = self._shared(clus)

    def wait_for_consolidations(self, timeout: float | None = None) -> None:
        """Blocks until background consolidations of every source finish."""
        with self._lock:
            clusterers = list(self.sources.values())
        for c in clusterers:
            c.wait_for_consolidation(timeout)
