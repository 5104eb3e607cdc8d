import numpy as np
import pytest

from logclust.cluster.clustering import (
    ClusterModel,
    fit,
    fit_kmeans,
    nearest_centroid,
)
from logclust.cluster.quality import ari, grouping_accuracy


def blobs(k: int = 3, n: int = 60, dim: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centers = np.eye(dim)[:k]
    y = np.arange(n) % k
    x = centers[y] + 0.03 * rng.standard_normal((n, dim))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32), y


def test_nearest_centroid_matches_brute_force() -> None:
    x, _ = blobs()
    c = x[:5]
    ids, dist = nearest_centroid(x, c)
    d = np.linalg.norm(x[:, None] - c[None], axis=2)
    assert (ids == d.argmin(1)).all()
    np.testing.assert_allclose(dist, d.min(1), atol=1e-5)


def test_fit_separates_blobs() -> None:
    x, y = blobs(k=4)
    model = fit(x, k=4)
    ids, _ = model.assign(x)
    assert ari(y, ids) == pytest.approx(1.0)


def test_k_capped_by_distinct_rows() -> None:
    x = np.repeat(np.eye(4, dtype=np.float32)[:2], 5, axis=0)
    model = fit_kmeans(x, k=10)
    assert model.k == 2


def test_ari_matches_scikit_learn() -> None:
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    for n, kt, kp in ((50, 3, 4), (200, 7, 2), (7, 7, 7), (30, 1, 1), (30, 1, 5)):
        t, p = rng.integers(0, kt, n), rng.integers(0, kp, n)
        assert ari(t, p) == metrics.adjusted_rand_score(t, p)
        assert ari(t, t) == metrics.adjusted_rand_score(t, t) == 1.0
    assert ari(["a", "b"], [1, 1]) == metrics.adjusted_rand_score(["a", "b"], [1, 1])


def test_errors_name_the_input() -> None:
    with pytest.raises(ValueError, match="Received: shape"):
        nearest_centroid(np.zeros((2, 3), np.float32), np.zeros((1, 4), np.float32))
    with pytest.raises(ValueError, match="k must be"):
        fit_kmeans(np.ones((3, 2), np.float32), 0)
    with pytest.raises(ValueError, match="radii"):
        ClusterModel(np.zeros((2, 3), np.float32), np.zeros(3, np.float32))


def test_grouping_accuracy() -> None:
    assert grouping_accuracy(["a", "a", "b"], [1, 1, 2]) == 1.0
    assert grouping_accuracy(["a", "a", "b"], [1, 1, 1]) == 0.0
    assert grouping_accuracy(["a", "a", "b"], [1, 2, 3]) == pytest.approx(1 / 3)
