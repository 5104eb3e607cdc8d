"""Numpy k-means and cosine silhouette, checked against scikit-learn where it is installed."""

from __future__ import annotations

import numpy as np
import pytest

from logclust.cluster.kmeans import kmeans
from tests.cluster.test_clustering import blobs


def test_kmeans_recovers_blobs_and_is_seeded() -> None:
    x, y = blobs(k=5, n=200, dim=16)
    a = kmeans(x, 5, seed=3)
    b = kmeans(x, 5, seed=3)
    np.testing.assert_array_equal(a.labels, b.labels)
    # Each true blob maps to one cluster and each cluster to one blob.
    pairs = set(zip(y.tolist(), a.labels.tolist(), strict=True))
    assert len(pairs) == 5
    d2 = ((x - a.centroids[a.labels]) ** 2).sum()
    assert a.inertia == pytest.approx(d2, rel=1e-5)


def test_sample_weight_pulls_the_centroid() -> None:
    x = np.array([[0.0], [1.0]])
    res = kmeans(x, 1, sample_weight=np.array([3.0, 1.0]))
    assert res.centroids[0, 0] == pytest.approx(0.25)
    with pytest.raises(ValueError, match="sample_weight"):
        kmeans(x, 1, sample_weight=np.array([-1.0, 1.0]))
    with pytest.raises(ValueError, match="Received"):
        kmeans(x, 3)


def test_every_cluster_keeps_members() -> None:
    # Many duplicates and k close to the number of distinct rows invites empty clusters.
    rng = np.random.default_rng(0)
    distinct = rng.standard_normal((8, 4))
    x = np.concatenate([np.repeat(distinct[:1], 50, axis=0), distinct[1:]])
    res = kmeans(x, 8, n_init=1, seed=1)
    assert len(np.unique(res.labels)) == 8
    assert res.inertia == pytest.approx(0.0, abs=1e-9)


def test_inertia_close_to_sklearn() -> None:
    cluster = pytest.importorskip("sklearn.cluster")
    rng = np.random.default_rng(1)
    x = rng.standard_normal((300, 8))
    w = rng.random(300) + 0.1
    for k in (2, 5, 9):
        ours = kmeans(x, k, n_init=4, seed=0, sample_weight=w).inertia
        ref = cluster.KMeans(n_clusters=k, n_init=4, random_state=0).fit(x, sample_weight=w)
        assert ours <= ref.inertia_ * 1.03, (k, ours, ref.inertia_)
