"""Online clustering of a stream, per source, with ids that stay stable.

Behaviour for each source (settings in `StreamClusterConfig`):

1. **Warm-up.** Rows are sampled into a bounded reservoir. Until `warmup_rows` rows have
   arrived they are answered with cluster id -1. The batch that reaches the threshold
   triggers the first fit *before* it is labelled, so a first batch of at least
   `warmup_rows` rows is already clustered.
2. **Fit.** KMeans over the distinct masked texts of the reservoir (weighted by how often
   each occurs), with k chosen automatically by `clustering.choose_k` (silhouette) in
   `[k_min, k_max]`: the user never gives k.
3. **Assignment.** Nearest centroid. A row farther than `outlier_factor` times its
   cluster's radius (at least `min_radius`) is not forced into the cluster: it gets -1.
4. **Refit.** After `refit_every_rows` rows, or sooner once `refit_outlier_rows` rows were
   flagged -1, the reservoir is refitted (on a background thread unless
   `background_refit` is false), spaced so that fitting takes at most `refit_max_share`
   of the time. New centroids are matched to the old ones with the
   Hungarian algorithm; a match closer than `match_distance` keeps the old id, other
   centroids get fresh ids and unmatched old clusters are marked inactive. Refits search
   k within `refit_k_window` of the current k; a refit that changes no id doubles the
   interval to the next scheduled one (up to `refit_backoff_max` times).
5. **State** (centroids, radii, ids, counters, descriptions) is encoded without pickle by
   `SourceClusterer.to_bytes` and restored on restart, so ids survive restarts.

Each cluster is described by a template over its distinct masked members (tokens that
agree everywhere are kept, others become `<*>`) and a few exemplars. Only masked text is
kept, never raw bodies.
"""

from __future__ import annotations

import io
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from itertools import repeat

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from logclust.cluster.assignment import linear_sum_assignment
from logclust.cluster.clustering import choose_k, fit_kmeans, is_outlier, nearest_centroid
from logclust.cluster.config import StreamClusterConfig
from logclust.cluster.descriptions import (
    UNASSIGNED,
    UNASSIGNED_TEMPLATE,
    ClusterStats,
    template_of,
)
from logclust.cluster.reservoir import Reservoir
from logclust.embed.embedding_cache import Embedder, EmbeddingCache
from logclust.text.mask_cache import MaskCache
from logclust.wire.contract import LimitExceededError

logger = logging.getLogger(__name__)

_STATE_VERSION = 1
# Texts one source remembers the placement of (about 0.8 MB of dict and arrays).
_MEMO_MAX = 16_384
# A cluster short of template members looks again at least this often (rows).
_MEMBERS_EVERY = 10_000


@dataclass(frozen=True)
class _Model:
    centroids: np.ndarray  # (k, dim) float32
    radii: np.ndarray  # (k,) float32
    ids: np.ndarray  # (k,) int32 stable ids


