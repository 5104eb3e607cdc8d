"""Online clustering of a stream, per source: the router in front of each source's
clusterer (`logclust.cluster.source` says how one source is clustered).

A batch is masked, deduplicated and embedded once, then its rows go to the clusterer of
their source (`SourceClusterer`, behind its `ConsolidationRunner`). The router bounds the
sources (`max_sources`), shares the cluster pool (`max_clusters_total`) and the placement
memo among them, evicts idle ones, and hands the flush their changed state
(`dirty_parts`, then `mark_saved` once the store holds it).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from itertools import repeat

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from logclust.cluster.catalog import Catalog
from logclust.cluster.config import StreamClusterConfig
from logclust.cluster.descriptions import ClusterStats
from logclust.cluster.groups import GroupIndex
from logclust.cluster.local_ids import LocalIds
from logclust.cluster.runner import ConsolidationRunner
from logclust.cluster.source import SourceClusterer
from logclust.cluster.state import SourceParts, encode_parts, from_bytes, load_counters
from logclust.embed.embedding_cache import Embedder, EmbeddingCache
from logclust.text.mask_cache import MaskCache
from logclust.turns import EMBED_COST, checkpoint
from logclust.wire.contract import LimitExceededError

logger = logging.getLogger(__name__)

# New texts embedded per hold of the model before the clustering lock (two calls of the
# sidecar's encoder batch): what another stream may wait for in a burst.
_EMBED_SLICE = 16


@dataclass(frozen=True)
class _Part:
    """One source's share of a placement: its source, distinct texts, their ids, and its
    rows of the batch (None: every row)."""

    name: str
    runner: ConsolidationRunner
    keys: list[str]
    uid: np.ndarray
    rows: np.ndarray | None


@dataclass(frozen=True)
class Placement:
    """A batch placed by `StreamClusters.place`, not counted yet.

    Attributes:
        ids: `(n,)` int32 stable cluster id of each row.
        distances: `(n,)` float32 distance to the centroid of the row's cluster.
        source_names: distinct sources of the batch.
        source_codes: `(n,)` index into `source_names` of each row.
        time_ms: `(n,)` event times.
    """

    ids: np.ndarray
    distances: np.ndarray
    source_names: list[str]
    source_codes: np.ndarray
    time_ms: np.ndarray
    parts: list[_Part]


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
        group_threshold: the bundle's calibrated group threshold (`logclust.cluster.groups`),
            used where the config sets none.
        semantic_from: where the semantic channel starts in an embedding (0: groups use
            the whole embedding).

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
        group_threshold: float | None = None,
        semantic_from: int = 0,
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
        self.group_threshold = self.config.group_threshold_for(group_threshold)
        self.semantic_from = semantic_from
        # A prose text's point from the bundle's word vectors (None: the embedding's).
        self.prose_embed: Callable[[list[str]], np.ndarray] | None = getattr(
            embedder, "prose_embed", None
        )
        self.masks = MaskCache(
            embedder.masker, self.config.mask_cache_size, messages=not self.config.keep_headers
        )
        self.cache = EmbeddingCache(embedder, self.config.cache_size)
        self._runners: dict[str, ConsolidationRunner] = {}
        self._lock = threading.Lock()
        # The fleet's catalog (`use_catalog`): its sources start from its clusters.
        self.catalog: Catalog | None = None
        # The embedding cache and the model, taken apart from `_lock` (see `_embed_new`).
        self._embed_lock = threading.Lock()

    @property
    def sources(self) -> dict[str, SourceClusterer]:
        """Each source's clusterer, in a new dict (for tools and tests: a clusterer is
        changed by batches and consolidations while it is read)."""
        with self._lock:
            return {name: r.clusterer for name, r in self._runners.items()}

    def threshold_for(self, source: str) -> float:
        """The threshold a source clusters with (per-source override, config, bundle)."""
        return self.config.threshold_for(source, self.default_threshold)

    def label(
        self, body: pa.Array, source: pa.Array, time_ms: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, list[str], np.ndarray]:
        """Cluster ids and distances of every row, counted (`place`, then `count`).

        Returns:
            `(ids, distances, source_names, source_codes)`; the last two describe the
            `source` column dictionary-encoded, for per-source bookkeeping by the caller.

        Raises:
            LimitExceededError: the batch would exceed `max_sources`.
        """
        placed = self.place(body, source, time_ms)
        self.count(placed)
        return placed.ids, placed.distances, placed.source_names, placed.source_codes

    def place(self, body: pa.Array, source: pa.Array, time_ms: np.ndarray) -> Placement:
        """Places every row (clusters may open) and counts none: give the placement to
        `count`, or drop it (a caller that left: its rows were never seen).

        Raises:
            LimitExceededError: the batch would exceed `max_sources`.
        """
        names, codes = encoded_sources(source)
        runners = self._admit(names)
        # (u,) distinct masked texts (the mask cache's own strings), (n,) row -> text
        keys, inv = self.masks.distinct_keys(body)
        self._embed_new(keys, [r.clusterer for r in runners])
        with self._lock:
            if len(names) == 1:  # one source: every distinct text is its own
                runner = self._runner(names[0])
                ids, dist, uid = runner.place(keys, self._embedder_of(keys), inv)
                part = _Part(names[0], runner, keys, uid, None)
                return Placement(ids, dist, names, codes, time_ms, [part])
            ids = np.empty(inv.size, np.int32)
            dist = np.empty(inv.size, np.float32)
            parts = []
            for code, name in enumerate(names):
                runner = self._runner(name)
                rows = np.flatnonzero(codes == code)
                u_s, local = np.unique(inv[rows], return_inverse=True)
                keys_s = [keys[i] for i in u_s.tolist()]
                ids[rows], dist[rows], uid = runner.place(
                    keys_s, self._embedder_of(keys_s), local.ravel()
                )
                parts.append(_Part(name, runner, keys_s, uid, rows))
        return Placement(ids, dist, names, codes, time_ms, parts)

    def count(self, placed: Placement) -> None:
        """Adds `placed`'s rows to their clusters' sizes, times and members. A source
        started again from a catalog since the placement (`use_catalog`, which carries
        each id's counters over) counts them in its new clusterer, so no row is lost."""
        with self._lock:  # as `place`: the router's lock, then the source's
            for p in placed.parts:
                rows = slice(None) if p.rows is None else p.rows
                runner = self._runners.get(p.name, p.runner)
                runner.count(p.keys, p.uid, placed.ids[rows], placed.time_ms[rows])

    def group_ids(self, names: list[str], codes: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """`(n,)` int64 group id of each row, given `label`'s ids and source codes."""
        with self._lock:
            clusterers = [self._runners[n].clusterer if n in self._runners else None for n in names]
        out = ids.astype(np.int64)
        for code, clus in enumerate(clusterers):
            if clus is None:  # forgotten meanwhile: each cluster its own group
                continue
            rows = codes == code if len(names) > 1 else slice(None)
            out[rows] = clus.group_ids(ids[rows])
        return out

    def groups(self, source: str) -> dict[int, list[int]]:
        """Group id -> its cluster ids, of one source (empty when unknown)."""
        with self._lock:
            runner = self._runners.get(source)
        if runner is None:
            return {}
        with runner.lock:
            return runner.clusterer.groups.members()

    def group_aliases(self) -> dict[tuple[str, int], int]:
        """`(source, cluster id) -> group id` of every cluster of every source whose group
        is not itself (what a latency query by group merges)."""
        with self._lock:
            runners = list(self._runners.values())
        out: dict[tuple[str, int], int] = {}
        for r in runners:
            with r.lock:
                c = r.clusterer
                top = max(max(c.groups.of, default=-1), max(c.aliases, default=-1))
                every = np.arange(top + 1, dtype=np.int32)
                for cid, gid in zip(every.tolist(), c.group_ids(every).tolist(), strict=True):
                    if cid != gid:
                        out[(c.source, cid)] = gid
        return out

    def _admit(self, names: list[str]) -> list[ConsolidationRunner]:
        """The runners of the batch's sources, new ones created.

        Raises:
            LimitExceededError: the batch would exceed `max_sources`.
        """
        with self._lock:
            new = [s for s in names if s not in self._runners]
            if len(self._runners) + len(new) > self.max_sources:
                raise LimitExceededError(
                    f"Too many distinct sources (limit {self.max_sources}). "
                    f"Received: {len(new)} new sources, e.g. {new[:3]}"
                )
            # Created under the same lock as the check: concurrent batches cannot all pass
            # it and overshoot the limit together.
            return [self._runner(name) for name in names]

    def _embed_new(self, keys: list[str], clusterers: list[SourceClusterer]) -> None:
        """Embeds the texts that none of the batch's sources has placed yet, before the
        clustering lock and a slice at a time: a burst of new texts on one stream then
        holds up another stream's batch for one slice, not for the whole burst. Each slice
        is a `turns.checkpoint`: in the server's Label pool the burst gives its slot to
        waiting streams there. The embeddings land in the cache, where `assign` finds
        them. Every text of the batch counts here as one use for the cache's eviction:
        looked up if new to the sources, else touched."""
        miss = np.ones(len(keys), bool)
        for c in clusterers:  # one dict probe per text in C, not a Python loop
            known = c.known_texts()
            miss &= np.fromiter(map(known.get, keys, repeat(-1)), np.int64, len(keys)) < 0
        for i in np.flatnonzero(miss).tolist():  # new texts of known templates: no embedding
            if all(c.fits(keys[i]) for c in clusterers):
                miss[i] = False
        new = [keys[i] for i in np.flatnonzero(miss).tolist()]
        if len(new) < len(keys):  # placed from the memo: still a use of their embeddings
            with self._embed_lock:
                self.cache.touch([keys[i] for i in np.flatnonzero(~miss).tolist()])
        checkpoint()  # masked and probed: a waiting stream with a smaller tag goes first
        for start in range(0, len(new), _EMBED_SLICE):
            part = new[start : start + _EMBED_SLICE]
            with self._embed_lock:
                self.cache.embed(part)
            # Charged to this stream: a burst yields to the others after each slice.
            checkpoint(EMBED_COST * len(part))

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

    def _runner(self, name: str) -> ConsolidationRunner:
        """The runner of source `name`, created when new (call with `_lock` held)."""
        runner = self._runners.get(name)
        if runner is None:
            runner = self._runners[name] = self._shared(self._new_clusterer(name))
        return runner

    def _new_clusterer(self, name: str, after: SourceClusterer | None = None) -> SourceClusterer:
        """A clusterer of `name`: the catalog's clusters when it has the source. Ids that
        `after`, the clusterer it replaces, gave are never given again, and its counters
        (rows, each id's size and times) carry over."""
        threshold = self.threshold_for(name)
        if self.catalog is None or name not in self.catalog.states:
            groups = GroupIndex(self.group_threshold, self.semantic_from)
            clus = SourceClusterer(name, self.config, self.embedder.dim, threshold, groups)
            if self.catalog is not None:  # a source the catalog lacks: every id local
                clus.local_ids = LocalIds(name, 0)
            return clus
        clus = self.catalog.clusterer(
            name, self.config, threshold, (self.group_threshold, self.semantic_from)
        )
        clus.catalog_digest = self.catalog.digest
        if after is not None:
            counters = after.counters()
            clus.skip_ids(counters.next_id)
            clus.set_counters(counters)
            if after.local_ids is not None and clus.local_ids is not None:
                clus.local_ids.carry(after.local_ids)
        return clus

    def use_catalog(self, catalog: Catalog | None) -> list[str]:
        """Serves `catalog` from the next batch on: each source it has that was not
        started from it starts again from its clusters, between two batches (a batch is
        labelled wholly by the old clusters or wholly by the new). Returns those sources.

        Raises:
            ValueError: a catalog of another embedding dimension, or one whose texts were
                cut to their messages where this sidecar keeps headers, or the reverse
                (a catalog that records no `keep_headers` was built before the cut, of
                whole lines): its templates would never match.
        """
        if catalog is not None and catalog.dim != self.embedder.dim:
            raise ValueError(
                f"The catalog's embeddings are of dimension {catalog.dim}, the model's "
                f"{self.embedder.dim}. Received: dim={catalog.dim}"
            )
        built = catalog is None or bool(catalog.settings.get("keep_headers", True))
        if catalog is not None and built != self.config.keep_headers:
            raise ValueError(
                f"The catalog was built {'with' if built else 'without'} log headers and this "
                f"sidecar runs {'with' if self.config.keep_headers else 'without'} them: "
                "rebuild the catalog (`logclust catalog build`), or serve with "
                f"--{'' if built else 'no-'}keep-headers. Received: keep_headers={built}"
            )
        with self._lock:
            self.catalog = catalog
            if catalog is None:
                return []
            again = [
                n
                for n, r in self._runners.items()
                if n in catalog.states and r.clusterer.catalog_digest != catalog.digest
            ]
            for name in again:
                old = self._runners[name].clusterer
                self._runners[name] = self._shared(self._new_clusterer(name, after=old))
            for name, r in self._runners.items():  # sources it lacks: every id local
                if name not in catalog.states and r.clusterer.local_ids is None:
                    with r.lock:
                        r.clusterer.local_ids = LocalIds(name, 0)
            return again

    def is_local(self, source: str, cluster_id: int) -> bool:
        """Whether an id is this sidecar's own, not the catalog's (False without one)."""
        catalog = self.catalog
        return catalog is not None and catalog.is_local(source, cluster_id)

    @property
    def translating(self) -> bool:
        """Whether ids leave the sidecar as external ids (a catalog is served): int64,
        local kinds' fleet-unique (`logclust.cluster.local_ids`)."""
        return self.catalog is not None

    def external_ids(self, source: str, ids: np.ndarray) -> np.ndarray:
        """`(n,)` int64 ids of `source` as they leave the sidecar: as they are without a
        catalog (or for an unknown source), local ids as their external ids."""
        with self._lock:
            runner = self._runners.get(source)
        if runner is None or not self.translating:
            return np.asarray(ids, np.int64)
        with runner.lock:
            return _external(runner.clusterer, ids)

    def external_rows(self, names: list[str], codes: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """`external_ids` of each row, given `label`'s source names and codes."""
        if len(names) == 1:
            return self.external_ids(names[0], ids)
        out = np.asarray(ids, np.int64).copy()
        for code, name in enumerate(names):
            rows = codes == code
            out[rows] = self.external_ids(name, ids[rows])
        return out

    def _shared(self, clus: SourceClusterer) -> ConsolidationRunner:
        """Puts `clus` under `max_clusters_total` (when set) and the shared memo, and
        gives its groups the bundle's prose word vectors."""
        clus.groups.prose_embed = self.prose_embed
        if self.config.max_clusters_total is not None:
            clus.room = partial(self._room_of, clus)
        clus.memo_limit = self._memo_limit
        return ConsolidationRunner(clus)

    def _memo_limit(self) -> int:
        """Memo entries a source may hold: `memo_size` for each of `max_sources` is what
        the memory budget allows, shared by the sources present (at most `cache_size`
        each: an older text's embedding must still be cached to place it again)."""
        cfg = self.config
        share = cfg.memo_size * self.max_sources // max(len(self._runners), 1)
        return min(cfg.cache_size, share)

    def _room_of(self, clus: SourceClusterer) -> int:
        """Clusters `clus` may still open under `max_clusters_total`: what is left of its
        `reserved_clusters`, plus what no source claims. Every source, present or still to
        come, keeps its reserve; the rest goes first come first served."""
        total, reserved = self.config.max_clusters_total, self.config.reserved_clusters
        assert total is not None  # only set as `room` when there is a total
        present = [r.clusterer for r in self._runners.values()]
        claimed = sum(max(c.k, reserved) for c in present)
        claimed += reserved * max(self.max_sources - len(present), 0)
        return max(reserved - clus.k, 0) + max(total - claimed, 0)

    def describe(
        self, source: str | None = None, ids: set[int] | None = None
    ) -> list[tuple[str, ClusterStats]]:
        """`(source, stats)` of every cluster (or of `ids` only), sorted by source then id."""
        with self._lock:
            chosen = sorted(s for s in self._runners if source is None or s == source)
            runners = [self._runners[s] for s in chosen]
        out: list[tuple[str, ClusterStats]] = []
        for r in runners:
            with r.lock:
                out += [(r.clusterer.source, st) for st in r.clusterer.describe(ids)]
        return out

    def aliases(self) -> dict[tuple[str, int], int]:
        """`(source, merged id) -> surviving id` of every source."""
        with self._lock:
            clusterers = [r.clusterer for r in self._runners.values()]
        out = {(c.source, g): t for c in clusterers for g, t in dict(c.aliases).items()}
        for c in clusterers:  # local kinds a catalog restart dropped, opened again
            moved = {} if c.local_ids is None else dict(c.local_ids.moved)
            out.update({(c.source, g): c.aliases.get(t, t) for g, t in moved.items()})
        return out

    def counts(self) -> dict[str, tuple[int, int]]:
        """Per source: clusters held, and rows forced into a cluster past `max_clusters`
        (cumulative)."""
        with self._lock:
            return {
                name: (r.clusterer.k, r.clusterer.cap_hits) for name, r in self._runners.items()
            }

    def forget(self, source: str) -> bool:
        """Drops a source's clusters (its slot is free again); False when unknown."""
        with self._lock:
            return self._runners.pop(source, None) is not None

    def evict_idle(self, before_ms: int) -> list[str]:
        """Drops the sources whose last batch came before `before_ms`; returns them."""
        with self._lock:
            gone = [n for n, r in self._runners.items() if r.clusterer.last_batch_ms < before_ms]
            for name in gone:
                del self._runners[name]
        return gone

    def consolidate_now(self, source: str) -> bool:
        """Runs one consolidation of `source` in this thread; True when it changed any
        cluster.

        Raises:
            KeyError: an unknown source.
        """
        with self._lock:
            runner = self._runners[source]
        return runner.consolidate_now()

    def wait_for_consolidations(self, timeout: float | None = None) -> None:
        """Blocks until background consolidations of every source finish."""
        with self._lock:
            runners = list(self._runners.values())
        for r in runners:
            r.wait_for_consolidation(timeout)

    # -- saving and restoring ------------------------------------------------------------

    def dirty_parts(self) -> dict[str, SourceParts]:
        """What to save of each source changed since its last confirmed save: the whole
        state where its clusters changed, its counters always. Nothing is marked saved:
        give the parts the store holds to `mark_saved`; a failed save needs nothing.

        Each source is encoded under its own lock only: holding the lock of every source
        while all of them were encoded stalled every stream for the whole flush."""
        with self._lock:
            dirty = [(name, r) for name, r in self._runners.items() if r.clusterer.dirty]
        parts = {}
        for name, r in dirty:
            with r.lock:
                parts[name] = encode_parts(r.clusterer)
        return parts

    @staticmethod
    def mark_saved(parts: Mapping[str, SourceParts]) -> None:
        """The store holds `parts` (from `dirty_parts`): changes made since they were
        encoded stay unsaved, and a source dropped since is not affected."""
        for part in parts.values():
            part.mark_saved()

    def load_states(
        self, states: dict[str, bytes], counters: dict[str, bytes] | None = None
    ) -> None:
        """Restores sources, with their counters saved since; a state that does not fit
        (other bundle) is skipped, logged."""
        counters = counters or {}
        with self._lock:
            for name, data in states.items():
                try:
                    clus = from_bytes(
                        data,
                        self.config,
                        self.embedder.dim,
                        self.threshold_for(name),
                        (self.group_threshold, self.semantic_from),
                    )
                except (ValueError, KeyError, OSError) as e:
                    logger.warning("ignoring stored cluster state of %r: %s", name, e)
                    continue
                if name in counters:
                    try:
                        load_counters(clus, counters[name])
                    except (ValueError, KeyError) as e:
                        logger.warning("ignoring stored counters of %r: %s", name, e)
                self._runners[name] = self._shared(clus)


def _external(clus: SourceClusterer, ids: np.ndarray) -> np.ndarray:
    """`SourceClusterer`'s ids as they leave the sidecar (call with its lock held); an id
    named now (`LocalIds.external`) is saved with the state."""
    local = clus.local_ids
    if local is None:
        return np.asarray(ids, np.int64)
    named = len(local.of)

    def first_member(cid: int) -> str | None:
        st = clus.stats.get(cid)
        return st.members[0] if st is not None and st.members else None

    out = local.external(ids, first_member)
    if len(local.of) != named:
        clus.bump(model=True)
    return out


def encoded_sources(source: pa.Array) -> tuple[list[str], np.ndarray]:
    """`(names, codes)` of the `source` column dictionary-encoded."""
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
    return names, src.indices.to_numpy(zero_copy_only=False)
