"""The embedding cache: each masked text embedded once while it stays, CLOCK eviction."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from logclust.embed.embedding_cache import EmbeddingCache
from tests.fakes import FakeLabeler


def test_cache_embeds_only_misses() -> None:
    fake = FakeLabeler()
    cache = EmbeddingCache(fake, capacity=3)
    a = cache.embed(["x", "y"])
    b = cache.embed(["y", "z", "x"])
    assert fake.rows_embedded == 3
    np.testing.assert_array_equal(a[0], b[2])
    cache.embed(["w"])  # "x" and "y" were hit since stored: "z", seen once, goes (CLOCK)
    cache.embed(["x"])
    assert fake.rows_embedded == 4
    cache.embed(["z"])  # embedded again
    assert fake.rows_embedded == 5
    assert (cache.hits, cache.misses) == (3, 5)


def test_a_burst_of_texts_seen_once_leaves_the_steady_texts_cached() -> None:
    fake = FakeLabeler(dim=16)
    cache = EmbeddingCache(fake, capacity=100)
    steady = [f"steady {i}" for i in range(40)]
    cache.embed(steady)
    for burst in range(10):  # 300 texts seen once (3x the capacity), steady batches between
        cache.embed([f"new {burst} {j}" for j in range(30)])
        before = fake.rows_embedded
        cache.embed(steady)
        assert fake.rows_embedded == before, f"steady texts evicted by burst {burst}"
    # A burst wider than the free slots takes hit slots too, in the clock's order.
    cache.embed([f"wide {j}" for j in range(90)])
    assert cache.size == 100


def test_cache_slots_stay_consistent_under_random_use() -> None:
    fake = FakeLabeler(dim=8)
    cache = EmbeddingCache(fake, capacity=17)
    rng = np.random.default_rng(0)
    for _ in range(300):
        keys = list(dict.fromkeys(f"t{k}" for k in rng.integers(0, 60, rng.integers(1, 25))))
        got = cache.embed(keys)
        np.testing.assert_allclose(got, fake.embed_masked(pa.array(keys)), atol=1e-6)
        assert cache.size <= 17
        assert all(cache._keys[slot] == key for key, slot in cache._index.items())