def _unplaced(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Ids and distances of `n` texts before the first fit: -1 and NaN."""
    return np.full(n, UNASSIGNED, np.int32), np.full(n, np.nan, np.float32)


class SourceClusterer:
    """Online clustering state of one source (see the module docstring).

    Thread-safe: `assign` and the background refit share one re-entrant lock; the refit
    computes without the lock and only takes it to swap the model in.
    """

    def __init__(self, source: str, config: StreamClusterConfig, dim: int) -> None:
        self.source = source
        self.config = config
        self.dim = dim
        self._model: _Model | None = None
        self._next_id = 0
        self.stats: dict[int, ClusterStats] = {
            UNASSIGNED: ClusterStats(UNASSIGNED, template=UNASSIGNED_TEMPLATE, active=False)
        }
        self._sample = Reservoir(config.reservoir_size, dim, config.seed)
        self.rows_seen = 0
        self._rows_since_fit = 0
        self._outliers_since_fit = 0
        self._members_tried: dict[int, int] = {}  # cluster -> its size at the last look
        self._backoff = 1  # scheduled refits every refit_every_rows * this
        # What the current model gave each text: text -> slot of _known_uid / _known_d.
        self._known: dict[str, int] = {}
        self._known_uid = np.zeros(0, np.int32)
        self._known_d = np.zeros(0, np.float32)
        self._lock = threading.RLock()
        self._refit_thread: threading.Thread | None = None
        self._refit_after = 0.0  # time.monotonic() before which no refit starts
        self.fits = 0
        self.dirty = True

    @property
    def k(self) -> int:
        return 0 if self._model is None else int(self._model.ids.size)

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
            `(ids, distances)` per row: int32 stable ids (-1 = unassigned) and float32
            distances to the nearest centroid (NaN before the first fit).
        """
        n = inv.size
        with self._lock:
            self._sample.offer(self.rows_seen, keys, embed, inv)
            self.rows_seen += n
            self._rows_since_fit += n
            if self._model is None and self.rows_seen >= self.config.warmup_rows:
                self._apply_fit(*self._timed_fit(*self._reservoir()))
            uid, d = self._assign_known(keys, embed)
            ids, dist = uid[inv], d[inv]
            unassigned = self._update_stats(keys, uid, ids, time_ms)
            if self._model is not None:
                self._outliers_since_fit += unassigned
            self.dirty = True
            self._maybe_refit()
        return ids, dist

    def _assign_known(
        self, keys: list[str], embed: Callable[[np.ndarray], np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray]:
        """`_assign_distinct` through a memo of what the current model gave each text
        (cleared when the model changes; bounded by `cache_size` and `_MEMO_MAX`, so 64
        sources hold at most about 50 MB of it): a steady stream's
        texts are placed once per model, not once per batch."""
        if self._model is None:  # warm-up: nothing to place, nothing to embed
            return _unplaced(len(keys))
        if len(self._known) + len(keys) > min(self.config.cache_size, _MEMO_MAX):
            self._known.clear()
        slot = np.fromiter(map(self._known.get, keys, repeat(-1)), np.int64, len(keys))
        miss = np.flatnonzero(slot < 0)
        if miss.size:
            uid, d = self._assign_distinct(embed(miss))
            start = len(self._known)
            if start + miss.size > self._known_uid.size:
                grow = max(2 * self._known_uid.size, start + miss.size)
                self._known_uid = np.resize(self._known_uid, grow)
                self._known_d = np.resize(self._known_d, grow)
            self._known_uid[start : start + miss.size] = uid
            self._known_d[start : start + miss.size] = d
            slot[miss] = np.arange(start, start + miss.size)
            new = [keys[i] for i in miss.tolist()]
            self._known.update(zip(new, range(start, start + miss.size), strict=True))
        return self._known_uid[slot], self._known_d[slot]

    def predict(self, emb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Ids and distances of embeddings under the current model; records nothing."""
        with self._lock:
            return self._assign_distinct(emb)

    def _assign_distinct(self, emb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        model, cfg = self._model, self.config
        if model is None:
            return _unplaced(len(emb))
        cidx, d = nearest_centroid(emb, model.centroids)
        uid = model.ids[cidx].copy()
        uid[is_outlier(d, model.radii[cidx], cfg.outlier_factor, cfg.min_radius)] = UNASSIGNED
        return uid, d

    def _reservoir(self) -> tuple[np.ndarray, np.ndarray]:
        return self._sample.contents(self.rows_seen)

    def _update_stats(
        self, keys: list[str], uid: np.ndarray, ids: np.ndarray, time_ms: np.ndarray
    ) -> int:
        """Adds the batch to the clusters' sizes, times and members; returns how many
        rows got -1."""
        # Cluster ids are small non-negative ints (or -1): counted with bincount.
        counts = np.bincount(ids + 1)
        cids = np.flatnonzero(counts)
        lo_all, hi_all = int(time_ms.min()), int(time_ms.max())
        if lo_all == hi_all:  # one event time (no time column: the arrival time)
            tmin = tmax = np.full(cids.size, lo_all, np.int64)
        else:
            tmin = np.full(counts.size, np.iinfo(np.int64).max, np.int64)
            tmax = np.full(counts.size, np.iinfo(np.int64).min, np.int64)
            np.minimum.at(tmin, ids + 1, time_ms)
            np.maximum.at(tmax, ids + 1, time_ms)
            tmin, tmax = tmin[cids], tmax[cids]
        cap = self.config.template_members
        for cid, count, lo, hi in zip(
            (cids - 1).tolist(), counts[cids].tolist(), tmin.tolist(), tmax.tolist(), strict=True
        ):
            st = self.stats.get(cid)
            if st is None:
                st = self.stats[cid] = ClusterStats(cid)
            st.size += count
            st.first_seen_ms = lo if st.first_seen_ms is None else min(st.first_seen_ms, lo)
            st.last_seen_ms = hi if st.last_seen_ms is None else max(st.last_seen_ms, hi)
            # A cluster short of members looks for new ones after its size doubles (at
            # least every `_MEMBERS_EVERY` rows), not in every batch.
            tried = self._members_tried.get(cid, 0)
            if len(st.members) < cap and st.size - tried >= min(tried, _MEMBERS_EVERY):
                self._members_tried[cid] = st.size
                st.add_members([keys[i] for i in np.flatnonzero(uid == cid)[:cap].tolist()], cap)
        return int(counts[0]) if counts.size else 0

    def _maybe_refit(self) -> None:
        cfg = self.config
        due = self._rows_since_fit >= cfg.refit_every_rows * self._backoff or (
            cfg.refit_outlier_rows > 0 and self._outliers_since_fit >= cfg.refit_outlier_rows
        )
        busy = self._refit_thread is not None and self._refit_thread.is_alive()
        if not due or busy or self._model is None or time.monotonic() < self._refit_after:
            return
        self._rows_since_fit = self._outliers_since_fit = 0
        data = self._reservoir()
        if cfg.background_refit:
            self._refit_thread = threading.Thread(
                target=self._refit, args=data, name=f"logclust-refit-{self.source}", daemon=True
            )
            self._refit_thread.start()
        else:
            self._refit(*data)

    def _refit(self, emb: np.ndarray, texts: np.ndarray) -> None:
        try:
            fitted = self._timed_fit(emb, texts)
        except (ValueError, np.linalg.LinAlgError) as e:
            logger.error("refit of source %r failed, keeping the model: %s", self.source, e)
            return
        with self._lock:
            self._apply_fit(*fitted)

    def wait_for_refit(self, timeout: float | None = None) -> None:
        """Blocks until a running background refit finishes."""
        thread = self._refit_thread
        if thread is not None:
            thread.join(timeout)

    def _timed_fit(
        self, emb: np.ndarray, texts: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, list[list[str]]]:
        start = time.monotonic()
        fitted = self._compute_fit(emb, texts)
        took = time.monotonic() - start
        share = self.config.refit_max_share
        self._refit_after = time.monotonic() + took * (1.0 - share) / share
        return fitted

    def _compute_fit(
        self, emb: np.ndarray, texts: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, list[list[str]]]:
        cfg = self.config
        k_min, k_max = cfg.k_min, cfg.k_max
        if self._model is not None:  # a refit: search near the current k
            k_min = max(k_min, self.k - cfg.refit_k_window)
            k_max = min(k_max, max(self.k + cfg.refit_k_window, k_min))
        distinct, first, counts = np.unique(texts, return_index=True, return_counts=True)
        x_all = emb[first]
        sel = np.arange(distinct.size)
        if distinct.size > cfg.max_fit_points:
            rng = np.random.default_rng(cfg.seed)
            sel = rng.choice(
                distinct.size, cfg.max_fit_points, replace=False, p=counts / counts.sum()
            )
        x, w = x_all[sel], counts[sel].astype(np.float64)
        # k is searched on distinct texts (as in training); KMeans then weights them.
        k = choose_k(x, k_min, k_max, seed=cfg.seed, max_points=cfg.max_fit_points)
        fitted = fit_kmeans(x, k, seed=cfg.seed, sample_weight=w)
        # Members listed by frequency, so templates and exemplars show the common shapes.
        cidx, _ = nearest_centroid(x_all, fitted.centroids)
        order = np.argsort(-counts, kind="stable")
        members: list[list[str]] = [[] for _ in range(fitted.k)]
        for i in order[: fitted.k * cfg.template_members * 4].tolist():
            if len(members[cidx[i]]) < cfg.template_members:
                members[cidx[i]].append(str(distinct[i]))
        return fitted.centroids, fitted.radii, members

    def _apply_fit(
        self, centroids: np.ndarray, radii: np.ndarray, members: list[list[str]]
    ) -> None:
        ids = self._match_ids(centroids)
        if self._model is not None:
            for old in set(self._model.ids.tolist()) - set(ids.tolist()):
                self.stats[old].active = False
            same = set(self._model.ids.tolist()) == set(ids.tolist())
            self._backoff = min(2 * self._backoff, self.config.refit_backoff_max) if same else 1
        self._members_tried.clear()
        for cid, mem in zip(ids.tolist(), members, strict=True):
            st = self.stats.setdefault(cid, ClusterStats(cid))
            st.active = True
            if mem:
                st.members = mem
                st.template = template_of(mem)
        self._model = _Model(centroids.astype(np.float32), radii.astype(np.float32), ids)
        self._known.clear()
        self.fits += 1
        self.dirty = True
        logger.info("source %r fitted: k=%d ids=%s", self.source, ids.size, ids.tolist())

    def _match_ids(self, centroids: np.ndarray) -> np.ndarray:
        ids = np.full(len(centroids), UNASSIGNED, np.int32)
        old = self._model
        if old is not None:
            cost = np.linalg.norm(centroids[:, None, :] - old.centroids[None, :, :], axis=2)
            rows, cols = linear_sum_assignment(cost)
            for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
                if cost[r, c] <= self.config.match_distance:
                    ids[r] = old.ids[c]
        for r in np.flatnonzero(ids == UNASSIGNED).tolist():
            ids[r] = self._next_id
            self._next_id += 1
        return ids

    def describe(self) -> list[ClusterStats]:
        """Copies of every cluster's stats (the -1 entry only when rows got -1)."""
        with self._lock:
            return [
                ClusterStats(**{**s.to_dict(), "members": list(s.members)})
                for cid, s in sorted(self.stats.items())
                if cid != UNASSIGNED or s.size
            ]

    def to_bytes(self) -> bytes:
        """Pickle-free state: an `.npz` of arrays plus a JSON document (no reservoir)."""
        with self._lock:
            meta = {
                "version": _STATE_VERSION,
                "source": self.source,
                "dim": self.dim,
                "next_id": self._next_id,
                "rows_seen": self.rows_seen,
                "fits": self.fits,
                "stats": [s.to_dict() for s in self.stats.values()],
            }
            arrays: dict[str, np.ndarray] = {
                "meta": np.frombuffer(json.dumps(meta).encode(), np.uint8)
            }
            if self._model is not None:
                arrays |= {
                    "centroids": self._model.centroids,
                    "radii": self._model.radii,
                    "ids": self._model.ids,
                }
            buf = io.BytesIO()
            np.savez(buf, **arrays)  # type: ignore[arg-type]
            self.dirty = False
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes, config: StreamClusterConfig, dim: int) -> SourceClusterer:
        """Restores `to_bytes` output.

        Raises:
            ValueError: unknown format version or a different embedding dimension.
        """
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            meta = json.loads(z["meta"].tobytes().decode())
            arrays = {k: z[k] for k in ("centroids", "radii", "ids") if k in z.files}
        if meta.get("version") != _STATE_VERSION or meta.get("dim") != dim:
            raise ValueError(
                f"Cluster state needs format {_STATE_VERSION} and dim {dim}. "
                f"Received: version={meta.get('version')}, dim={meta.get('dim')}"
            )
        self = cls(meta["source"], config, dim)
        self._next_id, self.rows_seen, self.fits = meta["next_id"], meta["rows_seen"], meta["fits"]
        self.stats = {s["cluster_id"]: ClusterStats(**s) for s in meta["stats"]}
        if arrays:
            self._model = _Model(arrays["centroids"], arrays["radii"], arrays["ids"])
        self.dirty = False
        return self


class StreamClusters:
    """Masks, dedupes and embeds a batch once, then clusters its rows per source.

    The hot path works on distinct values, never on rows in Python: `MaskCache` masks
    each digit shape once (exact), `EmbeddingCache` embeds each masked text once, and each
    source places each distinct text once per model (a memo cleared by every fit); the
    distinct texts travel as the mask cache's own strings.

    Args:
        embedder: provides `masker`, `dim` and `embed_masked`.
        config: clustering settings shared by every source.
        max_sources: distinct sources kept; a batch adding more is refused.
    """

    def __init__(
        self, embedder: Embedder, config: StreamClusterConfig | None = None, max_sources: int = 64
    ) -> None:
        self.embedder = embedder
        self.config = config or StreamClusterConfig()
        self.max_sources = max_sources
        self.masks = MaskCache(embedder.masker, self.config.cache_size)
        self.cache = EmbeddingCache(embedder, self.config.cache_size)
        self.sources: dict[str, SourceClusterer] = {}
        self._lock = threading.Lock()

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
        # One source for every row (`contract.source_column` of a batch without a source
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
        # (u,) distinct masked texts (the mask cache's own strings), (n,) row -> text
        keys, inv = self.masks.distinct_keys(body)
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

    def _embedder_of(self, keys: list[str]) -> Callable[[np.ndarray], np.ndarray]:
        """Embeddings of `keys[idx]` through the embedding cache, computed when first
        asked (each text of the batch at most once)."""
        done = np.zeros(len(keys), bool)
        rows = np.empty((len(keys), self.embedder.dim), np.float32)  # touched when filled

        def embed(idx: np.ndarray) -> np.ndarray:
            need = np.unique(idx[~done[idx]])
            if need.size:
                rows[need] = self.cache.embed([keys[i] for i in need.tolist()])
                done[need] = True
            return rows[idx]

        return embed

    def _source(self, name: str) -> SourceClusterer:
        clus = self.sources.get(name)
        if clus is None:
            clus = self.sources[name] = SourceClusterer(name, self.config, self.embedder.dim)
        return clus

    def describe(self, source: str | None = None) -> list[tuple[str, ClusterStats]]:
        """`(source, stats)` of every cluster, sorted by source then id."""
        with self._lock:
            chosen = sorted(s for s in self.sources if source is None or s == source)
            clusterers = [self.sources[s] for s in chosen]
        return [(c.source, st) for c in clusterers for st in c.describe()]

    def take_dirty_states(self) -> dict[str, bytes]:
        """Encoded state of each source changed since the last call."""
        with self._lock:
            return {name: c.to_bytes() for name, c in self.sources.items() if c.dirty}

    def load_states(self, states: dict[str, bytes]) -> None:
        """Restores sources; a state that does not fit (other bundle) is skipped, logged."""
        with self._lock:
            for name, data in states.items():
                try:
                    self.sources[name] = SourceClusterer.from_bytes(
                        data, self.config, self.embedder.dim
                    )
                except (ValueError, KeyError, OSError) as e:
                    logger.warning("ignoring stored cluster state of %r: %s", name, e)

    def wait_for_refits(self, timeout: float | None = None) -> None:
        """Blocks until background refits of every source finish."""
        with self._lock:
            clusterers = list(self.sources.values())
        for c in clusterers:
            c.wait_for_refit(timeout)
