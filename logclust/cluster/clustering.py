"""Cluster assignment: KMeans fitting and nearest-centroid labelling, numpy only.

Embeddings are L2-normalised, so squared Euclidean distance is `2 - 2 cos`. Here `k` is
given by the caller; without k, clusters are found by distance
(`logclust.cluster.threshold`), as the sidecar finds them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from logclust.cluster.kmeans import kmeans
from logclust.cluster.templates import TemplateIndex, is_structured, shape_of

logger = logging.getLogger(__name__)

# nearest_centroid recomputes distances directly where |x - c|^2 < this * (|x|^2 + |c|^2).
_RECOMPUTE_BELOW = 1e-2
# Largest (rows, centroids) distance block computed at once (1 MB of float32, computed
# in place: one such array).
_BLOCK_ELEMENTS = 1 << 18


@dataclass(frozen=True)
class ClusterModel:
    """Fitted centroids plus a per-cluster radius used to flag far rows.

    Attributes:
        centroids: `(k, dim)` float32.
        radii: `(k,)` float32; the 95th percentile distance of the cluster's members.
    """

    centroids: np.ndarray
    radii: np.ndarray
    # Word templates of a fit by distance (their clusters are rows of `centroids`): a
    # line that fits one takes its cluster without its embedding. None: centroids only.
    templates: TemplateIndex | None = None

    def __post_init__(self) -> None:
        if self.centroids.ndim != 2 or self.radii.shape != (self.centroids.shape[0],):
            raise ValueError(
                "centroids must be (k, dim) and radii (k,). "
                f"Received: centroids={self.centroids.shape}, radii={self.radii.shape}"
            )

    @property
    def k(self) -> int:
        return int(self.centroids.shape[0])

    def assign(self, embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Nearest centroid of each row.

        Returns:
            `(ids, distances)`: int32 cluster ids and float32 Euclidean distances.
        """
        return nearest_centroid(embeddings, self.centroids)

    def template_ids(self, masked: list[str]) -> np.ndarray:
        """`(n,)` int32 cluster of each masked text that fits a template; -1 where the
        embedding decides (no template fits, or a structured body)."""
        out = np.full(len(masked), -1, np.int32)
        if self.templates is not None:
            for i, text in enumerate(masked):
                cid = None if is_structured(text) else self.templates.find(shape_of(text))
                if cid is not None:
                    out[i] = cid
        return out


def nearest_centroid(
    x: np.ndarray, centroids: np.ndarray, scale: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Index of and distance to the nearest row of `centroids` for each row of `x`.

    Args:
        scale: `(k,)` factors: the centroids are `centroids * scale[:, None]` (row sums
            and their inverse norms, without making the unit rows).
    """
    if x.ndim != 2 or x.shape[1] != centroids.shape[1]:
        raise ValueError(f"Embeddings must be (n, {centroids.shape[1]}). Received: shape={x.shape}")
    if x.shape[0] == 0:
        return np.zeros(0, np.int32), np.zeros(0, np.float32)
    # |x - c|^2 = |x|^2 - 2 x.c + |c|^2, one matrix product per block of rows: blocks
    # bound the (rows, k) temporaries (thousands of clusters x thousands of rows would
    # otherwise take hundreds of MB for an instant).
    xx = np.einsum("ij,ij->i", x, x)
    cc = np.einsum("ij,ij->i", centroids, centroids)
    if scale is not None:
        cc *= scale * scale
    factor = -2.0 if scale is None else -2.0 * scale[None, :]
    step = max(1, _BLOCK_ELEMENTS // max(1, len(centroids)))
    ids = np.empty(len(x), np.int64)
    best = np.empty(len(x), xx.dtype)
    for lo in range(0, len(x), step):
        d2 = x[lo : lo + step] @ centroids.T  # then in place: one (rows, k) array a block
        d2 *= factor
        d2 += xx[lo : lo + step, None]
        d2 += cc[None, :]
        ids[lo : lo + step] = np.argmin(d2, axis=1)
        best[lo : lo + step] = d2[np.arange(len(d2)), ids[lo : lo + step]]
    # The expanded form loses precision near zero (float32 cancellation: an absolute error
    # of a few ulps of |x|^2 + |c|^2). Where the result is not far above that, the
    # distance is recomputed directly; elsewhere its relative error is below 1e-4.
    magnitude = xx + cc[ids]
    near = np.flatnonzero(best < _RECOMPUTE_BELOW * magnitude)
    dist = np.sqrt(np.maximum(best, 0.0))
    if near.size:
        c = centroids[ids[near]]
        if scale is not None:
            c = c * scale[ids[near], None]
        dist[near] = np.linalg.norm(x[near] - c, axis=1)
    return ids.astype(np.int32), dist.astype(np.float32)


def radii_of(ids: np.ndarray, dist: np.ndarray, k: int) -> np.ndarray:
    """The 95th percentile distance of each cluster's members to its centroid (0 when
    it has none)."""
    radii = np.zeros(k, np.float32)
    for c in range(k):
        member = dist[ids == c]
        radii[c] = float(np.percentile(member, 95)) if member.size else 0.0
    return radii


def fit_kmeans(
    x: np.ndarray, k: int, seed: int = 0, sample_weight: np.ndarray | None = None
) -> ClusterModel:
    """KMeans with `k` clusters (k is capped at the number of distinct rows)."""
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"fit needs a non-empty (n, dim) array. Received: shape={x.shape}")
    if k < 1:
        raise ValueError(f"k must be at least 1. Received: k={k}")
    n_distinct = len(np.unique(x.round(5), axis=0))
    k_eff = min(k, n_distinct)
    km = kmeans(x, k_eff, n_init=4, seed=seed, sample_weight=sample_weight)
    centroids = km.centroids.astype(np.float32)
    ids, dist = nearest_centroid(x.astype(np.float32), centroids)
    return ClusterModel(centroids, radii_of(ids, dist, k_eff))


def fit(x: np.ndarray, k: int, seed: int = 0) -> ClusterModel:
    """KMeans with `k` clusters (without k, clusters are found by distance:
    `logclust.cluster.threshold.threshold_cluster`)."""
    return fit_kmeans(x, k, seed=seed)
