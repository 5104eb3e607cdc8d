"""Prometheus as the fleet's aggregator: three sidecars served with one catalog, scraped
by a real Prometheus; the fleet p99 per cluster from PromQL agrees with the merged
sketches (`logclust latency --addr ...`) within the histogram's bucket.

Skips with the reason when Debian's `prometheus` is missing (`.ci/run` installs it).
"""

from __future__ import annotations

import time
import urllib.parse
import urllib.request
from contextlib import ExitStack
from pathlib import Path

import numpy as np

from logclust.cli.fleet_query import fleet_latency
from logclust.client import Client
from logclust.cluster.catalog import write_catalog
from logclust.cluster.catalog_build import build_catalog
from logclust.cluster.config import StreamClusterConfig
from logclust.server import ServerConfig, create_server
from logclust.sidecar.config import StreamLabelerConfig
from logclust.sidecar.metrics import LATENCY_BUCKETS_MS
from tests.fakes import FakeLabeler, fake_traffic
from tests.web.test_grafana import _get, prometheus, pytestmark  # noqa: F401 - the fixture

CLUSTERS = StreamClusterConfig(background_consolidation=False)
# The fleet's p99 per cluster from the bucket counters summed over the sidecars. Over a
# window, `rate(...[5m])` in place of the counters is the same sum of increments.
FLEET_P99 = "histogram_quantile(0.99, sum by (cluster, le) (logclust_request_latency_ms_bucket))"
ROWS = "sum by (cluster) (logclust_request_latency_ms_count)"


def _query(base: str, expr: str) -> dict[str, float]:
    answer = _get(f"{base}/api/v1/query?{urllib.parse.urlencode({'query': expr})}")
    assert answer["status"] == "success", answer
    return {r["metric"]["cluster"]: float(r["value"][1]) for r in answer["data"]["result"]}


def _bucket(value: float) -> int:
    """Index of the histogram bucket `(bounds[i-1], bounds[i]]` holding `value`."""
    return int(np.searchsorted(LATENCY_BUCKETS_MS, value, side="left"))


def test_promql_fleet_p99_agrees_with_the_merged_sketch(
    prometheus: tuple[str, Path],  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> None:
    base, cfg = prometheus
    path = tmp_path / "fleet.catalog"
    sample = fake_traffic(600, seed=0).drop_columns(["kind"])
    write_catalog(build_catalog([sample], FakeLabeler(), CLUSTERS, {"files": {}}), path)
    config = ServerConfig(
        listen="127.0.0.1:0",
        metrics_port=0,
        labeler=StreamLabelerConfig(clusters=CLUSTERS),
        catalog=str(path),
    )
    traffic = fake_traffic(3000, seed=7).drop_columns(["kind"])
    with ExitStack() as stack:
        addrs, targets = [], []
        for seed in range(3):
            srv, port = create_server(config, labeler=FakeLabeler())
            stack.enter_context(srv)
            addrs.append(f"127.0.0.1:{port}")
            targets.append(f"'127.0.0.1:{srv.metrics.port}'")
            part = traffic.take(np.random.default_rng(seed).permutation(traffic.num_rows))
            with Client(addrs[-1]) as client:
                client.label(part.slice(0, 1000 * (seed + 1)), batch_size=250)
        cfg.write_text(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            "scrape_configs:\n"
            "  - job_name: logclust\n"
            f"    static_configs: [{{targets: [{', '.join(targets)}]}}]\n"
        )
        urllib.request.urlopen(urllib.request.Request(base + "/-/reload", method="POST")).close()
        merged = fleet_latency(addrs, [0.99]).table.to_pylist()
        # Local kinds too: their series are `local-<external id>`, the same on every pod.
        want = {("local-" if r["local"] else "") + str(r["cluster_id"]): r for r in merged}
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:  # every sidecar scraped with every row
            rows = _query(base, ROWS)
            if all(rows.get(c) == r["count"] for c, r in want.items()):
                break
            time.sleep(0.5)
        assert all(rows.get(c) == r["count"] for c, r in want.items()), (rows, want)
        promql = _query(base, FLEET_P99)
    assert len(want) >= 5
    for cluster, row in want.items():
        # histogram_quantile interpolates inside the bucket where the rank q * n falls;
        # the sketch (within 1% of numpy's, rank q * (n - 1)) in the same bucket, or in
        # the one below when the two ranks straddle a bound: the histogram's error.
        b_prom, b_sketch = _bucket(promql[cluster]), _bucket(row["p99"] * 0.99)
        assert b_prom - b_sketch in (0, 1), (cluster, promql[cluster], row)
