"""The per-source router (`StreamClusters`): sources apart and bounded, work done once
per distinct text, a burst or a flush on one source not holding up another."""

from __future__ import annotations

import ast
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from logclust import turns
from logclust.cli.traffic import generate_traffic
from logclust.cluster import router as router_module
from logclust.cluster.config import StreamClusterConfig
from logclust.cluster.router import StreamClusters
from logclust.cluster.source import SourceClusterer
from logclust.cluster.state import SourceParts
from logclust.server.fair import FairExecutor
from logclust.wire.contract import LimitExceededError
from tests.cluster.streams import run, with_source
from tests.fakes import FakeLabeler, fake_traffic

# The embedding path (templates off): what these tests pin is how texts reach the model.
CFG = StreamClusterConfig(reservoir_size=1000, background_consolidation=False, templates=False)


def test_sources_are_clustered_separately_and_capped() -> None:
    sc = StreamClusters(FakeLabeler(), CFG, max_sources=2)
    t = generate_traffic(400)
    t = t.set_column(
        t.column_names.index("source"), "source", pa.array(["a", "b"] * 200, pa.string())
    )
    run(sc, t, batch=400)
    assert sorted(sc.sources) == ["a", "b"]
    assert sc.sources["a"].rows_seen == 200
    with pytest.raises(LimitExceededError, match="Too many distinct sources"):
        run(sc, pa.table({"body": ["x"], "source": ["c"]}))


def test_batch_dedupes_before_embedding() -> None:
    fake = FakeLabeler()
    sc = StreamClusters(fake, CFG)
    run(sc, pa.table({"body": [f"GET /item?id={i}" for i in range(500)]}), batch=500)
    assert fake.rows_embedded == 1  # one masked text


