"""A sidecar served with a catalog: its ids at start, a changed file loaded without a
restart, a bad file or another bundle's refused while the old catalog keeps serving."""

from __future__ import annotations

import threading
from pathlib import Path

import pyarrow as pa
import pytest

from logclust.client import Client
from logclust.cluster.catalog import CatalogError, write_catalog
from logclust.cluster.catalog_build import build_catalog
from logclust.cluster.config import StreamClusterConfig
from logclust.cluster.local_ids import LOCAL_BIT
from logclust.server import ServerConfig, create_server
from logclust.sidecar.catalog_watch import CatalogWatcher
from logclust.sidecar.config import StreamLabelerConfig
from logclust.sidecar.stream_labeler import StreamLabeler
from tests.fakes import FakeLabeler, fake_traffic

CLUSTERS = StreamClusterConfig(background_consolidation=False)
MANIFEST = {"files": {}}


def _write(path: Path, seed: int) -> str:
    table = fake_traffic(600, seed=seed).drop_columns(["kind"])
    return write_catalog(build_catalog([table], FakeLabeler(), CLUSTERS, MANIFEST), path)


def _kind_ids(client: Client, table: pa.Table) -> dict[str, int]:
    out = client.label(table.drop_columns(["kind"]))
    pairs = zip(table.column("kind").to_pylist(), out.column("cluster_id").to_pylist(), strict=True)
    return dict(pairs)


def test_serve_with_catalog_reload_and_bad_files(tmp_path: Path) -> None:
    path = tmp_path / "fleet.catalog"
    first = _write(path, seed=0)
    cfg = ServerConfig(
        listen="127.0.0.1:0",
        labeler=StreamLabelerConfig(clusters=CLUSTERS),
        catalog=str(path),
        catalog_poll_s=3600,  # checked by hand below
    )
    srv, port = create_server(cfg, labeler=FakeLabeler())
    table = fake_traffic(400, seed=5)
    with srv, Client(f"127.0.0.1:{port}") as client:
        assert srv.catalog is not None and srv.catalog.digest == first
        before = _kind_ids(client, table)
        path.write_bytes(path.read_bytes()[:-50])  # truncated: the old one keeps serving
        assert not srv.catalog.check_now()
        assert srv.catalog.errors == 1 and srv.catalog.digest == first
        assert _kind_ids(client, table) == before
        errors = srv.metrics.registry.get_sample_value("logclust_catalog_errors_total")
        assert errors == 1
        second = _write(path, seed=3)  # another build: served from the next batch
        assert srv.catalog.check_now() and srv.catalog.digest == second
        assert srv.catalog.reloads == 1
        assert not srv.catalog.check_now()  # unchanged: nothing read again
        body = ["<a><b>a kind no catalog has</b></a>"]
        new = pa.table({"body": body, "latency_ms": [3.0], "source": ["frontend"]})
        (local,) = client.label(new).column("cluster_id").to_pylist()
        assert local >= LOCAL_BIT  # a local kind's fleet-unique id (docs/fleet.md)
        labels = {"source": "frontend", "cluster": f"local-{local}", "group": f"local-{local}"}
        count = srv.metrics.registry.get_sample_value("logclust_request_latency_ms_count", labels)
        assert count == 1
        rows = {r["cluster_id"]: r["local"] for r in client.clusters("frontend").to_pylist()}
        assert rows[local] and not rows[0]


def test_start_refuses_a_bad_catalog_and_another_bundle(tmp_path: Path) -> None:
    path = tmp_path / "fleet.catalog"
    path.write_bytes(b"not a catalog at all, just some bytes")
    cfg = ServerConfig(listen="127.0.0.1:0", catalog=str(path))
    with pytest.raises(CatalogError, match=f"{path} is not a logclust catalog"):
        create_server(cfg, labeler=FakeLabeler())
    _write(path, seed=0)
    stream = StreamLabeler(FakeLabeler()).stream
    watcher = CatalogWatcher(path, stream, bundle="ef" * 32)
    with pytest.raises(CatalogError, match="another model bundle"):
        watcher.load()


def test_ten_file_swaps_under_load_lose_and_mislabel_no_row(tmp_path: Path) -> None:
    one, two = tmp_path / "one.catalog", tmp_path / "two.catalog"
    _write(one, seed=0)
    _write(two, seed=3)
    path = tmp_path / "fleet.catalog"
    path.write_bytes(one.read_bytes())
    cfg = ServerConfig(
        listen="127.0.0.1:0",
        labeler=StreamLabelerConfig(clusters=CLUSTERS),
        catalog=str(path),
        catalog_poll_s=3600,  # swapped by hand below, while batches flow
    )
    table = fake_traffic(600, seed=5)
    srv, port = create_server(cfg, labeler=FakeLabeler())
    with srv, Client(f"127.0.0.1:{port}") as client:
        want = [_kind_ids(client, table)]
        path.write_bytes(two.read_bytes())
        assert srv.catalog is not None and srv.catalog.check_now()
        want.append(_kind_ids(client, table))
        assert want[0] != want[1]  # the two catalogs number the kinds apart
        sent, seen = 2 * table.num_rows, []
        stop = threading.Event()

        def feed() -> None:
            with Client(f"127.0.0.1:{port}") as c:
                while not stop.is_set():
                    seen.append(_kind_ids(c, table.slice(0, 200)))

        worker = threading.Thread(target=feed)
        worker.start()
        for i in range(10):
            n = len(seen)
            path.write_bytes((one if i % 2 == 0 else two).read_bytes())
            assert srv.catalog.check_now()
            while len(seen) < n + 1 and worker.is_alive():  # a batch under each catalog
                stop.wait(0.01)
        stop.set()
        worker.join()
        assert srv.catalog.reloads == 11 and srv.catalog.errors == 0
        sent += 200 * len(seen)
        assert sum(client.latency().column("count").to_pylist()) == sent  # none lost
        for got in seen:  # each batch wholly labelled by one catalog
            assert any(all(w[k] == v for k, v in got.items()) for w in want)
