"""Online clustering of one source's stream, by distance, with ids that stay stable.

Behaviour (settings in `StreamClusterConfig`; the rule itself in `logclust.cluster.threshold`):

1. **Placement.** Each distinct masked text joins the nearest cluster whose centroid is
   within the threshold, else opens a new cluster at once (no warm-up, no k, no -1).
   Centroids are running means of their distinct members; a memo (`PlacementMemo`) keeps
   what the current model gave each text, so a steady stream places each text once.
2. **Cap.** At most `max_clusters` per source and `max_clusters_total` over all sources
   (the router's `room`); past its cap a far text joins its nearest cluster, counted.
3. **Consolidation** (`consolidation_job`, then `apply_consolidation`): centroids are
   recomputed from a reservoir sample, drifted members placed again (the larger part keeps
   the id), and clusters whose centroids came within the threshold merge: the larger keeps
   its id, the other becomes its alias (`ClusterStats.merged_into`). When, and on which
   thread, is the `ConsolidationRunner`'s business.
4. **Groups** (`logclust.cluster.groups`): a new cluster joins a group by meaning; prose
   is placed by topic (`logclust.cluster.prose_topics`), its clusters are its groups.
5. **State** is exported as a `SourceState` and `SourceCounters`, which
   `logclust.cluster.state` encodes without pickle, so ids survive restarts. Changes are
   counted (`revision`); `mark_saved` tells the clusterer what the store confirmed holding.

Only masked text is kept, never raw bodies. The clusterer knows nothing of threads or files:
its caller serialises the calls (the `ConsolidationRunner` holds the source's lock); its
one clock stamps the last batch (`last_batch_ms`: idle sources are evicted).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import numpy as np

from logclust.cluster.config import StreamClusterConfig
from logclust.cluster.descriptions import ClusterStats
from logclust.cluster.forms import FormIndex
from logclust.cluster.groups import GroupIndex
from logclust.cluster.id_stats import IdStats
from logclust.cluster.local_ids import LocalIds
from logclust.cluster.memo import PlacementMemo
from logclust.cluster.reservoir import Reservoir
from logclust.cluster.source_state import Revisions, SourceCounters, SourceState
from logclust.cluster.templates import (
    Match,
    TemplateIndex,
    is_structured,
    shape_of,
    template_settings,
)
from logclust.cluster.threshold import Centroids, Consolidation, ConsolidationJob, place
from logclust.text.prose import is_prose

logger = logging.getLogger(__name__)


def _wall_ms() -> int:
    return int(time.time() * 1000)


class SourceClusterer(Revisions):
    """Online clustering state of one source (see the module docstring). Not thread-safe.

    Args:
        source: the source's name.
        config: clustering settings.
        dim: embedding dimension.
        threshold: distance within which a text joins a cluster (see
            `StreamClusterConfig.threshold_for`).
        groups: the groups of the clusters (`logclust.cluster.groups`); None: groups at
            the fallback threshold over the whole embedding.
    """

    def __init__(
        self,
        source: str,
        config: StreamClusterConfig,
        dim: int,
        threshold: float,
        groups: GroupIndex | None = None,
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
        self._live_of: np.ndarray | None = None  # id -> live id, rebuilt after merges
        self._stats = IdStats(config.template_members)
        self._sample = Reservoir(config.reservoir_size, dim, config.seed)
        self._memo = PlacementMemo()
        self._templates = TemplateIndex(template_settings(config)) if config.templates else None
        # Clusters that templates own: consolidation never merges nor splits them.
        self._templated: set[int] = set()
        # Clusters templates do not own (structured bodies', or a state's saved before
        # templates): only while one exists does a new form need its embedding.
        self._free: set[int] = set()
        # Bodies' fields -> their cluster; the clusters XML elements own (never merged).
        self._forms = FormIndex(min(config.cache_size, config.memo_size))
        self._structural: set[int] = set()
        self.groups = groups or GroupIndex(config.group_threshold_for(None))
        self.rows_seen = 0
        # Rows offered to the reservoir (with templates: structured bodies' rows only).
        self._sampled = 0
        # Wall-clock time of the last batch (Unix ms): idle sources are evicted by it.
        self.last_batch_ms = _wall_ms()
        self.cap_hits = 0
        self.consolidations = 0
        # Clusters this source may still open under a bound shared by all sources (set by
        # `StreamClusters` from `max_clusters_total`); None: up to `max_clusters`.
        self.room: Callable[[], int] | None = None
        # Texts the memo may hold now (set by `StreamClusters`: a share of the memo of
        # every source, so one busy source is not held to the worst case's share).
        self.memo_limit: Callable[[], int] = lambda: min(config.cache_size, config.memo_size)
        Revisions.__init__(self)
        # The digest of the catalog this clusterer started from (None: none), not saved.
        self.catalog_digest: str | None = None
        # External ids of local kinds under a fleet catalog (`logclust.cluster.local_ids`).
        self.local_ids: LocalIds | None = None

    @property
    def k(self) -> int:
        """Clusters in use (aliases not counted)."""
        return self._table.k

    @property
    def stats(self) -> dict[int, ClusterStats]:
        """Templates, members and state per id (sizes and times: `describe`)."""
        return self._stats.stats

    # -- placement -----------------------------------------------------------------------

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
        ids, dist, uid = self.place(keys, embed, inv)
        self.count(keys, uid, ids, time_ms)
        return ids, dist

    def place(
        self, keys: list[str], embed: Callable[[np.ndarray], np.ndarray], inv: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """`assign` without `count` (clusters may open, no row is counted): per row
        `(ids, distances)` as `assign` returns them, and `uid`, `(u,)` the id of each text."""
        self.last_batch_ms = _wall_ms()
        self._offer_sample(keys, embed, inv)
        uid, d = self._assign_known(keys, embed)
        return uid[inv], d[inv], uid

    def count(self, keys: list[str], uid: np.ndarray, ids: np.ndarray, time_ms: np.ndarray) -> None:
        """Adds placed rows (`place`'s `uid` and `ids`) to their clusters' sizes, times
        and members. Ids merged since their placement count for their survivors."""
        if self.aliases:
            uid, ids = self._live_ids(uid), self._live_ids(ids)
        self.rows_seen += ids.size
        members_changed = self._stats.add_batch(keys, uid, ids, time_ms)
        self._touch(model=members_changed)

    def _live_ids(self, ids: np.ndarray) -> np.ndarray:
        """`_live` of every id, through a table rebuilt after merges."""
        if self._live_of is None or self._live_of.size < self._next_id:
            self._live_of = np.arange(max(self._next_id, 1), dtype=np.int32)
            for gone, into in self.aliases.items():
                self._live_of[gone] = into
        return self._live_of[ids]

    def _offer_sample(
        self, keys: list[str], embed: Callable[[np.ndarray], np.ndarray], inv: np.ndarray
    ) -> None:
        """Offers the batch's rows to the reservoir: with templates (whose clusters are
        never merged nor split), only structured bodies (a line is not embedded)."""
        if self._templates is not None:
            bodies = np.fromiter(map(is_structured, keys), bool, len(keys))
            if not bodies.any():
                return
            inv = inv[bodies[inv]]
        self._sample.offer(self._sampled, keys, embed, inv)
        self._sampled += inv.size

    def _assign_known(
        self, keys: list[str], embed: Callable[[np.ndarray], np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Placement through the memo (bounded by `memo_limit`): templates first, then
        the embedding for new forms."""
        slot, miss = self._memo.find(keys, self.memo_limit())
        refits = self.groups.prose.refits
        if miss.size:
            if self._templates is None:
                emb = embed(miss)
                uid, d = self._place(emb)
                self.groups.add_clusters(uid, emb, [keys[i] for i in miss.tolist()])
            else:
                uid, d = self._place_by_templates(keys, miss, embed)
            self._touch(model=True)
            self._memo.store(keys, slot, miss, uid, d)
        out = self._memo.values(slot)
        if self.groups.prose.refits != refits:  # new topics: prose texts are placed again
            self._remap_memo(np.fromiter(self.groups.prose_clusters(), np.int32))
        return out

    def _place_by_templates(
        self, keys: list[str], miss: np.ndarray, embed: Callable[[np.ndarray], np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Ids and distances of the texts `keys[miss]`. Lines, in order: a line that fits
        a template takes its cluster (distance 0, no embedding); a new form opens a
        cluster at once and becomes a template the next lines can match. Structured
        bodies (JSON, XML, forms) are placed by their embeddings, as without templates."""
        assert self._templates is not None
        uid = np.empty(miss.size, np.int32)
        dist = np.zeros(miss.size, np.float32)
        bodies: list[int] = []
        texts = [keys[i] for i in miss.tolist()]
        prose = self.groups.prose_points(texts, self.config.prose)
        if prose:  # together, by topic; at the cap, each joins its nearest topic
            opener, cap = self._open_templated, self._table.k >= self._cap()
            self.groups.place_prose(texts, prose, (uid, dist), embed, miss, opener, cap)
        for j, i in enumerate(miss.tolist()):
            if j in prose:
                continue
            if is_structured(keys[i]):
                bodies.append(j)
                continue
            shape = shape_of(keys[i])
            found = self._templates.match(shape)
            self._merge_all(found)
            if found.cid is not None:
                uid[j] = self._live(found.cid)
                continue
            uid[j], dist[j] = self._open_for_template(embed, miss[j : j + 1])
            self._templates.add(shape, int(uid[j]))
            if self.config.line_groups and int(uid[j]) not in self.groups.of:
                self.groups.add_cluster(int(uid[j]), embed(miss[j : j + 1])[0], keys[i])
        if bodies:
            body_texts = [texts[j] for j in bodies]
            self._place_bodies(body_texts, bodies, (uid, dist), lambda idx: embed(miss[idx]))
        return uid, dist

    def _place_bodies(
        self,
        texts: list[str],
        rows: list[int],
        out: tuple[np.ndarray, np.ndarray],
        embed: Callable[[np.ndarray], np.ndarray],
    ) -> None:
        """Structured bodies `texts` (at `rows` of `out`, `(ids, distances)`): see
        `FormIndex.plan`; a body of a new XML skeleton or named kind gets its own cluster."""
        uid, dist = out
        plan = self._forms.plan(texts, rows)
        for j, cid in plan.known:
            uid[j] = self._live(cid)
        if plan.left:
            idx = np.array(plan.left, np.int64)
            emb = embed(idx)
            own = np.isin(idx, list(plan.apart))
            uid[idx[~own]], dist[idx[~own]] = self._place(emb[~own])
            if own.any():  # a new kind opens a cluster, or joins one of no known kind
                at, e, ok = idx[own], emb[own], np.zeros(int(own.sum()), bool)
                if self._table.k:
                    near, d = self._table.nearest(e)
                    kinds = [plan.apart[j] for j in at.tolist()]
                    ok = self._forms.joinable(self._ids[near], d <= self.threshold, kinds)
                uid[at[ok]], dist[at[ok]] = self._place(e[ok])
                uid[at[~ok]], dist[at[~ok]] = self._place(e[~ok], -1.0)  # below 0: one each
                self._structural.update(uid[at].tolist())
            text_of = dict(zip(rows, texts, strict=True))
            self.groups.add_clusters(uid[idx], emb, [text_of[j] for j in plan.left])
        for j, lead in plan.later:
            uid[j], dist[j] = uid[lead], dist[lead]
        self._forms.add({keys: int(uid[j]) for keys, j in plan.first.items()})

    def _open_for_template(
        self, embed: Callable[[np.ndarray], np.ndarray], idx: np.ndarray
    ) -> tuple[int, float]:
        """The cluster of a new form, opened at once. Its embedding (`embed(idx)`) is
        asked for only when a cluster templates do not own exists (a cluster of a
        structured body, or of a state saved without templates: the form joins the
        nearest within the threshold, so that ids survive the upgrade) or at the cap (the
        nearest, counted); otherwise the new cluster's centroid stays empty (templates
        own it: nothing places by it)."""
        cap = self._cap()
        if not self._free and self._table.k < cap:
            return self._open_templated(None), 0.0
        x = embed(idx)[0]
        if self._table.k:
            row, dist = self._table.nearest(x[None, :])
            r, d = int(row[0]), float(dist[0])
            cid = int(self._ids[r])
            joins = d <= self.threshold and cid in self._free
            if joins or self._table.k >= cap:
                if not joins:
                    self._log_cap(cap)
                    self.cap_hits += 1
                self._table.add(np.array([r]), x[None, :])
                self._templated.add(cid)
                self._free.discard(cid)
                return cid, d
        return self._open_templated(x), 0.0

    def group_ids(self, ids: np.ndarray) -> np.ndarray:
        """`(n,)` int64 group id of each cluster id (see `GroupIndex.group_ids`)."""
        return self.groups.group_ids(ids, self.aliases)

    def _open_templated(self, x: np.ndarray | None = None) -> int:
        """A new cluster that templates own (an empty centroid without `x`)."""
        self._table.open(np.zeros(self.dim, np.float32) if x is None else x)
        cid = self._next_id
        self._next_id += 1
        self._ids = np.append(self._ids, np.int32(cid))
        self._templated.add(cid)
        return cid

    def _merge_all(self, found: Match) -> None:
        """Records the merges a template change caused (see `_merge`)."""
        for gone, into in found.merged:
            self._merge(self._live(gone), self._live(into))

    def _merge(self, gone: int, into: int) -> None:
        """Cluster `gone` becomes an alias of `into` (its centroid rows give `into`)."""
        if gone == into:
            return
        self._alias(gone, into)
        self._templated.discard(gone)
        self._free.discard(gone)
        self._ids[self._ids == gone] = into
        self._remap_memo(np.zeros(0, np.int32))
        if self._templates is not None:
            self._templates.remap({gone: into})
        self._touch(model=True)

    def _live(self, cid: int) -> int:
        """The id a cluster id lives on as (itself unless merged)."""
        return self.aliases.get(cid, cid)

    @property
    def template_index(self) -> TemplateIndex | None:
        """The source's templates (None: templates off); read it, do not change it."""
        return self._templates

    def fits(self, text: str) -> bool:
        """Whether `text` is placed without its embedding: in the memo, a line that fits
        a template, or a new line while templates own every cluster and log templates are
        their own groups (see `_open_for_template`; with `line_groups` a new form needs
        its meaning), or prose placed by word vectors. Reads only this source, without
        its lock: a stale answer costs an embedding, or one computed in `assign`."""
        if text in self._memo.texts():
            return True
        if self._templates is None or is_structured(text):
            return False
        if self.config.prose and is_prose(text):  # by word vectors, if the bundle has them
            return self.groups.prose_embed is not None
        # No `_cap()` here (it reads other sources); at the cap `assign` embeds on demand.
        return (not self._free and not self.config.line_groups) or self._templates.fits(text)

    def known_texts(self) -> dict[str, int]:
        """The memo (text -> slot); read without the lock, only to skip work (a text
        found here may still be placed again by `assign`)."""
        return self._memo.texts()

    def _place(self, emb: np.ndarray, at: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        k0, cap = self._table.k, self._cap()
        cidx, d, forced = place(emb, self._table, self.threshold if at is None else at, cap)
        opened = self._table.k - k0
        if opened:
            fresh = np.arange(self._next_id, self._next_id + opened, dtype=np.int32)
            self._next_id += opened
            self._ids = np.concatenate([self._ids, fresh])
            self._free.update(fresh.tolist())
        if forced:
            self._log_cap(cap)
            self.cap_hits += forced
        return self._ids[cidx], d

    def _log_cap(self, cap: int) -> None:
        if self.cap_hits == 0:
            logger.warning(
                "source %r reached its cap of %d clusters (max_clusters=%d, "
                "max_clusters_total=%s): far lines now join their nearest cluster "
                "(counted in logclust_cluster_cap_hits_total)",
                *(self.source, cap, self.config.max_clusters, self.config.max_clusters_total),
            )

    def _cap(self) -> int:
        """Clusters this source may hold now: `max_clusters`, or fewer while the bound
        shared with the other sources leaves no more room (never below 1)."""
        cap = self.config.max_clusters
        if self.room is not None:
            cap = min(cap, self._table.k + max(self.room(), 0))
        return max(cap, 1)

    # -- consolidation -------------------------------------------------------------------

    def consolidation_job(self) -> ConsolidationJob | None:
        """What a consolidation of the clusters now starts from; None without clusters."""
        k = self._table.k
        if k == 0:
            return None
        self._stats.grow(self._next_id)
        sizes = self._stats.size[self._ids]
        emb, texts = self._sample.contents(self._sampled)
        _, first = np.unique(texts, return_index=True)
        return ConsolidationJob(
            self._table.unit,
            self._table.counts[:k].copy(),
            sizes,
            emb[np.sort(first)],
            k,
            self._cap(),
            self.threshold,
            self._fixed_rows(),
        )

    def _fixed_rows(self) -> np.ndarray:
        """`(k,)` rows of clusters templates or body kinds own (never merged or split)."""
        fixed = self._templated | self._structural
        if not fixed:
            return np.zeros(self._table.k, bool)
        return np.isin(self._ids, np.fromiter(fixed, np.int32))

    def apply_consolidation(self, job: ConsolidationJob, done: Consolidation) -> None:
        """Swaps in the result `done` of `job`; clusters opened since `job` was made stay
        as they are."""
        k_now = self._table.k
        old_ids = self._ids
        later = slice(job.k, k_now)
        split_ids = np.arange(self._next_id, self._next_id + done.split_off, dtype=np.int32)
        self._next_id += done.split_off
        if k_now > job.k:
            centroids = np.concatenate([done.centroids, self._table.unit_rows(later)])
            counts = np.concatenate([done.counts, self._table.counts[later]])
        else:  # nothing opened meanwhile: no (k, dim) copy
            centroids, counts = done.centroids, done.counts
        self._table = Centroids.of(centroids, counts, own=True)
        self._ids = np.concatenate([old_ids[done.kept], split_ids, old_ids[later]])
        for src, dst in done.merged.items():
            if src < job.k:
                self._alias(int(old_ids[src]), int(old_ids[dst]) if dst < job.k else None)
        if self._templates is not None and done.merged:
            self._templates.remap(dict(self.aliases))
            self._templated -= set(self.aliases)
        self._free -= set(self.aliases)
        self._free.update(split_ids.tolist())
        self.consolidations += 1
        self._touch(model=True)
        if done.changed:
            was_split = old_ids[list(done.split)]
            self._remap_memo(was_split)
            survivors = [self.aliases.get(int(old_ids[s]), -1) for s in done.merged if s < job.k]
            self._stats.look_again(np.concatenate([was_split, np.array(survivors, np.int32)]))
            logger.info(
                "source %r consolidated: %d merged, %d split off, k=%d",
                self.source,
                len(done.merged),
                done.split_off,
                self._table.k,
            )

    def _remap_memo(self, split_ids: np.ndarray) -> None:
        """The memo's merged ids point at their survivors; texts of `split_ids` go again."""
        to = np.arange(max(self._next_id, 1), dtype=np.int32)
        for gone, into in self.aliases.items():
            to[gone] = into
        to[split_ids] = -1
        self._memo.remap(to)

    def _alias(self, gone: int, into: int | None) -> None:
        """Records that id `gone` was merged into `into` (sizes and members move)."""
        if into is None or gone == into:
            return
        self.aliases[gone] = into
        self._live_of = None
        for g, t in list(self.aliases.items()):  # keep every alias pointing at a live id
            if t == gone:
                self.aliases[g] = into
        self._stats.merge(gone, into)

    def skip_ids(self, next_id: int) -> None:
        """Ids below `next_id` are never opened from now on (given before by another)."""
        if next_id > self._next_id:
            self._next_id = next_id
            self._touch(model=True)

    def describe(self, ids: set[int] | None = None) -> list[ClusterStats]:
        """Copies of every cluster's stats (or of `ids` only), merged ones included
        (`merged_into` set), each with its group."""
        out = self._stats.describe(ids)
        groups = self.group_ids(np.array([s.cluster_id for s in out], np.int64))
        for st, g in zip(out, groups.tolist(), strict=True):
            st.group_id = g
        return out

    def _touch(self, model: bool) -> None:
        if model:
            self.groups.changed()
        self.bump(model)

    # -- state ---------------------------------------------------------------------------

    def state(self) -> SourceState:
        """The clusters as a state saves them (no reservoir, no memo)."""
        return SourceState(
            source=self.source,
            dim=self.dim,
            threshold=self.threshold,
            next_id=self._next_id,
            rows_seen=self.rows_seen,
            last_batch_ms=self.last_batch_ms,
            cap_hits=self.cap_hits,
            consolidations=self.consolidations,
            aliases=self.aliases,
            stats=[self._stats.copy_of(s) for s in self._stats.stats.values()],
            table=self._table,
            ids=self._ids,
            templates=self._templates.to_doc() if self._templates else None,
            groups=self.groups.to_doc(),
        )

    def counters(self) -> SourceCounters:
        """The counters of every id (views of the clusterer's arrays)."""
        n = self._next_id
        self._stats.grow(n)
        s = self._stats
        return SourceCounters(
            self.rows_seen,
            self.last_batch_ms,
            self.cap_hits,
            n,
            s.size[:n],
            s.first[:n],
            s.last[:n],
        )

    @classmethod
    def restored(
        cls,
        state: SourceState,
        config: StreamClusterConfig,
        threshold: float,
        saved: bool,
        groups: GroupIndex | None = None,
    ) -> SourceClusterer:
        """A clusterer holding `state`, clustering at `threshold` from now on (a changed
        setting applies); `saved`: the store holds `state` as it is (not an older format
        to write again)."""
        self = cls(state.source, config, state.dim, threshold, groups)
        self._next_id, self.rows_seen = state.next_id, state.rows_seen
        self.consolidations = state.consolidations
        self.cap_hits = state.cap_hits
        if state.last_batch_ms is not None:
            self.last_batch_ms = state.last_batch_ms
        self.aliases = dict(state.aliases)
        self._live_of = None
        self._stats.restore(state.stats, state.next_id)
        self._table, self._ids = state.table, state.ids
        self._structural = self._forms.restore(state.stats)
        if config.templates and state.templates:
            self._templates = TemplateIndex.from_doc(state.templates, template_settings(config))
            self._templated = self._templates.cluster_ids()
        self._templated |= self.groups.prose_clusters()
        self._free = set(self._ids.tolist()) - self._templated - set(self.aliases)
        if saved:
            self.mark_saved(self._revision, model=True)
        return self

    def set_counters(self, counters: SourceCounters) -> None:
        """Applies counters saved after (or with) the state this clusterer holds.

        Raises:
            ValueError: counters of ids this state does not have.
        """
        c, n = counters, counters.next_id
        if n > self._next_id or any(len(a) != n for a in (c.size, c.first, c.last)):
            raise ValueError(
                f"Counters do not fit the state of source {self.source!r}. "
                f"Received: next_id={n} for a state with {self._next_id}"
            )
        self._stats.set_counters(c.size, c.first, c.last, n)
        self.rows_seen = c.rows_seen
        self.last_batch_ms = c.last_batch_ms
        self.cap_hits = c.cap_hits
