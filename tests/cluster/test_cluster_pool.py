"""Memory bounds shared by the sources: `max_clusters_total`, and what a forgotten or
evicted source leaves behind (nothing)."""

from __future__ import annotations

import gc
import weakref
import zlib

import numpy as np
import pyarrow as pa
import pytest

from logclust.cluster.config import StreamClusterConfig
from logclust.cluster.router import StreamClusters
from logclust.text.masking import Masker


class FarEmbedder:
    """Every distinct text gets its own random direction: any two lie far apart (about
    1.4), so each new text opens a cluster while the cap allows."""

    def __init__(self, dim: int = 64) -> None:
        self.masker = Masker()
        self.dim = dim
        self.threshold: float | None = 0.4

    def embed_masked(self, masked: pa.Array) -> np.ndarray:
        rows = [
            np.random.default_rng(zlib.crc32(t.encode())).standard_normal(self.dim)
            for t in masked.to_pylist()
        ]
        out = np.stack(rows).astype(np.float32)
        return out / np.linalg.norm(out, axis=1, keepdims=True)


POOL = StreamClusterConfig(
    templates=False,  # the pool bounds clusters whoever opens them; vectors decide here
    max_clusters=50,
    max_clusters_total=40,
    reserved_clusters=5,
    reservoir_size=64,
    background_consolidation=False,
    consolidate_new_clusters=0,
)


def _send(sc: StreamClusters, source: str, n: int, tag: str = "") -> None:
    texts = [f"{source} {tag} line {chr(97 + i % 26)}{chr(97 + i // 26 % 26)}" for i in range(n)]
    sc.label(pa.array(texts), pa.array([source] * n), np.zeros(n, np.int64))


def test_one_source_borrows_what_others_leave_and_each_keeps_its_reserve() -> None:
    sc = StreamClusters(FarEmbedder(), POOL, max_sources=4)
    _send(sc, "a", 100)
    # 40 in all, 5 reserved for each of the 3 sources still to come: a holds 25.
    assert sc.sources["a"].k == 25 and sc.sources["a"].cap_hits == 75
    _send(sc, "b", 100)
    assert sc.sources["b"].k == 5  # its reserve, nothing more is left
    _send(sc, "c", 3)
    assert sc.sources["c"].k == 3
    assert sum(c.k for c in sc.sources.values()) <= POOL.max_clusters_total  # type: ignore[operator]
    # A forgotten source's clusters go back to the pool.
    assert sc.forget("a")
    _send(sc, "b", 100, tag="more")
    # b takes all but the reserves of c (it holds 3 of its 5) and of two absent sources.
    assert sc.sources["b"].k == 40 - 5 - 2 * 5


def test_consolidation_splits_stop_at_the_source_cap() -> None:
    sc = StreamClusters(FarEmbedder(), POOL, max_sources=4)
    _send(sc, "a", 100)
    clus = sc.sources["a"]
    k = clus.k
    sc.consolidate_now("a")  # far members could be split off, but the pool is full
    assert clus.k <= k


def test_a_total_below_the_reserves_is_refused() -> None:
    with pytest.raises(ValueError, match="reserved_clusters for each source"):
        StreamClusters(FarEmbedder(), POOL, max_sources=9)
    with pytest.raises(ValueError, match="max_clusters_total must be positive"):
        StreamClusterConfig(max_clusters_total=0)


def test_forgotten_and_evicted_sources_are_released() -> None:
    sc = StreamClusters(FarEmbedder(), POOL, max_sources=4)
    for s in ("a", "b", "c"):
        _send(sc, s, 30)
    refs = {s: weakref.ref(sc.sources[s]) for s in ("a", "b")}
    assert sc.forget("a")
    sc.sources["b"].last_batch_ms -= 10_000
    assert sc.evict_idle(before_ms=sc.sources["c"].last_batch_ms - 1) == ["b"]
    gc.collect()
    assert all(ref() is None for ref in refs.values())  # nothing else holds them
    assert set(sc.sources) == {"c"}
