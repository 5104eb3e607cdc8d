"""The Grafana dashboard (`deploy/grafana/logclust.json`) against a real Prometheus.

Debian's `prometheus` binary runs here with a temporary config and storage on a free
port, scraping a sidecar under traffic every second; every panel's PromQL, with the
dashboard's variables set to "All", must return series from Prometheus's HTTP API.
Skips with the reason when the binary is missing (`.ci/run` installs it).
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from logclust.client import Client
from tests.web.traffic import config, live_sidecar

PROMETHEUS = "/usr/bin/prometheus"
DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "logclust.json"
# Grafana's variables as Prometheus sees them: every value, a rate window of several
# 1 s scrapes.
VARIABLES = {"$__rate_interval": "10s", "$source": ".*", "$job": ".*"}

pytestmark = pytest.mark.skipif(
    not os.access(PROMETHEUS, os.X_OK),
    reason=f"needs Debian's prometheus ({PROMETHEUS}): apt-get install -y prometheus",
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.load(r)


def panel_queries(dashboard: dict[str, Any]) -> dict[str, str]:
    """`"<panel title> / <refId>" -> PromQL` with the variables set (see `VARIABLES`)."""
    out = {}
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            expr = target["expr"]
            for name, value in VARIABLES.items():
                expr = expr.replace(name, value)
            assert "$" not in expr, f"unknown variable in {panel['title']}: {expr}"
            out[f"{panel['title']} / {target['refId']}"] = expr
    return out


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """`(base url, config path)`: a Prometheus of our own (no system service)."""
    port = _free_port()
    cfg = tmp_path / "prometheus.yml"
    cfg.write_text("global: {scrape_interval: 1s, evaluation_interval: 1s}\nscrape_configs: []\n")
    log = (tmp_path / "prometheus.log").open("w")
    proc = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={cfg}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--web.enable-lifecycle",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(base + "/-/ready", timeout=2).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"prometheus did not start: {(tmp_path / 'prometheus.log').read_text()}"
                    ) from None
                time.sleep(0.2)
        yield base, cfg
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


def test_every_panel_returns_series(prometheus: tuple[str, Path]) -> None:
    base, cfg = prometheus
    dashboard = json.loads(DASHBOARD.read_text())
    queries = panel_queries(dashboard)
    assert len(queries) >= 9
    with live_sidecar(config(grace_s=1, metrics_port=0)) as (srv, port, traffic):
        cfg.write_text(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            "scrape_configs:\n"
            "  - job_name: logclust\n"
            f"    static_configs: [{{targets: ['127.0.0.1:{srv.metrics.port}']}}]\n"
        )
        urllib.request.urlopen(urllib.request.Request(base + "/-/reload", method="POST")).close()
        traffic.start()
        assert traffic.sent.wait(30)
        traffic.late.set()  # a kind after the start-up: a new kind
        with Client(f"127.0.0.1:{port}") as client, pytest.raises(Exception, match="body"):
            client.label(pa.table({"nobody": ["x"]}))  # one error for the errors panel
        empty = dict(queries)
        deadline = time.monotonic() + 90
        while empty and time.monotonic() < deadline:
            for name, expr in list(empty.items()):
                q = urllib.parse.urlencode({"query": expr})
                answer = _get(f"{base}/api/v1/query?{q}")
                assert answer["status"] == "success", (name, answer)
                if answer["data"]["result"]:
                    del empty[name]
            time.sleep(1)
        assert not empty, f"panels without data: {empty}"


def test_panels_use_only_exported_metrics() -> None:
    exported = {
        "logclust_request_latency_ms",
        "logclust_rows_total",
        "logclust_new_clusters_total",
        "logclust_clusters",
        "logclust_cluster_cap_hits_total",
        "logclust_errors_total",
        "logclust_batch_seconds",
        "logclust_batches_total",
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
    }
    dashboard = json.loads(DASHBOARD.read_text())
    for name, expr in panel_queries(dashboard).items():
        for metric in re.findall(r"\b((?:logclust|process)_[a-z_]+)", expr):
            base = re.sub(r"_(bucket|count|sum)$", "", metric)
            assert metric in exported or base in exported, (name, metric)
