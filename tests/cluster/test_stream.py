"""Per-source online clustering by distance: new kinds at once, consolidation, stable ids,
aliases, the cap, persistence."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from logclust.cli.traffic import generate_traffic
from logclust.cluster.config import StreamClusterConfig
from logclust.cluster.descriptions import template_of
from logclust.cluster.quality import ari
from logclust.cluster.stream import SourceClusterer, StreamClusters, unpack_state
from logclust.embed.embedding_cache import EmbeddingCache
from logclust.server.fair import FairExecutor
from logclust.text.masking import Masker
from logclust.wire import contract, ipc
from logclust.wire.contract import LimitExceededError
from tests.fakes import FakeLabeler, SlowLabeler, fake_traffic

CFG = StreamClusterConfig(reservoir_size=1000, background_consolidation=False)


def _run(sc: StreamClusters, table: pa.Table, batch: int = 250) -> np.ndarray:
    out = []
    for part in ipc.iter_slices(table, batch):
        ids, _, _, _ = sc.label(
            part.column("body").combine_chunks(),
            contract.source_column(part),
            contract.time_ms_column(part, 0),
        )
        out.append(ids)
    return np.concatenate(out)


def _saved(sc: StreamClusters) -> tuple[dict[str, bytes], dict[str, bytes]]:
    """`(states, counters)` as a flush saves them (`load_states` arguments)."""
    parts = sc.take_dirty_parts()
    states = {name: model for name, (model, _) in parts.items() if model is not None}
    return states, {name: counts for name, (_, counts) in parts.items()}


class VectorEmbedder:
    """Embeds a masked text by a table lookup: tests place texts exactly where they want."""

    def __init__(self, vectors: dict[str, np.ndarray], threshold: float = 0.4) -> None:
        self.masker = Masker()
        self.vectors = {k: v / np.linalg.norm(v) for k, v in vectors.items()}
        self.dim = len(next(iter(vectors.values())))
        self.threshold: float | None = threshold

    def embed_masked(self, masked: pa.Array) -> np.ndarray:
        return np.stack([self.vectors[t] for t in masked.to_pylist()]).astype(np.float32)


def _at(angle: float, dim: int = 8) -> np.ndarray:
    """A unit vector at `angle` radians from e0 in the e0-e1 plane (distance 2 sin(a/2))."""
    v = np.zeros(dim)
    v[0], v[1] = np.cos(angle), np.sin(angle)
    return v


def _angle(distance: float) -> float:
    return 2.0 * np.arcsin(distance / 2.0)


def test_template_keeps_agreeing_tokens() -> None:
    members = ["user <NUM> logged in from <IP>", "user <NUM> logged out from <IP>"]
    assert template_of(members) == "user <NUM> logged <*> from <IP>"
    mixed = ["a=<NUM>&b=x", "a=<NUM>&b=y", "other shape"]
    assert template_of(mixed) == "a=<NUM>&b=<*>"
    assert template_of([]) == ""


def test_request_kinds_found_without_k_and_without_warmup() -> None:
    table = fake_traffic(3000, seed=1)
    sc = StreamClusters(FakeLabeler(), CFG)
    ids = _run(sc, table, batch=100)
    assert (ids >= 0).all()  # no warm-up, no -1: the first batch is labelled
    kinds = table.column("kind").to_pylist()
    assert ari(kinds, ids.tolist()) >= 0.99
    clusterer = sc.sources["frontend"]
    assert len(set(kinds)) <= clusterer.k <= len(set(kinds)) + 2
    templates = {st.template for st in clusterer.describe()}
    assert "product_id=<*>&quantity=<NUM>" in templates
    assert "currency_code=<*>" in templates


def test_a_new_kind_opens_a_cluster_in_its_own_batch() -> None:
    sc = StreamClusters(FakeLabeler(), CFG)
    first = fake_traffic(500, seed=2)
    first = first.filter(pa.compute.equal(first.column("kind"), "add_to_cart"))
    known = set(_run(sc, first).tolist())
    mixed = pa.table({"body": ["product_id=ABC&quantity=2", '{"username": "x", "password": "y"}']})
    ids = _run(sc, mixed)
    assert ids[0] in known
    assert ids[1] >= 0 and ids[1] not in known


def test_ids_stable_across_100_consolidations() -> None:
    sc = StreamClusters(FakeLabeler(), CFG)
    table = fake_traffic(2000, seed=3)
    _run(sc, table)
    clusterer = sc.sources["frontend"]
    clusterer.consolidate_now()  # the first may move centroids to their means
    reference = _run(sc, table)
    for _ in range(100):
        clusterer.consolidate_now()
        np.testing.assert_array_equal(_run(sc, table, batch=1000), reference)
    assert clusterer.consolidations == 101
    assert not clusterer.aliases


def test_scheduled_consolidations_back_off_on_a_steady_stream() -> None:
    cfg = StreamClusterConfig(
        consolidate_every_rows=500, consolidate_max_share=1.0, background_consolidation=False
    )
    sc = StreamClusters(FakeLabeler(), cfg)
    table = fake_traffic(1000, seed=4)
    for _ in range(8):
        _run(sc, table, batch=500)
    # About 16 batches of 500 rows: without backoff a consolidation after each; with it
    # the gaps double (1, 2, 4, 8 batches) while nothing changes.
    assert 3 <= sc.sources["frontend"].consolidations <= 6


def test_close_clusters_merge_and_the_larger_keeps_its_id() -> None:
    # b lies 0.45 from a (beyond the 0.4 threshold: its own cluster). Members arrive on
    # the sides facing each other, so the two running means end up 0.3 apart: within the
    # threshold, one cluster by the rule, which the consolidation restores.
    vectors = {
        "a": _at(0.0),
        "b": _at(_angle(0.45)),
        "aa": _at(_angle(0.15)),
        "bb": _at(_angle(0.30)),
    }
    sc = StreamClusters(VectorEmbedder(vectors), CFG)
    ids = _run(sc, pa.table({"body": ["a"] * 10 + ["b"]}))
    ids = np.concatenate([ids, _run(sc, pa.table({"body": ["aa"] * 10 + ["bb"]}))])
    a_id, b_id = int(ids[0]), int(ids[10])
    assert a_id != b_id and int(ids[11]) == a_id and int(ids[21]) == b_id
    clusterer = sc.sources["default"]
    assert clusterer.consolidate_now()
    assert clusterer.aliases == {b_id: a_id}
    assert _run(sc, pa.table({"body": ["b"]})).tolist() == [a_id]
    stats = {st.cluster_id: st for st in clusterer.describe()}
    assert stats[b_id].merged_into == a_id and not stats[b_id].active
    assert stats[a_id].size == 23  # both clusters' 22 rows, then the "b" labelled after


def test_texts_placed_before_a_merge_follow_the_survivor_without_being_placed_again() -> None:
    vectors = {"a": _at(0.0), "b": _at(_angle(0.45)), "aa": _at(_angle(0.15))}
    vectors["bb"] = _at(_angle(0.30))
    sc = StreamClusters(VectorEmbedder(vectors), CFG)
    ids = _run(sc, pa.table({"body": ["a"] * 10 + ["b", "aa", "bb"]}))
    a_id, b_id = int(ids[0]), int(ids[10])
    clusterer = sc.sources["default"]
    assert clusterer.consolidate_now() and clusterer.aliases == {b_id: a_id}
    members = int(clusterer._table.counts[: clusterer.k].sum())
    again = _run(sc, pa.table({"body": ["bb", "b", "aa", "a"]}))
    assert again.tolist() == [a_id] * 4
    # Placing a text adds it to its centroid's running mean: nothing was placed again.
    assert int(clusterer._table.counts[: clusterer.k].sum()) == members


def test_state_round_trip_keeps_ids_and_aliases() -> None:
    vectors = {"a": _at(0.0), "b": _at(_angle(0.45)), "c": _at(np.pi / 2)}
    emb = VectorEmbedder(vectors)
    sc = StreamClusters(emb, CFG)
    ids = _run(sc, pa.table({"body": ["a", "b", "c", "a"]}))
    src = sc.sources["default"]
    src.aliases[int(ids[1])] = int(ids[0])
    restored = StreamClusters(emb, CFG)
    restored.load_states(*_saved(sc))
    again = restored.sources["default"]
    assert again.aliases == src.aliases and again.k == src.k
    assert _run(restored, pa.table({"body": ["c", "a"]})).tolist() == [ids[2], ids[0]]


def test_cap_on_clusters_is_counted_not_silent() -> None:
    vectors = {name: np.eye(8)[i] for i, name in enumerate("abcdef")}
    cfg = StreamClusterConfig(max_clusters=3, background_consolidation=False)
    sc = StreamClusters(VectorEmbedder(vectors), cfg)
    ids = _run(sc, pa.table({"body": list("abcdef")}))
    assert sc.sources["default"].k == 3
    assert set(ids.tolist()) == {0, 1, 2}
    assert sc.counts() == {"default": (3, 3)}


def test_threshold_comes_from_the_bundle_the_config_or_the_source() -> None:
    fake = FakeLabeler()
    fake.threshold = 0.55
    cfg = StreamClusterConfig(source_thresholds={"coarse": 1.5})
    sc = StreamClusters(fake, cfg, threshold=fake.threshold)
    assert sc.threshold_for("any") == 0.55
    assert sc.threshold_for("coarse") == 1.5
    assert StreamClusters(fake, StreamClusterConfig(threshold=0.3)).threshold_for("x") == 0.3
    # A coarse source puts every kind of request in a handful of clusters.
    t = fake_traffic(600, seed=5)
    t = t.set_column(t.column_names.index("source"), "source", pa.array(["coarse"] * len(t)))
    _run(sc, t)
    assert sc.sources["coarse"].k < len(set(t.column("kind").to_pylist()))


def test_state_of_another_dimension_is_ignored() -> None:
    sc = StreamClusters(FakeLabeler(), CFG)
    _run(sc, fake_traffic(300))
    other = StreamClusters(FakeLabeler(dim=32), CFG)
    other.load_states(*_saved(sc))
    assert other.sources == {}
    with pytest.raises(ValueError, match="Received: version=3, dim=256"):
        SourceClusterer.from_bytes(sc.sources["frontend"].to_bytes(), CFG, dim=32, threshold=0.5)


def test_sources_are_clustered_separately_and_capped() -> None:
    sc = StreamClusters(FakeLabeler(), CFG, max_sources=2)
    t = generate_traffic(400)
    t = t.set_column(
        t.column_names.index("source"), "source", pa.array(["a", "b"] * 200, pa.string())
    )
    _run(sc, t, batch=400)
    assert sorted(sc.sources) == ["a", "b"]
    assert sc.sources["a"].rows_seen == 200
    with pytest.raises(LimitExceededError, match="Too many distinct sources"):
        _run(sc, pa.table({"body": ["x"], "source": ["c"]}))


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


def test_batch_dedupes_before_embedding() -> None:
    fake = FakeLabeler()
    sc = StreamClusters(fake, CFG)
    _run(sc, pa.table({"body": [f"GET /item?id={i}" for i in range(500)]}), batch=500)
    assert fake.rows_embedded == 1  # one masked text


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_clusters": 0},
        {"threshold": 0.0},
        {"threshold": float("nan")},
        {"source_thresholds": {"a": 3.0}},
        {"consolidate_max_share": 0.0},
        {"consolidate_new_clusters": -1},
    ],
)
def test_config_checks(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="Received"):
        StreamClusterConfig(**kwargs)  # type: ignore[arg-type]


def test_serving_fit_imports_no_sklearn_or_scipy(tiny_bundle: Path) -> None:
    # The sidecar's memory budget leaves no room for scikit-learn and SciPy (~100 MB).
    code = (
        "import sys\n"
        "from logclust import Labeler\n"
        "from logclust.wire import contract, ipc\n"
        "from logclust.cli.traffic import generate_traffic\n"
        "from logclust.cluster.stream import StreamClusterConfig, StreamClusters\n"
        f"lab = Labeler.load({str(tiny_bundle)!r})\n"
        "lab.fit(['INFO fs: opened file /a/b size 3 bytes', 'ERROR disk full', 'x 1'], k=None)\n"
        "cfg = StreamClusterConfig(consolidate_every_rows=300, consolidate_max_share=1.0,\n"
        "                          background_consolidation=False)\n"
        "sc = StreamClusters(lab, cfg)\n"
        "for part in ipc.iter_slices(generate_traffic(1200, seed=2), 200):\n"
        "    sc.label(part.column('body').combine_chunks(), contract.source_column(part),\n"
        "             contract.time_ms_column(part, 0))\n"
        "assert sc.sources['frontend'].consolidations >= 2\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('sklearn', 'scipy'))\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


class _SlowFake(FakeLabeler):
    """Embedding takes a while: concurrent batches overlap between check and insert."""

    def embed_masked(self, masked: pa.Array) -> np.ndarray:
        time.sleep(0.05)
        return super().embed_masked(masked)


def test_source_limit_holds_under_concurrent_batches() -> None:
    sc = StreamClusters(_SlowFake(), CFG, max_sources=64)

    def one(i: int) -> bool:
        body = pa.array([f"event {i} happened"])
        source = pa.array([f"svc-{i}"]).dictionary_encode()
        try:
            sc.label(body, source, np.zeros(1, np.int64))
        except LimitExceededError:
            return False
        return True

    with ThreadPoolExecutor(16) as pool:
        accepted = sum(pool.map(one, range(80)))
    assert len(sc.sources) == accepted == 64


def test_the_memo_is_shared_by_the_sources_present() -> None:
    cfg = StreamClusterConfig(memo_size=100, cache_size=1000, background_consolidation=False)
    sc = StreamClusters(FakeLabeler(), cfg, max_sources=4)
    t = fake_traffic(200, seed=6)
    one = t.set_column(t.column_names.index("source"), "source", pa.array(["a"] * len(t)))
    _run(sc, one)
    assert sc.sources["a"].memo_limit() == 400  # alone: the memo of all 4 sources
    two = one.set_column(one.column_names.index("source"), "source", pa.array(["b"] * len(t)))
    _run(sc, two)
    assert sc.sources["a"].memo_limit() == 200 == sc.sources["b"].memo_limit()
    small = StreamClusters(FakeLabeler(), StreamClusterConfig(memo_size=100, cache_size=150))
    _run(small, one)
    assert small.sources["a"].memo_limit() == 150  # never past the embedding cache


def _word(i: int) -> str:
    """Letters only: masking keeps every text apart."""
    return "".join(chr(97 + int(d)) for d in np.base_repr(i, 10))


def test_a_burst_of_new_texts_on_one_source_does_not_hold_up_another() -> None:
    sc = StreamClusters(SlowLabeler(per_text_s=0.005), CFG)
    steady = pa.table({"body": [f"GET /cart item {i} ok" for i in range(50)], "source": ["b"] * 50})
    _run(sc, steady)  # placed: later batches of these texts need no model

    burst = pa.table(
        {"body": [f"user {_word(i)} wrote a note" for i in range(400)], "source": ["a"] * 400}
    )
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(_run, sc, burst, 400)  # 400 new texts: about 2 s of model
        time.sleep(0.3)
        t0 = time.perf_counter()
        again = _run(sc, steady)
        waited = time.perf_counter() - t0
        assert not running.done()  # the burst was still being encoded
        running.result()
    assert waited < 0.6  # one slice of 16 texts (0.08 s) and the batch's own work
    assert len(set(again.tolist())) >= 1


def test_a_burst_yields_the_only_slot_of_the_label_pool_between_slices() -> None:
    # The server's pool on a one-core sidecar: one batch at a time. The burst's slices are
    # checkpoints, so the other stream's batch runs before the burst ends.
    sc = StreamClusters(SlowLabeler(per_text_s=0.005), CFG)
    steady = pa.table({"body": [f"GET /cart item {i} ok" for i in range(50)], "source": ["b"] * 50})
    _run(sc, steady)
    burst = pa.table(
        {"body": [f"user {_word(i)} wrote a note" for i in range(400)], "source": ["a"] * 400}
    )
    pool = FairExecutor(1)
    try:
        running = pool.submit("a", 1_000, _run, sc, burst, 400)  # about 2 s of model
        time.sleep(0.3)
        t0 = time.perf_counter()
        pool.submit("b", 1_000, _run, sc, steady).result(10)
        waited = time.perf_counter() - t0
        assert not running.done()
        running.result(30)
    finally:
        pool.shutdown()
    assert waited < 0.6  # one slice, not the 1.7 s left of the burst


def test_state_of_format_2_still_loads_and_a_truncated_one_is_refused() -> None:
    sc = StreamClusters(FakeLabeler(), CFG)
    _run(sc, fake_traffic(300))
    src = sc.sources["frontend"]
    meta, arrays = unpack_state(src.to_bytes())
    # Format 2 (before pack_state): the same document, unit centroids, in an .npz.
    buf = io.BytesIO()
    doc = json.dumps({**meta, "version": 2}).encode()
    unit = src._table.unit
    np.savez(
        buf,
        meta=np.frombuffer(doc, np.uint8),
        centroids=unit,
        counts=arrays["counts"],
        ids=arrays["ids"],
    )
    old = SourceClusterer.from_bytes(buf.getvalue(), CFG, dim=256, threshold=src.threshold)
    assert old.dirty  # written again in the current format at the next flush
    assert old.describe() == src.describe()
    np.testing.assert_allclose(old._table.unit, src._table.unit, rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="lies outside"):
        SourceClusterer.from_bytes(src.to_bytes()[:-5], CFG, dim=256, threshold=src.threshold)


def test_a_flush_encoding_one_source_does_not_hold_up_another() -> None:
    sc = StreamClusters(FakeLabeler(), CFG)
    t = fake_traffic(300)
    _run(sc, t.set_column(t.column_names.index("source"), "source", pa.array(["slow"] * len(t))))
    _run(sc, t)  # source "frontend"
    slow = sc.sources["slow"]
    encode = slow.to_bytes

    def slow_to_bytes() -> bytes:
        time.sleep(1.5)
        return encode()

    slow.to_bytes = slow_to_bytes  # type: ignore[method-assign]
    with ThreadPoolExecutor(1) as pool:
        flush = pool.submit(sc.take_dirty_parts)
        time.sleep(0.2)  # the flush is encoding "slow"
        t0 = time.monotonic()
        _run(sc, t.slice(0, 50))
        waited = time.monotonic() - t0
        assert set(flush.result(10)) == {"slow", "frontend"}
    assert waited < 1.0, f"the other source's batch waited {waited:.2f} s for the flush"


def test_a_steady_stream_saves_counters_only_and_restores_them() -> None:
    sc = StreamClusters(FakeLabeler(), CFG)
    t = fake_traffic(300)
    _run(sc, t)
    first = sc.take_dirty_parts()["frontend"]
    assert first[0] is not None  # new clusters: the whole state
    _run(sc, t)  # the same texts again: only sizes and times move
    model, counters = sc.take_dirty_parts()["frontend"]
    assert model is None and len(counters) < len(first[0]) / 4
    assert sc.take_dirty_parts() == {}  # nothing since
    restored = StreamClusters(FakeLabeler(), CFG)
    restored.load_states({"frontend": first[0]}, {"frontend": counters})
    got, want = restored.sources["frontend"], sc.sources["frontend"]
    assert got.describe() == want.describe()
    assert got.rows_seen == want.rows_seen == 2 * len(t)
    # Counters of ids the state does not have are refused, the state kept.
    other = StreamClusters(FakeLabeler(), CFG)
    other.load_states({"frontend": first[0]}, {"frontend": b"junk"})
    assert other.sources["frontend"].rows_seen == len(t)
