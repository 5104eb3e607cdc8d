"""Per-source online clustering: warm-up, automatic k, outliers, stable ids, persistence."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from sklearn.metrics import adjusted_rand_score

from logclust.cli.demo import generate_traffic
from logclust.cluster.config import StreamClusterConfig
from logclust.cluster.descriptions import template_of
from logclust.cluster.stream import SourceClusterer, StreamClusters
from logclust.embed.embedding_cache import EmbeddingCache
from logclust.wire import contract, ipc
from logclust.wire.contract import LimitExceededError
from tests.fakes import FakeLabeler

CFG = StreamClusterConfig(warmup_rows=200, reservoir_size=1000, background_refit=False)


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


def test_template_keeps_agreeing_tokens() -> None:
    members = ["user <NUM> logged in from <IP>", "user <NUM> logged out from <IP>"]
    assert template_of(members) == "user <NUM> logged <*> from <IP>"
    mixed = ["a=<NUM>&b=x", "a=<NUM>&b=y", "other shape"]
    assert template_of(mixed) == "a=<NUM>&b=<*>"
    assert template_of([]) == ""


def test_warmup_then_automatic_k_recovers_request_kinds() -> None:
    table = generate_traffic(2000, seed=1)
    sc = StreamClusters(FakeLabeler(), CFG)
    ids = _run(sc, table, batch=100)
    assert (ids[:100] == -1).all()  # first batch is before the warm-up threshold
    kinds = table.column("kind").to_pylist()
    assert adjusted_rand_score(kinds[200:], ids[200:]) >= 0.95
    clusterer = sc.sources["frontend"]
    assert clusterer.k == 3
    templates = {st.template for st in clusterer.describe()}
    assert "product_id=<ID>&quantity=<NUM>" in templates
    assert "currency_code=<*>" in templates


def test_first_batch_reaching_warmup_is_already_clustered() -> None:
    sc = StreamClusters(FakeLabeler(), CFG)
    ids = _run(sc, generate_traffic(400), batch=400)
    assert (ids >= 0).all()


def test_far_rows_are_flagged_not_forced() -> None:
    sc = StreamClusters(FakeLabeler(), CFG)
    _run(sc, generate_traffic(400))
    odd = pa.table({"body": ["kernel: Out of memory: Kill process 1234 (java) score 900"] * 3})
    ids = _run(sc, odd)
    assert (ids == -1).all()
    described = {st.cluster_id: st for st in sc.sources["default"].describe()}
    assert described[-1].size == 3


def test_ids_stable_across_refit_and_restart() -> None:
    cfg = StreamClusterConfig(
        warmup_rows=200,
        reservoir_size=1000,
        refit_every_rows=600,
        background_refit=False,
        refit_max_share=1.0,  # refit as soon as due, however long the last fit took
    )
    sc = StreamClusters(FakeLabeler(), cfg)
    probe = generate_traffic(300, seed=7)
    first = _run(sc, generate_traffic(400, seed=2))
    before = _run(sc, probe)
    _run(sc, generate_traffic(1500, seed=3))  # triggers refits
    assert sc.sources["frontend"].fits >= 2
    after = _run(sc, probe)
    np.testing.assert_array_equal(before, after)
    assert (first >= 0).all()
    # Restart: state bytes into a fresh instance.
    states = sc.take_dirty_states()
    assert set(states) == {"frontend"} and sc.take_dirty_states() == {}
    restored = StreamClusters(FakeLabeler(), cfg)
    restored.load_states(states)
    np.testing.assert_array_equal(_run(restored, probe), before)
    assert restored.sources["frontend"].rows_seen == sc.sources["frontend"].rows_seen + 300


@pytest.mark.parametrize(("share", "refits"), [(1.0, True), (1e-6, False)])
def test_refits_are_spaced_by_their_cost(share: float, refits: bool) -> None:
    cfg = StreamClusterConfig(
        warmup_rows=200,
        reservoir_size=1000,
        refit_every_rows=300,
        background_refit=False,
        refit_max_share=share,
    )
    sc = StreamClusters(FakeLabeler(), cfg)
    _run(sc, generate_traffic(2000, seed=4))  # refits due every 300 rows
    # share 1e-6: the next refit waits a million times the warm-up fit's duration.
    assert (sc.sources["frontend"].fits > 1) is refits


@pytest.mark.parametrize("backoff_max", [1, 8])
def test_refits_that_change_nothing_back_off(backoff_max: int) -> None:
    cfg = StreamClusterConfig(
        warmup_rows=200,
        reservoir_size=1000,
        refit_every_rows=300,
        background_refit=False,
        refit_max_share=1.0,
        refit_k_window=0,  # refits keep k, so a steady stream's refits change nothing
        refit_backoff_max=backoff_max,
    )
    sc = StreamClusters(FakeLabeler(), cfg)
    _run(sc, generate_traffic(600, seed=4))  # warm-up fit, then the first refits
    clus = sc.sources["frontend"]
    k, fits = clus.k, clus.fits
    _run(sc, generate_traffic(6000, seed=5))
    assert clus.k == k  # the window 0 keeps k
    # Batches of 250 rows: without backoff a refit every 500 rows (12); with it the gaps
    # double (600, 1200, 2400 rows: 3).
    assert clus.fits - fits == (12 if backoff_max == 1 else 3)
    assert clus._backoff == backoff_max


def test_state_of_another_dimension_is_ignored() -> None:
    sc = StreamClusters(FakeLabeler(), CFG)
    _run(sc, generate_traffic(300))
    other = StreamClusters(FakeLabeler(dim=32), CFG)
    other.load_states(sc.take_dirty_states())
    assert other.sources == {}
    with pytest.raises(ValueError, match="Received: version=1, dim=256"):
        SourceClusterer.from_bytes(sc.sources["frontend"].to_bytes(), CFG, dim=32)


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
    cache.embed(["w"])  # evicts the oldest ("x")
    cache.embed(["x"])
    assert fake.rows_embedded == 5
    assert (cache.hits, cache.misses) == (2, 5)


def test_batch_dedupes_before_embedding() -> None:
    fake = FakeLabeler()
    sc = StreamClusters(fake, CFG)
    _run(sc, pa.table({"body": [f"GET /item?id={i}" for i in range(500)]}), batch=500)
    assert fake.rows_embedded == 1  # one masked text


@pytest.mark.parametrize(
    "kwargs",
    [
        {"warmup_rows": 0},
        {"k_min": 5, "k_max": 2},
        {"warmup_rows": 10, "reservoir_size": 5},
        {"outlier_factor": 0.0},
    ],
)
def test_config_checks(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="Received"):
        StreamClusterConfig(**kwargs)  # type: ignore[arg-type]


def test_serving_fit_imports_no_sklearn_or_scipy(tiny_bundle: Path) -> None:
    # The sidecar's memory budget leaves no room for scikit-learn and SciPy (~100 MB).
    code = (
        "import sys\n"
        "import numpy as np\n"
        "from logclust import Labeler\n"
        "from logclust.wire import contract, ipc\n"
        "from logclust.cli.demo import generate_traffic\n"
        "from logclust.cluster.stream import StreamClusterConfig, StreamClusters\n"
        f"lab = Labeler.load({str(tiny_bundle)!r})\n"
        "lab.fit(['INFO fs: opened file /a/b size 3 bytes', 'ERROR disk full', 'x 1'], k=None)\n"
        "cfg = StreamClusterConfig(\n"
        "    warmup_rows=200, refit_every_rows=300, refit_max_share=1.0, background_refit=False\n"
        ")\n"
        "sc = StreamClusters(lab, cfg)\n"
        "for part in ipc.iter_slices(generate_traffic(1200, seed=2), 200):\n"
        "    sc.label(part.column('body').combine_chunks(), contract.source_column(part),\n"
        "             contract.time_ms_column(part, 0))\n"
        "assert sc.sources['frontend'].fits >= 2, sc.sources['frontend'].fits\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('sklearn', 'scipy'))\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
