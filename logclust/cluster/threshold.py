"""Clusters found by distance, not by a k search: the rule shared by the stream and `fit`.

A cluster is "lines within the threshold of each other": a line joins the nearest
centroid when it lies within `threshold` (Euclidean distance between unit vectors, so
`threshold**2 / 2` is the cosine distance) and otherwise opens a cluster of its own at
once. Centroids are the normalised mean of their distinct members' embeddings.
`consolidate` is the periodic clean-up: it recomputes centroids from a sample, moves
members that drifted out of reach and merges clusters whose centroids came within the
threshold of each other, keeping the larger cluster's id.

The threshold is a property of the model: the training pipeline calibrates it on the
train systems (template ARI of this very rule) and stores it in the bundle manifest.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from logclust.cluster.clustering import nearest_centroid

# Rows compared at once (bounds the temporaries with thousands of clusters: a block of
# 64 rows against 4,096 centroids is 1 MB of float32).
_MERGE_BLOCK = 64


@dataclass
class Centroids:
    """Growable centroid table: `sums` of the distinct members placed in each cluster.

    Unit centroids are not kept beside the sums: with thousands of clusters each
    `(k, dim)` float32 array is several MB of resident memory, so distances are computed
    from the sums and their norms (`nearest`), and `unit` builds a new array when asked.

    Attributes:
        sums: `(capacity, dim)` float32; the first `k` rows are in use.
        counts: `(capacity,)` int64 distinct members placed per cluster.
        k: clusters in use.
    """

    sums: np.ndarray
    counts: np.ndarray
    k: int = 0
    # Norms of the first k sums as last computed; dropped whenever the sums change.
    _norms: np.ndarray | None = field(default=None, repr=False, compare=False)

    @classmethod
    def empty(cls, dim: int, capacity: int = 64) -> Centroids:
        return cls(np.zeros((capacity, dim), np.float32), np.zeros(capacity, np.int64))

    @classmethod
    def of(cls, centroids: np.ndarray, counts: np.ndarray, own: bool = False) -> Centroids:
        """A table whose clusters have these (unit) centroids and member counts.

        Args:
            own: `centroids` (float32, C-contiguous) becomes the table's `sums` and is
                overwritten, instead of being copied (no second `(k, dim)` array).
        """
        k = len(centroids)
        n = np.maximum(counts, 1)
        weights = n[:, None].astype(np.float32)
        if own and centroids.dtype == np.float32 and centroids.flags.c_contiguous:
            centroids *= weights
            return cls(centroids, n.astype(np.int64), k)
        table = cls.empty(centroids.shape[1], max(64, k))
        np.multiply(centroids, weights, out=table.sums[:k])
        table.counts[:k] = n
        table.k = k
        return table

    @property
    def unit(self) -> np.ndarray:
        """`(k, dim)` float32 unit-length centroids: a new array at each call."""
        return _normalised(self.sums[: self.k])

    def unit_rows(self, rows: slice | np.ndarray) -> np.ndarray:
        """Unit-length centroids of some rows (of the first `k`)."""
        return _normalised(self.sums[: self.k][rows])

    def norms(self) -> np.ndarray:
        """`(k,)` norms of the sums (at least 1e-12), cached until the sums change."""
        if self._norms is None or len(self._norms) != self.k:
            self._norms = _norms(self.sums[: self.k])
        return self._norms

    def nearest(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Index of and distance to the nearest unit centroid for each row of `x`."""
        return nearest_centroid(x, self.sums[: self.k], scale=1.0 / self.norms())

    def changed(self) -> None:
        """Call after writing `sums` directly."""
        self._norms = None

    def add(self, cidx: np.ndarray, x: np.ndarray) -> None:
        """Adds members `x` to clusters `cidx` (the running means move)."""
        if len(cidx):
            np.add.at(self.sums, cidx, x)
            np.add.at(self.counts, cidx, 1)
            self._norms = None

    def open(self, x: np.ndarray, count: int = 1) -> int:
        """A new cluster whose members sum to `x` (one member by default); returns its
        index."""
        if self.k == len(self.counts):
            # A quarter more, not double: with thousands of clusters the old and the new
            # table are resident together while the rows are copied.
            grow = len(self.counts) + max(64, len(self.counts) // 4)
            sums = np.zeros((grow, self.sums.shape[1]), np.float32)
            sums[: self.k] = self.sums[: self.k]
            counts = np.zeros(grow, np.int64)
            counts[: self.k] = self.counts[: self.k]
            self.sums, self.counts = sums, counts
        self.sums[self.k] = x
        self.counts[self.k] = count
        self.k += 1
        self._norms = None
        return self.k - 1


def place(
    x: np.ndarray, table: Centroids, threshold: float, max_clusters: int
) -> tuple[np.ndarray, np.ndarray, int]:
    """Places embeddings: the nearest cluster within `threshold`, else a new cluster.

    Rows are taken in order, so the first of several far rows that lie close together
    opens the cluster and the others join it. Once `max_clusters` clusters exist, a far
    row joins its nearest cluster instead (counted, never silent).

    Args:
        x: `(m, dim)` unit embeddings.
        table: the clusters; updated in place (running means, new clusters).
        threshold: largest Euclidean distance to a centroid that joins it (below 0: each
            row opens a cluster of its own, within the cap).
        max_clusters: cap on `table.k`.

    Returns:
        `(cidx, distances, forced)`: cluster index and distance to its centroid (as the
        centroid was when the row was placed) per row, and how many rows were forced
        into a cluster farther than the threshold because of the cap.
    """
    m = len(x)
    cidx = np.zeros(m, np.int64)
    dist = np.zeros(m, np.float32)
    if m == 0:
        return cidx, dist, 0
    if table.k:
        cidx, dist = table.nearest(x)
        cidx = cidx.astype(np.int64)
        far = np.flatnonzero(dist > threshold)
    else:
        far = np.arange(m)
    near = np.setdiff1d(np.arange(m), far, assume_unique=True)
    table.add(cidx[near], x[near])
    forced = 0
    rest = far
    while rest.size and table.k < max_clusters:
        lead = int(rest[0])
        c = table.open(x[lead])
        d = np.linalg.norm(x[rest] - x[lead], axis=1)
        join = d <= threshold
        join[0] = True  # the leader (a threshold below 0 opens a cluster per row)
        cidx[rest[join]], dist[rest[join]] = c, d[join]
        members = rest[join][1:]  # the leader is already counted by `open`
        if members.size:
            table.add(np.full(members.size, c), x[members])
        rest = rest[~join]
    if rest.size:  # the cap is reached: the nearest cluster, however far
        cidx[rest], dist[rest] = table.nearest(x[rest])
        table.add(cidx[rest], x[rest])
        forced = int(rest.size)
    return cidx, dist, forced


@dataclass(frozen=True)
class Consolidation:
    """What `consolidate` decided about the clusters it was given.

    Attributes:
        centroids: `(k', dim)` unit centroids of the clusters that remain, in the order
            `kept` then `split_off`.
        counts: `(k',)` distinct members behind each centroid.
        kept: `(r,)` index (into the input clusters) of each surviving input cluster.
        merged: input index -> input index of the cluster it was merged into.
        split_off: how many new clusters (at the end of `centroids`) were split off.
        split: input indices of the clusters that new ones were split off from.
    """

    centroids: np.ndarray
    counts: np.ndarray
    kept: np.ndarray
    merged: dict[int, int]
    split_off: int
    split: tuple[int, ...] = ()

    @property
    def changed(self) -> bool:
        return bool(self.merged) or self.split_off > 0


def consolidate(
    centroids: np.ndarray,
    counts: np.ndarray,
    sizes: np.ndarray,
    sample: np.ndarray,
    threshold: float,
    max_clusters: int,
    own: bool = False,
    fixed: np.ndarray | None = None,
) -> Consolidation:
    """Recomputes centroids from a sample, splits off drifted members, merges close ones.

    1. Each distinct sampled embedding goes to its nearest centroid; a cluster with
       sampled members gets their normalised mean as its centroid (the others keep
       theirs: a sample need not hold every cluster).
    2. A cluster whose sampled members do not all lie within `threshold` of that mean is
       split: its members are grouped again by `place`; the largest group keeps the id
       (and the centroid of its members), the others become new clusters.
    3. Clusters whose centroids lie within `threshold` of each other are merged; the one
       with most rows (`sizes`) keeps its id, the others are recorded in `merged`.

    Args:
        centroids: `(k, dim)` unit centroids now.
        counts: `(k,)` distinct members behind each.
        sizes: `(k,)` rows seen per cluster (decides which id survives a merge).
        sample: `(u, dim)` distinct embeddings of recent rows.
        threshold: the clustering threshold.
        max_clusters: cap on clusters.
        own: `centroids` (float32) may be overwritten (no copy of it is made).
        fixed: `(k,)` clusters never merged nor split (their centroids are recomputed).
    """
    k = len(centroids)
    table = Centroids.of(centroids, counts, own=own)
    split: list[int] = []
    if len(sample) and k:
        cidx, _ = table.nearest(sample)
        # The sampled mean of every cluster the sample reaches, at once (a sample of a few
        # hundred rows reaches at most that many of thousands of clusters); only clusters
        # with a member out of reach of it go through `_recenter_or_split` one by one.
        touched, inv = np.unique(cidx, return_inverse=True)
        inv = inv.ravel()
        means = np.zeros((len(touched), table.sums.shape[1]), np.float32)
        np.add.at(means, inv, sample)
        means /= _norms(means)[:, None]
        far = np.zeros(len(touched), bool)
        far[inv[_distances_to(sample, means, inv) > threshold]] = True
        ok = ~far
        n = np.maximum(table.counts[touched], np.bincount(inv))
        table.sums[touched[ok]] = means[ok] * n[ok, None].astype(np.float32)
        table.counts[touched[ok]] = n[ok]
        table.changed()
        for c in touched[far].tolist():
            if fixed is not None and fixed[c]:
                continue
            if _recenter_or_split(table, c, sample[cidx == c], threshold, max_clusters):
                split.append(c)
    split_off = table.k - k
    frozen = None if fixed is None else np.concatenate([fixed, np.zeros(split_off, bool)])
    merged = _merge_pairs(table, np.concatenate([sizes, np.zeros(split_off)]), threshold, frozen)
    for src, dst in merged.items():
        table.sums[dst] += table.sums[src]
        table.counts[dst] += table.counts[src]
    alive = np.array([i for i in range(table.k) if i not in merged], np.int64)
    # The table is this function's own: its sums become the unit centroids in place.
    out = table.sums[alive] if merged else table.sums[: table.k]
    out /= _norms(out)[:, None]
    return Consolidation(
        centroids=out,
        counts=table.counts[alive].copy(),
        kept=alive[alive < k],
        merged={s: d for s, d in merged.items()},
        split_off=int((alive >= k).sum()),
        split=tuple(split),
    )


@dataclass(frozen=True)
class ConsolidationJob:
    """What a consolidation starts from: copies, so it can run apart from the clusterer."""

    centroids: np.ndarray  # (k, dim) unit centroids, a copy the job may overwrite
    counts: np.ndarray  # (k,) distinct members behind each
    sizes: np.ndarray  # (k,) rows seen per cluster
    sample: np.ndarray  # (u, dim) distinct sampled embeddings
    k: int
    cap: int  # clusters the source may hold (splits stop there)
    threshold: float
    fixed: np.ndarray | None = None  # (k,) clusters never merged nor split

    def run(self) -> Consolidation:
        """`consolidate` of these inputs (touches no clusterer)."""
        return consolidate(
            self.centroids,
            self.counts,
            self.sizes,
            self.sample,
            self.threshold,
            self.cap,
            own=True,
            fixed=self.fixed,
        )


def _norms(x: np.ndarray) -> np.ndarray:
    """Row norms of `x` (at least 1e-12), without an `x`-sized temporary."""
    return np.maximum(np.sqrt(np.einsum("ij,ij->i", x, x)), 1e-12)


def _normalised(x: np.ndarray) -> np.ndarray:
    """`x` with unit rows, in `x`'s dtype: one new array of `x`'s size, no other (with
    thousands of clusters each `(k, dim)` temporary is several MB of peak RSS)."""
    return np.divide(x, _norms(x)[:, None].astype(x.dtype, copy=False))


def _distances_to(x: np.ndarray, centroids: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """`|x[i] - centroids[idx[i]]|` per row, a block of rows at a time."""
    out = np.empty(len(x), np.float32)
    for lo in range(0, len(x), _MERGE_BLOCK):
        hi = lo + _MERGE_BLOCK
        out[lo:hi] = np.linalg.norm(x[lo:hi] - centroids[idx[lo:hi]], axis=1)
    return out


def _recenter_or_split(
    table: Centroids, c: int, members: np.ndarray, threshold: float, max_clusters: int
) -> bool:
    """Cluster `c` takes the mean of its sampled `members`; when they do not all lie
    within `threshold` of it, the largest group of them keeps `c` and the other groups
    open clusters (while the cap allows). True when any cluster was opened."""
    n = max(int(table.counts[c]), len(members))
    mean = members.sum(0)
    unit = mean / max(float(np.linalg.norm(mean)), 1e-12)
    if (np.linalg.norm(members - unit, axis=1) <= threshold).all():
        table.sums[c], table.counts[c] = unit * n, n
        table.changed()
        return False
    groups = Centroids.empty(members.shape[1])
    place(members, groups, threshold, max_clusters)
    order = np.argsort(-groups.counts[: groups.k], kind="stable")
    big = int(order[0])
    table.sums[c], table.counts[c] = groups.unit[big] * n, n
    table.changed()
    k0 = table.k
    for g in order[1:].tolist():
        if table.k >= max_clusters:
            break
        table.open(groups.sums[g].copy(), int(groups.counts[g]))
    return table.k > k0


def _merge_pairs(
    table: Centroids,
    sizes: np.ndarray,
    threshold: float,
    fixed: np.ndarray | None = None,
) -> dict[int, int]:
    """Union of clusters whose centroids are within `threshold` (`fixed` ones never):
    index -> survivor."""
    k = table.k
    sums, scale = table.sums[:k], 1.0 / table.norms()
    parent = np.arange(k)

    def root(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = int(parent[a])
        return a

    # |a - b|^2 = 2 - 2 a.b for unit vectors: within the threshold <=> a.b >= this.
    min_dot = 1.0 - threshold * threshold / 2.0
    for start in range(0, k, _MERGE_BLOCK):
        block = sums[start : start + _MERGE_BLOCK] * scale[start : start + _MERGE_BLOCK, None]
        dots = block @ sums.T
        dots *= scale[None, :]
        rows, cols = np.nonzero(dots >= min_dot)
        for r, c in zip((rows + start).tolist(), cols.tolist(), strict=True):
            if r >= c or (fixed is not None and (fixed[r] or fixed[c])):
                continue
            a, b = root(r), root(c)
            if a == b:
                continue
            # The larger cluster (rows, then the older id) survives.
            if (sizes[b], -b) > (sizes[a], -a):
                a, b = b, a
            parent[b] = a
    return {i: root(i) for i in range(k) if root(i) != i}


def threshold_cluster(
    x: np.ndarray, threshold: float, max_clusters: int = 4096
) -> tuple[np.ndarray, np.ndarray]:
    """Offline form of the stream rule: `place` in order, then one `consolidate`.

    Returns:
        `(centroids, labels)`: unit centroids `(k, dim)` and each row's cluster.
    """
    table = Centroids.empty(x.shape[1])
    place(x, table, threshold, max_clusters)
    sizes = table.counts[: table.k].astype(np.float64)
    done = consolidate(table.unit, table.counts[: table.k], sizes, x, threshold, max_clusters)
    labels, _ = nearest_centroid(x, done.centroids)
    return done.centroids, labels
