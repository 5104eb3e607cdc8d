"""The distance rule: placement, consolidation (recompute, split, merge), offline form."""

from __future__ import annotations

import numpy as np

from logclust.cluster.quality import ari
from logclust.cluster.threshold import Centroids, consolidate, place, threshold_cluster


def _unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v, axis=-1, keepdims=True)).astype(np.float32)


def _blobs(k: int, n: int, spread: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    return _unit(np.eye(16)[y] + spread * rng.standard_normal((n, 16))), y


def test_place_joins_within_the_threshold_and_opens_beyond() -> None:
    table = Centroids.empty(16)
    x, y = _blobs(5, 200, 0.05)
    cidx, dist, forced = place(x, table, threshold=0.5, max_clusters=100)
    assert table.k == 5 and forced == 0
    assert ari(y.tolist(), cidx.tolist()) == 1.0
    assert (dist <= 0.5).all()
    # The running means sit at the blobs' centres.
    centres = np.stack([_unit(x[cidx == c].mean(0)) for c in range(5)])
    np.testing.assert_allclose(table.unit, centres, atol=1e-5)


def test_place_in_one_batch_follows_row_order() -> None:
    table = Centroids.empty(16)
    a, b = np.eye(16, dtype=np.float32)[:2]
    close = _unit(a + 0.1 * b)
    cidx, _, _ = place(np.stack([close, a, b]), table, threshold=0.3, max_clusters=10)
    assert cidx.tolist() == [0, 0, 1]  # the first far row leads, the next joins it


def test_place_past_the_cap_forces_and_counts() -> None:
    table = Centroids.empty(16)
    cidx, dist, forced = place(np.eye(16, dtype=np.float32)[:6], table, 0.5, max_clusters=4)
    assert table.k == 4 and forced == 2
    assert (cidx[4:] < 4).all() and (dist[4:] > 0.5).all()


def test_consolidate_merges_close_centroids_larger_survives() -> None:
    a, b = np.eye(16, dtype=np.float32)[:2]
    c = np.stack([a, _unit(a + 0.2 * b), b])
    done = consolidate(c, np.ones(3, np.int64), np.array([5.0, 50.0, 5.0]), c[:0], 0.4, 100)
    assert done.merged == {0: 1}  # 0 and 1 are 0.2 apart; 1 has more rows
    assert done.kept.tolist() == [1, 2] and done.split_off == 0 and done.changed


def test_consolidate_splits_members_that_drifted_out_of_reach() -> None:
    a, b = np.eye(16, dtype=np.float32)[:2]
    # One centroid, its sample in two tight groups 1.4 apart: the mean lies 0.7 from each.
    sample = np.stack([a, a, _unit(a + 0.01 * b), b, _unit(b + 0.01 * a)])
    done = consolidate(_unit(a + b)[None], np.array([5]), np.array([5.0]), sample, 0.4, 100)
    assert done.split_off == 1 and done.kept.tolist() == [0] and done.split == (0,)
    ids = np.argmin(np.linalg.norm(sample[:, None] - done.centroids[None], axis=2), axis=1)
    assert ids.tolist() == [0, 0, 0, 1, 1]  # the kept id follows the first (larger) group


def test_consolidate_keeps_clusters_the_sample_does_not_hold() -> None:
    c = np.eye(16, dtype=np.float32)[:3]
    done = consolidate(c, np.ones(3, np.int64), np.ones(3), c[:1], 0.4, 100)
    assert not done.changed
    np.testing.assert_allclose(done.centroids, c, atol=1e-6)


def test_threshold_cluster_offline() -> None:
    x, y = _blobs(8, 400, 0.05, seed=1)
    centroids, labels = threshold_cluster(x, 0.5)
    assert len(centroids) == 8
    assert ari(y.tolist(), labels.tolist()) == 1.0
