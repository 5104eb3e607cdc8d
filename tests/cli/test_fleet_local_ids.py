"""Local ids under a fleet catalog: two real sidecars meet kinds the catalog lacks; the
ids those kinds leave the sidecars with are fleet-unique (the same kind met through the
same text: one id on both; other kinds: other ids; never a catalog id), survive a
restart through the store, and merge in the fleet queries."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pyarrow as pa
import pytest

from logclust.cli.fleet_query import fleet_clusters, fleet_latency
from logclust.client import Client
from logclust.cluster.catalog import Catalog, write_catalog
from logclust.cluster.catalog_build import build_catalog
from logclust.cluster.config import StreamClusterConfig
from logclust.cluster.local_ids import LOCAL_BIT
from logclust.server import ServerConfig, create_server
from logclust.sidecar.config import StreamLabelerConfig
from tests.fakes import FakeLabeler, fake_traffic

CLUSTERS = StreamClusterConfig(background_consolidation=False)
# Kinds the catalog (built from the demo's frontend traffic) lacks: log lines of two
# new shapes, and a source it has never seen.
NEW_A = "disk sda1 failed after 3 retries"
NEW_B = "fan 2 of rack 7 is slow"
ELSEWHERE = "payment 12 settled"


@pytest.fixture(scope="module")
def catalog_path(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Catalog]:
    path = tmp_path_factory.mktemp("fleet") / "fleet.catalog"
    sample = fake_traffic(600, seed=0).drop_columns(["kind"])
    catalog = build_catalog([sample], FakeLabeler(), CLUSTERS, {"files": {}})
    write_catalog(catalog, path)
    return path, catalog


@contextmanager
def _sidecar(catalog: Path, store: Path) -> Iterator[str]:
    cfg = ServerConfig(
        listen="127.0.0.1:0",
        labeler=StreamLabelerConfig(clusters=CLUSTERS),
        catalog=str(catalog),
        store_dir=str(store),
    )
    srv, port = create_server(cfg, labeler=FakeLabeler())
    with srv:
        yield f"127.0.0.1:{port}"


def _label(addr: str, rows: list[tuple[str, str]], latency: float = 5.0) -> list[int]:
    table = pa.table(
        {
            "body": [b for _, b in rows],
            "source": [s for s, _ in rows],
            "latency_ms": [latency] * len(rows),
        }
    )
    with Client(addr) as client:
        got = client.label(table)
    assert got.schema.field("cluster_id").type == pa.int64()  # under a catalog
    return got.column("cluster_id").to_pylist()


def test_local_ids_are_fleet_unique_persisted_and_merged(
    catalog_path: tuple[Path, Catalog], tmp_path: Path
) -> None:
    path, catalog = catalog_path
    known = fake_traffic(20, seed=3)
    known_rows = list(
        zip(known.column("source").to_pylist(), known.column("body").to_pylist(), strict=True)
    )
    rows = [("frontend", NEW_A), ("frontend", NEW_B), ("ledger", ELSEWHERE), *known_rows]
    with ExitStack() as stack:
        a = stack.enter_context(_sidecar(path, tmp_path / "a"))
        b = stack.enter_context(_sidecar(path, tmp_path / "b"))
        ids_a = _label(a, rows)
        ids_b = _label(b, rows[::-1])[::-1]  # the other order
        assert ids_a == ids_b  # the same kinds, the same ids, whatever the order
        new = ids_a[:3]
        assert len(set(new)) == 3 and all(i >= LOCAL_BIT for i in new)
        assert all(
            i < catalog.next_ids.get(s, 0) for (s, _), i in zip(known_rows, ids_a[3:], strict=True)
        )
        # One of the sidecars meets more rows of a new kind: the fleet merges them.
        _label(b, [("frontend", NEW_A)] * 4, latency=50.0)
        lat = fleet_latency([a, b], [0.99], since_s=3600.0).table.to_pylist()
        row = next(r for r in lat if r["cluster_id"] == new[0])
        assert row["local"] and row["sidecars"] == 2 and row["count"] == 6
        clusters = fleet_clusters([a, b]).table.to_pylist()
        local = {(r["source"], r["cluster_id"]): r for r in clusters if r["local"]}
        assert set(local) >= {("frontend", new[0]), ("frontend", new[1]), ("ledger", new[2])}
        assert local[("frontend", new[0])]["size"] == 6
        assert all(r["sidecars"] == 2 for r in local.values())
        with Client(a) as client:  # the Latency answer of one sidecar speaks the same ids
            one = client.latency([0.5], since_s=3600.0)
        assert one.schema.field("cluster_id").type == pa.int64()
        assert new[0] in one.column("cluster_id").to_pylist()
    # Restarted on its store: a source the catalog lacks is restored with its ids; one
    # it has starts again from the catalog, and its local kinds get their ids again
    # when they come back, their latency history and new rows under one id.
    with _sidecar(path, tmp_path / "a") as a2:
        with Client(a2) as client:
            before = client.clusters()
        assert new[2] in before.column("cluster_id").to_pylist()
        assert _label(a2, [("frontend", NEW_A), ("frontend", NEW_B), ("ledger", ELSEWHERE)]) == new
        with Client(a2) as client:
            after = client.latency([0.5], since_s=3600.0).to_pylist()
        counts = {r["cluster_id"]: r["count"] for r in after if r["cluster_id"] in new}
        assert counts == {new[0]: 2, new[1]: 2, new[2]: 2}
