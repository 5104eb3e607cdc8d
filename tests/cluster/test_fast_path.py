"""The sidecar's fast path labels exactly like the plain path.

Fast path: `StreamClusters.label` (mask cache by digit shape, dedupe within the batch,
embedding cache across batches, the memo of placements). Plain path: every row masked on
its own, cut to its message (`logclust.text.header`), and the placement rule
(`logclust.cluster.threshold.place`) applied directly. Same input, same cluster ids.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from logclust.cluster.config import StreamClusterConfig
from logclust.cluster.router import StreamClusters
from logclust.cluster.threshold import Centroids, place
from logclust.text.header import message
from tests.conftest import synthetic_lines
from tests.fakes import FakeLabeler, fake_traffic
from tests.support.replay import has_loghub, loghub_replay

# No consolidation while comparing (the plain path applies the placement rule alone);
# caches large enough that the memo of placements is never cleared mid-stream.
CONFIG = StreamClusterConfig(
    templates=False,  # the embedding rule; the templates' plain path is in test_templates
    consolidate_every_rows=10**9,
    consolidate_new_clusters=0,
    background_consolidation=False,
    cache_size=4096,
)


def _lines(n: int) -> list[str]:
    """Loghub replay (digits re-drawn each pass) when present, else synthetic lines."""
    if has_loghub():
        return loghub_replay(n, seed=3)
    return [t for t, _ in synthetic_lines(n, seed=3)]


def _labeler(kind: str) -> Any:
    if kind == "fake":
        return FakeLabeler()
    from logclust.cluster.labeler import Labeler

    return Labeler.load()  # the shipped bundle


def _plain_ids(labeler: Any, lines: list[str], threshold: float, batch: int) -> np.ndarray:
    """The placement rule applied directly: every row masked on its own, no caches, each
    batch's new texts placed in order of first occurrence."""
    table = Centroids.empty(labeler.dim)
    placed: dict[str, int] = {}
    out = []
    for start in range(0, len(lines), batch):
        masked = labeler.masker.mask(pa.array(lines[start : start + batch], pa.string()))
        texts = [message(t) for t in masked.to_pylist()]  # the sidecar's default
        new = [t for t in dict.fromkeys(texts) if t not in placed]
        if new:
            cidx, _, _ = place(labeler.embed_masked(pa.array(new)), table, threshold, 4096)
            placed.update(zip(new, cidx.tolist(), strict=True))
        out.append([placed[t] for t in texts])
    return np.concatenate(out)


@pytest.mark.parametrize(("kind", "rows"), [("fake", 6000), ("bundle", 2000)])
def test_fast_path_gives_the_plain_path_ids(kind: str, rows: int) -> None:
    labeler = _labeler(kind)
    sc = StreamClusters(labeler, CONFIG, threshold=labeler.threshold)
    lines = _lines(rows)
    ids = []
    for start in range(0, len(lines), 500):
        batch = pa.array(lines[start : start + 500], pa.string())
        out = sc.label(batch, pa.array(["default"] * len(batch)), np.zeros(len(batch), np.int64))
        ids.append(out[0])
    clusterer = sc.sources["default"]
    assert clusterer.k >= 2
    plain = _plain_ids(labeler, lines, sc.threshold_for("default"), 500)
    np.testing.assert_array_equal(np.concatenate(ids), plain)
    # The caches did work (otherwise this compares the plain path with itself).
    assert sc.masks.hits > 0 and sc.cache.hits > 0
    assert sc.cache.size <= CONFIG.cache_size


def test_memo_of_placed_texts_follows_consolidations() -> None:
    """After a consolidation merges clusters, no row gets a merged id: the memo of
    placements is cleared with the model it described."""
    labeler = FakeLabeler()
    config = StreamClusterConfig(
        consolidate_every_rows=1000,
        consolidate_max_share=1.0,
        background_consolidation=False,
        templates=False,  # consolidation merges what distance joins (templates: none)
    )
    # A coarse threshold makes running means drift together, so consolidations merge
    # (the demo's request kinds: the same with or without loghub beside the repo).
    sc = StreamClusters(labeler, config, threshold=1.1)
    lines = fake_traffic(10_000, seed=3).column("body").to_pylist()[:8000]
    source = pa.array(["default"] * 500)
    merged: set[int] = set()  # ids merged before the batch (one may merge after it)
    for start in range(0, len(lines), 500):
        batch = pa.array(lines[start : start + 500], pa.string())
        got, _, _, _ = sc.label(batch, source, np.zeros(500, np.int64))
        assert not set(got.tolist()) & merged, merged
        merged = set(sc.sources["default"].aliases)
    assert merged and sc.sources["default"].consolidations >= 3
