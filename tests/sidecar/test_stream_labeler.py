"""`StreamLabeler` in process (no gRPC), and the `Sidecar` built on it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from logclust.cluster.config import StreamClusterConfig
from logclust.cluster.quality import ari
from logclust.sidecar.core import Sidecar
from logclust.sidecar.store import MemoryStore, SqliteStore
from logclust.sidecar.stream_labeler import StreamLabeler, StreamLabelerConfig
from logclust.wire import ipc
from logclust.wire.contract import ContractError, LimitExceededError
from tests.fakes import FAKE_KINDS, FakeLabeler, fake_traffic

CONFIG = StreamLabelerConfig(
    max_sources=3,
    max_rows_per_batch=5000,
    clusters=StreamClusterConfig(reservoir_size=1000, background_consolidation=False),
)


@pytest.fixture(scope="module")
def traffic() -> pa.Table:
    return fake_traffic(2000, seed=3)


def _label_all(labeler: StreamLabeler, traffic: pa.Table, batch: int = 250) -> np.ndarray:
    ids = []
    bodies, lat = traffic.column("body").to_pylist(), traffic.column("latency_ms").to_numpy()
    for lo in range(0, traffic.num_rows, batch):
        res = labeler.label(
            bodies[lo : lo + batch], source="frontend", latency_ms=lat[lo : lo + batch]
        )
        assert res.ids.shape == res.distances.shape == (min(batch, traffic.num_rows - lo),)
        ids.append(res.ids)
    return np.concatenate(ids)


def test_label_groups_kinds_and_reports_clusters(traffic: pa.Table) -> None:
    labeler = StreamLabeler(FakeLabeler(), CONFIG)
    ids = _label_all(labeler, traffic)
    kinds = traffic.column("kind").to_pylist()
    assert (ids >= 0).all()  # every row labelled, the first batch too
    assert ari(kinds, ids.tolist()) > 0.95
    res = labeler.label(["currency_code=EUR", "currency_code=JPY"], source="frontend")
    assert res.ids[0] == res.ids[1] >= 0
    st = res.clusters[int(res.ids[0])]
    assert st.template.startswith("currency_code=") and st.size > 0
    assert set(res.clusters) == set(res.ids.tolist())
    described = dict((st.cluster_id, st) for _, st in labeler.clusters("frontend"))
    assert described[int(res.ids[0])].size == st.size
    assert {s for s, _ in labeler.clusters()} == {"frontend"}
    assert len(FAKE_KINDS) <= len(set(ids.tolist())) <= len(FAKE_KINDS) + 2


def test_latency_is_recorded_per_cluster(traffic: pa.Table) -> None:
    labeler = StreamLabeler(FakeLabeler(), CONFIG)
    ids = _label_all(labeler, traffic)
    table = labeler.latency(quantiles=[0.5, 0.99])
    assert {"source", "cluster_id", "count", "p50", "p99"} <= set(table.column_names)
    assert sum(table.column("count").to_pylist()) == traffic.num_rows
    lat = traffic.column("latency_ms").to_numpy()
    for row in table.to_pylist():
        exact = np.quantile(lat[ids == row["cluster_id"]], 0.99)
        assert row["p99"] == pytest.approx(exact, rel=0.011)
    # Rows without latency count nowhere; times may be given per row.
    before = sum(labeler.latency().column("count").to_pylist())
    labeler.label(["currency_code=EUR"], source="frontend", time_ms=[1_700_000_000_000])
    assert sum(labeler.latency().column("count").to_pylist()) == before


def test_label_checks_its_input() -> None:
    labeler = StreamLabeler(FakeLabeler(), CONFIG)
    with pytest.raises(TypeError, match="not one str"):
        labeler.label("one line")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="latency_ms needs one value per text"):
        labeler.label(["a", "b"], latency_ms=[1.0])
    with pytest.raises(ContractError, match="finite and >= 0"):
        labeler.label(["a"], latency_ms=[-1.0])
    with pytest.raises(ContractError, match="Empty batch"):
        labeler.label([])
    with pytest.raises(LimitExceededError, match="too many rows"):
        labeler.label(["x"] * 5001)
    for s in ("a", "b", "c"):
        labeler.label(["x 1"], source=s)
    with pytest.raises(LimitExceededError, match="Too many distinct sources"):
        labeler.label(["x 1"], source="d")
    with pytest.raises(ValueError, match="window_s must be positive"):
        StreamLabelerConfig(window_s=0)


def test_load_builds_on_a_bundle(tiny_bundle: Path) -> None:
    labeler = StreamLabeler.load(tiny_bundle, CONFIG)
    res = labeler.label(["INFO fs: opened file /a/b size 3 bytes"] * 200, source="app")
    assert (res.ids == res.ids[0]).all() and res.ids[0] >= 0


def test_sidecar_wraps_the_labeler_and_restores_it(traffic: pa.Table, tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "store")
    side = Sidecar(StreamLabeler(FakeLabeler(), CONFIG), store)
    data, rows = side.label_ipc(ipc.encode_ipc(traffic))
    out = ipc.decode_trusted_ipc(data)
    assert rows == traffic.num_rows == out.num_rows
    assert out.select(traffic.column_names).equals(traffic)
    side.flush()
    store.close()
    again = Sidecar(StreamLabeler(FakeLabeler(), CONFIG), SqliteStore(tmp_path / "store"))
    assert again.describe() == side.describe()
    before, after = side.latency(), again.latency()
    assert after.column("count").equals(before.column("count"))
    assert after.column("p99").to_pylist() == pytest.approx(before.column("p99").to_pylist())
    with pytest.raises(LimitExceededError):
        Sidecar(StreamLabeler(FakeLabeler(), CONFIG), MemoryStore()).label_ipc(
            ipc.encode_ipc(pa.table({"body": ["x"] * 5001}))
        )


def test_log_format_per_source_clusters_the_content_and_adds_headers() -> None:
    config = StreamLabelerConfig(
        log_formats={"hdfs": "HDFS"},
        clusters=StreamClusterConfig(background_consolidation=False),
    )
    sidecar = Sidecar(StreamLabeler(FakeLabeler(), config), MemoryStore())
    raw = [
        "081109 203615 148 INFO dfs.DataNode$PacketResponder: PacketResponder 1 terminating",
        "081109 203807 222 WARN dfs.DataNode$PacketResponder: PacketResponder 2 terminating",
    ]
    table = pa.table(
        {"body": raw + ["081109 203615 148 INFO x: y"], "source": ["hdfs"] * 2 + ["app"]}
    )
    out = sidecar.label(table)
    assert out.column("body").to_pylist() == table.column("body").to_pylist()  # untouched
    assert out.column("log_level").to_pylist() == ["INFO", "WARN", None]
    assert out.column("log_component").to_pylist()[0] == "dfs.DataNode$PacketResponder"
    ids = out.column("cluster_id").to_pylist()
    assert ids[0] == ids[1]
    clusters = {st.template for _, st in sidecar.describe("hdfs")}
    assert clusters == {"PacketResponder <NUM> terminating"}
    with pytest.raises(ValueError, match="Content"):
        StreamLabelerConfig(log_formats={"x": "<Date> <Level>"})
    with pytest.raises(ContractError, match="log_level"):
        sidecar.label(pa.table({"body": raw, "source": ["hdfs"] * 2, "log_level": ["a", "b"]}))


def test_forget_and_idle_eviction_free_source_slots(tmp_path: Path) -> None:
    config = StreamLabelerConfig(max_sources=2, retention_s=3600)
    store = SqliteStore(tmp_path / "store")
    sidecar = Sidecar(StreamLabeler(FakeLabeler(), config), store)
    for s in ("a", "b"):
        sidecar.label(pa.table({"body": ["x 1"], "source": [s], "latency_ms": [1.0]}))
    with pytest.raises(LimitExceededError):
        sidecar.label(pa.table({"body": ["x 1"], "source": ["c"]}))
    sidecar.flush()
    assert sidecar.forget("a") and not sidecar.forget("nope")
    sidecar.label(pa.table({"body": ["x 1"], "source": ["c"]}))  # a's slot is free
    assert {s for s, _ in sidecar.describe()} == {"b", "c"}
    assert set(sidecar.latency().column("source").to_pylist()) == {"b"}
    # b goes idle past the retention: evicted at the next flush, in the store too.
    sidecar.labeler.stream.sources["b"].last_batch_ms -= 2 * 3600_000
    sidecar.flush()
    assert set(sidecar.labeler.stream.sources) == {"c"}
    again = Sidecar(StreamLabeler(FakeLabeler(), config), SqliteStore(tmp_path / "store"))
    assert set(again.labeler.stream.sources) == {"c"}
