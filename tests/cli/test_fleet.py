"""Fleet queries: three sidecars served with one catalog, answers merged by catalog id
(latency sketches exactly), a sidecar that does not answer named."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from logclust.cli.fleet_query import fleet_clusters, fleet_latency
from logclust.cli.main import build_parser, main
from logclust.client import Client
from logclust.cluster.catalog import write_catalog
from logclust.cluster.catalog_build import build_catalog
from logclust.cluster.config import StreamClusterConfig
from logclust.latency.ddsketch import DDSketch
from logclust.server import ServerConfig, create_server
from logclust.sidecar.config import StreamLabelerConfig
from tests.fakes import FakeLabeler, fake_traffic

CLUSTERS = StreamClusterConfig(background_consolidation=False)
DEAD = "127.0.0.1:1"  # nothing listens there


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[list[str], pa.Table]]:
    path = tmp_path_factory.mktemp("fleet") / "fleet.catalog"
    sample = fake_traffic(600, seed=0).drop_columns(["kind"])
    write_catalog(build_catalog([sample], FakeLabeler(), CLUSTERS, {"files": {}}), path)
    cfg = ServerConfig(
        listen="127.0.0.1:0", labeler=StreamLabelerConfig(clusters=CLUSTERS), catalog=str(path)
    )
    table = fake_traffic(1500, seed=4)
    labelled = []
    with ExitStack() as stack:
        addrs = []
        for seed in range(3):
            srv, port = create_server(cfg, labeler=FakeLabeler())
            stack.enter_context(srv)
            addrs.append(f"127.0.0.1:{port}")
            part = table.take(np.random.default_rng(seed).permutation(table.num_rows))
            with Client(addrs[-1]) as client:
                labelled.append(client.label(part.drop_columns(["kind"]), batch_size=200))
        yield addrs, pa.concat_tables(labelled)


def test_fleet_p99_is_the_merged_sketch_of_every_row(fleet: tuple[list[str], pa.Table]) -> None:
    addrs, rows = fleet
    answer = fleet_latency([*addrs, DEAD], quantiles=[0.5, 0.99])
    assert list(answer.unreachable) == [DEAD]
    t = answer.table
    assert not any(t.column("local").to_pylist())  # every id a catalog id
    ids = rows.column("cluster_id").to_numpy()
    lat = rows.column("latency_ms").to_numpy()
    for row in t.to_pylist():
        mine = lat[ids == row["cluster_id"]]
        assert row["count"] == mine.size and row["sidecars"] == 3
        one = DDSketch()  # every row in one sketch: the merge is exact
        one.add(mine)
        assert row["p99"] == pytest.approx(one.quantiles([0.99])[0], rel=1e-12)
        exact = float(np.quantile(mine, 0.99))
        assert abs(row["p99"] - exact) <= 0.01 * exact  # the sketch's accuracy


def test_fleet_clusters_merge_sizes(fleet: tuple[list[str], pa.Table]) -> None:
    addrs, rows = fleet
    answer = fleet_clusters(addrs)
    sizes = dict(
        zip(
            answer.table.column("cluster_id").to_pylist(),
            answer.table.column("size").to_pylist(),
            strict=True,
        )
    )
    ids, counts = np.unique(rows.column("cluster_id").to_numpy(), return_counts=True)
    assert sizes == dict(zip(ids.tolist(), counts.tolist(), strict=True))


def test_cli_names_the_unreachable_sidecar(
    fleet: tuple[list[str], pa.Table], capsys: pytest.CaptureFixture[str]
) -> None:
    addrs, _ = fleet
    args = ["latency", "--format", "csv"]
    for a in [*addrs, DEAD]:
        args += ["--addr", a]
    assert main(args) == 0
    out = capsys.readouterr()
    assert f"unreachable: {DEAD}" in out.err and "p99" in out.out
    assert main(["clusters", "--addr", DEAD, "--addr", "127.0.0.1:2"]) == 1


def test_catalog_build_cli(tmp_path: Path, tiny_bundle: Path) -> None:
    src = tmp_path / "lines.txt"
    src.write_text("".join(f"connection from 10.0.0.{i} closed\n" for i in range(50)))
    out = tmp_path / "c.catalog"
    assert (
        main(
            [
                "catalog",
                "build",
                "--input",
                str(src),
                "--bundle",
                str(tiny_bundle),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert main(["catalog", "show", str(out)]) == 0
    out.write_bytes(out.read_bytes()[:40])
    assert main(["catalog", "show", str(out)]) == 2


def test_the_kubernetes_manifest_runs_serve_with_a_mounted_catalog() -> None:
    yaml = pytest.importorskip("yaml")
    path = Path(__file__).resolve().parents[2] / "deploy" / "k8s" / "sidecar.yaml"
    (deployment,) = yaml.safe_load_all(path.read_text())
    spec = deployment["spec"]["template"]["spec"]
    (side,) = [c for c in spec["containers"] if c["name"] == "logclust"]
    args = build_parser().parse_args(side["args"])  # every flag is one serve knows
    mounts = {m["name"]: m["mountPath"] for m in side["volumeMounts"]}
    assert args.catalog.startswith(mounts["catalog"] + "/")
    (volume,) = [v for v in spec["volumes"] if v["name"] == "catalog"]
    assert "configMap" in volume