def test_serving_fit_imports_no_sklearn_or_scipy(tiny_bundle: Path) -> None:
    # The sidecar's memory budget leaves no room for scikit-learn and SciPy (~100 MB).
    code = (
        "import sys\n"
        "from logclust import Labeler\n"
        "from logclust.wire import contract, ipc\n"
        "from logclust.cli.traffic import generate_traffic\n"
        "from logclust.cluster.config import StreamClusterConfig\n"
        "from logclust.cluster.router import StreamClusters\n"
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


def test_source_limit_holds_under_concurrent_batches() -> None:
    sc = StreamClusters(FakeLabeler(), CFG, max_sources=64)
    # Each admitted batch waits after admission (its first checkpoint) until 16 are
    # admitted together: the check and the creation of sources overlap as much as can be.
    together = threading.Barrier(16, timeout=30)

    def hold(cost: float) -> None:
        if cost == 0:
            together.wait()

    def one(i: int) -> bool:
        body = pa.array([f"event {i} happened"])
        source = pa.array([f"svc-{i}"]).dictionary_encode()
        try:
            sc.label(body, source, np.zeros(1, np.int64))
        except LimitExceededError:
            return False
        return True

    with ThreadPoolExecutor(16, initializer=turns.install, initargs=(hold,)) as pool:
        accepted = sum(pool.map(one, range(80)))
    assert len(sc.sources) == accepted == 64


def test_the_memo_is_shared_by_the_sources_present() -> None:
    cfg = StreamClusterConfig(memo_size=100, cache_size=1000, background_consolidation=False)
    sc = StreamClusters(FakeLabeler(), cfg, max_sources=4)
    one = with_source(fake_traffic(200, seed=6), "a")
    run(sc, one)
    assert sc.sources["a"].memo_limit() == 400  # alone: the memo of all 4 sources
    run(sc, with_source(one, "b"))
    assert sc.sources["a"].memo_limit() == 200 == sc.sources["b"].memo_limit()
    small = StreamClusters(FakeLabeler(), StreamClusterConfig(memo_size=100, cache_size=150))
    run(small, one)
    assert small.sources["a"].memo_limit() == 150  # never past the embedding cache


def test_the_mask_cache_has_a_size_of_its_own() -> None:
    cfg = StreamClusterConfig(cache_size=150, mask_cache_size=600, background_consolidation=False)
    sc = StreamClusters(FakeLabeler(), cfg)
    assert (sc.masks.capacity, sc.cache.capacity) == (600, 150)
    with pytest.raises(ValueError, match="must be positive. Received: mask_cache_size=0"):
        StreamClusterConfig(mask_cache_size=0)


def _word(i: int) -> str:
    """Letters only: masking keeps every text apart."""
    return "".join(chr(97 + int(d)) for d in np.base_repr(i, 10))


STEADY = pa.table({"body": [f"GET /cart item {i} ok" for i in range(50)], "source": ["b"] * 50})
BURST = pa.table(
    {"body": [f"user {_word(i)} wrote a note" for i in range(400)], "source": ["a"] * 400}
)


def test_a_burst_of_new_texts_on_one_source_does_not_hold_up_another() -> None:
    fake = FakeLabeler()
    sc = StreamClusters(fake, CFG)
    first = run(sc, STEADY)  # placed: later batches of these texts need no model
    before = fake.rows_embedded
    paused, resume = threading.Event(), threading.Event()

    def pause_after_first_slice(cost: float) -> None:
        if cost > 0 and not paused.is_set():
            paused.set()
            assert resume.wait(60)

    def burst() -> np.ndarray:
        turns.install(pause_after_first_slice)
        try:
            return run(sc, BURST, 400)
        finally:
            turns.install(None)

    with ThreadPoolExecutor(2) as pool:
        running = pool.submit(burst)
        assert paused.wait(30)  # between two slices of the burst
        try:
            again = pool.submit(run, sc, STEADY).result(timeout=30)
            assert not running.done()
            assert fake.rows_embedded - before == 16  # one slice of the burst, nothing else
        finally:
            resume.set()
        running.result(30)
    assert again.tolist() == first.tolist()


class _GatedLabeler(FakeLabeler):
    """Holds the burst's first slice until the test says another batch is queued."""

    def __init__(self) -> None:
        super().__init__()
        self.started, self.queued = threading.Event(), threading.Event()
        self.burst_texts = 0

    def embed_masked(self, masked: pa.Array) -> np.ndarray:
        texts = masked.to_pylist()
        if texts and texts[0].startswith("user "):
            self.burst_texts += len(texts)
            self.started.set()
            assert self.queued.wait(30)
        return super().embed_masked(masked)


def test_a_burst_yields_the_only_slot_of_the_label_pool_between_slices() -> None:
    # The server's pool on a one-core sidecar: one batch at a time. The burst's slices are
    # checkpoints, so the other stream's batch runs before the burst ends.
    fake = _GatedLabeler()
    sc = StreamClusters(fake, CFG)
    run(sc, STEADY)
    pool = FairExecutor(1)

    def steady() -> int:
        run(sc, STEADY)
        return fake.burst_texts

    try:
        running = pool.submit("a", 1_000, run, sc, BURST, 400)
        assert fake.started.wait(30)
        waiting = pool.submit("b", 1_000, steady)
        fake.queued.set()
        assert waiting.result(30) == 16  # ran after the burst's first slice
        running.result(30)
    finally:
        fake.queued.set()
        pool.shutdown()
    assert fake.burst_texts == 400


def test_a_flush_encoding_one_source_does_not_hold_up_another(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sc = StreamClusters(FakeLabeler(), CFG)
    t = fake_traffic(300)
    run(sc, with_source(t, "slow"))
    run(sc, t)  # source "frontend"
    encoding, release = threading.Event(), threading.Event()
    encode = router_module.encode_parts

    def held(clus: SourceClusterer) -> SourceParts:
        if clus.source == "slow":
            encoding.set()
            assert release.wait(60)
        return encode(clus)

    monkeypatch.setattr(router_module, "encode_parts", held)
    with ThreadPoolExecutor(2) as pool:
        flush = pool.submit(sc.dirty_parts)
        assert encoding.wait(30)  # the flush is encoding "slow"
        try:
            pool.submit(run, sc, t.slice(0, 50)).result(timeout=30)
            assert not flush.done()
        finally:
            release.set()
        assert set(flush.result(30)) == {"slow", "frontend"}


def test_the_cluster_package_imports_no_layer_above_it() -> None:
    # Imports run one way (text -> embed -> cluster -> sidecar -> server): nothing here
    # imports the sidecar, the server or the package `logclust` itself (whose lazy
    # attributes lead to the sidecar).
    package = Path(router_module.__file__).parent
    for path in sorted(package.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for name in names:
                assert name != "logclust", f"{path.name}: from logclust import ..."
                assert name.split(".")[:2] not in (
                    ["logclust", "sidecar"],
                    ["logclust", "server"],
                ), f"{path.name} imports {name}"


def test_log_lines_cluster_by_their_message_unless_headers_are_kept() -> None:
    """One message under many hosts, processes and months is one template; with
    `keep_headers` the whole line is the masked text (headers split it)."""
    hosts, months = ["combo", "web-7", "db"], ["Jun", "Jul"]
    body = [
        f"{months[i % 2]} {1 + i % 28} 10:{i % 60:02d}:01 {hosts[i % 3]} sshd[{100 + i}]: "
        f"session opened for user {['root', 'alice'][i % 2]} by (uid=0)"
        for i in range(60)
    ]
    ids = {}
    for keep in (False, True):
        cfg = StreamClusterConfig(keep_headers=keep, background_consolidation=False)
        sc = StreamClusters(FakeLabeler(), cfg)
        assert sc.masks.messages is not keep
        out = sc.label(pa.array(body), pa.array(["s"] * len(body)), np.zeros(len(body), np.int64))
        ids[keep] = set(out[0].tolist())
        templates = [st.template for _, st in sc.describe("s")]
        assert all(t.startswith("session opened") != keep for t in templates), templates
    assert len(ids[False]) == 1 and len(ids[True]) > 1
