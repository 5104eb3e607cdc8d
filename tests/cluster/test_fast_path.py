"""The sidecar's fast path labels exactly like the plain path.

Fast path: `StreamClusters.label` (mask cache by digit shape, dedupe within the batch,
embedding cache across batches). Plain path: `Labeler.embed` on every row (masks each row,
no cache) and the same centroids. Same input, same cluster ids.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from logclust.cluster.config import StreamClusterConfig
from logclust.cluster.stream import StreamClusters
from tests.conftest import LOGHUB, synthetic_lines
from tests.fakes import FakeLabeler

# No refit while comparing (the model must stay the one the plain path uses); small
# caches so that evictions happen too.
CONFIG = StreamClusterConfig(
    warmup_rows=256,
    refit_every_rows=10**9,
    refit_outlier_rows=0,
    background_refit=False,
    cache_size=300,
)


def _lines(n: int) -> list[str]:
    """Loghub replay (digits re-drawn each pass) when present, else synthetic lines."""
    if (LOGHUB / "HDFS").is_dir():
        from bench.workloads import replay

        return replay(n, seed=3)
    return [t for t, _ in synthetic_lines(n, seed=3)]


def _labeler(kind: str) -> object:
    if kind == "fake":
        return FakeLabeler()
    from logclust.cluster.labeler import Labeler

    return Labeler.load()  # the shipped bundle


@pytest.mark.parametrize(("kind", "rows"), [("fake", 6000), ("bundle", 2000)])
def test_fast_path_gives_the_plain_path_ids(kind: str, rows: int) -> None:
    labeler = _labeler(kind)
    sc = StreamClusters(labeler, CONFIG)  # type: ignore[arg-type]
    lines = _lines(rows)
    ids, dist = [], []
    for start in range(0, len(lines), 500):
        batch = pa.array(lines[start : start + 500], pa.string())
        out = sc.label(batch, pa.array(["default"] * len(batch)), np.zeros(len(batch), np.int64))
        ids.append(out[0])
        dist.append(out[1])
    clusterer = sc.sources["default"]
    assert clusterer.fits == 1 and clusterer.k >= 2
    plain_ids, plain_dist = clusterer.predict(labeler.embed(lines))  # type: ignore[attr-defined]
    fast_ids, fast_dist = np.concatenate(ids), np.concatenate(dist)
    np.testing.assert_array_equal(fast_ids, plain_ids)
    np.testing.assert_allclose(fast_dist, plain_dist, atol=1e-5)
    # The caches did work (otherwise this compares the plain path with itself).
    assert sc.masks.hits > 0 and sc.cache.hits > 0
    assert sc.cache.size <= CONFIG.cache_size


def test_memo_of_placed_texts_follows_refits() -> None:
    """Texts placed by one model are placed again by the next: ids match the model live
    when each batch arrives, across refits that change k and the centroids."""
    labeler = FakeLabeler()
    config = StreamClusterConfig(
        warmup_rows=256,
        refit_every_rows=1000,
        refit_max_share=1.0,
        refit_k_window=16,
        background_refit=False,
    )
    sc = StreamClusters(labeler, config)
    lines = _lines(8000)
    source = pa.array(["default"] * 500)
    sc.label(pa.array(lines[:500], pa.string()), source, np.zeros(500, np.int64))  # first fit
    clusterer = sc.sources["default"]
    for start in range(500, len(lines), 500):
        batch = lines[start : start + 500]
        expected, _ = clusterer.predict(labeler.embed(batch))
        got, _, _, _ = sc.label(pa.array(batch, pa.string()), source, np.zeros(500, np.int64))
        np.testing.assert_array_equal(got, expected)
    assert clusterer.fits >= 4
