"""The demo: traffic generator and the full run through the gRPC sidecar (fake embedder)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from logclust.cli import demo, demo_table, remote, service
from logclust.cli.demo import KINDS, generate_traffic, run_demo
from logclust.cli.main import main
from logclust.server import ServerConfig, create_server
from tests.fakes import FakeLabeler


def test_traffic_shape_and_latencies() -> None:
    t = generate_traffic(6000, seed=3, end_ms=1_700_000_000_000, span_s=600)
    assert t.column_names == ["body", "latency_ms", "time", "source", "kind"]
    kinds = np.asarray(t.column("kind").to_pylist())
    lat = t.column("latency_ms").to_numpy()
    assert set(kinds) == set(KINDS)
    medians = {k: float(np.median(lat[kinds == k])) for k in KINDS}
    assert 3 < medians["add_to_cart"] < 5 and 80 < medians["checkout"] < 120
    assert medians["set_currency"] < 0.3
    cart = lat[kinds == "add_to_cart"]
    assert cart.max() > 5 * np.quantile(cart, 0.99)  # the spike episode
    body = t.column("body").to_pylist()
    assert any(b.startswith("email=") and "credit_card_number=" in b for b in body)
    with pytest.raises(ValueError, match="Received: rows=0"):
        generate_traffic(0)


def test_demo_passes_its_checks(tmp_path: Path) -> None:
    plot = tmp_path / "p99.png"
    report = run_demo(rows=4000, plot=plot, labeler=FakeLabeler(), batch_size=500)
    assert report.ari >= 0.95
    assert report.max_rel_error <= 0.01
    assert report.slowest_cluster == report.checkout_cluster
    assert report.passed
    assert plot.stat().st_size > 1000
    text = report.render()
    assert "adjusted Rand index" in text and "PASSED" in text
    assert "product_id=<*>&quantity=<NUM>" in text
    # One line per big cluster, at most 12; the rest (if any) on one line.
    assert 0 < len(report.summary.lines) <= demo_table.TOP_CLUSTERS + demo_table.TOP_GROUPS
    rest = report.summary.rest
    listed = sum(line.rows for line in report.summary.lines) + (rest.rows if rest else 0)
    assert listed == sum(report.table.column("count").to_pylist())


def test_demo_without_matplotlib_skips_the_plot_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(demo, "plotting_available", lambda: False)
    plot = tmp_path / "p99.png"
    report = demo.run_demo(rows=1000, plot=plot, labeler=FakeLabeler(), batch_size=500)
    assert report.plot is None and not plot.exists()
    lines = report.render().splitlines()
    assert lines[-1] == "plot skipped: install logclust[plot]"
    assert sum("plot" in line for line in lines) == 1


def test_latency_plot_without_matplotlib_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(remote, "plotting_available", lambda: False)
    config = ServerConfig(listen="127.0.0.1:0")
    server, port = create_server(config, labeler=FakeLabeler())
    with server:
        args = ["latency", "--addr", f"127.0.0.1:{port}", "--plot", str(tmp_path / "p.png")]
        assert main(args) == 0
    assert capsys.readouterr().err.strip() == "plot skipped: install logclust[plot]"
    assert not (tmp_path / "p.png").exists()


@pytest.mark.skipif(
    not demo.otlp_sdk_available(), reason="the OpenTelemetry SDK (logclust[otel]) is not installed"
)
def test_otlp_demo_sends_through_the_sdk_and_counts_every_record() -> None:
    report = run_demo(rows=1500, plot=None, labeler=FakeLabeler(), batch_size=250, otlp=True)
    assert report.clusters >= len(KINDS) - 2  # the fake merges a few kinds at most
    assert report.ari >= 0.95 and report.unassigned == 0.0
    assert report.slowest_cluster == report.checkout_cluster
    assert report.max_rel_error <= 0.01
    assert sum(report.table.column("count").to_pylist()) == 1500  # latency of every record
    text = report.render()
    assert "through the OpenTelemetry SDK (OTLP/gRPC)" in text
    assert "next hop (as after --otlp-forward): 1500 records for 1500 sent, 0 missing, " in text
    assert "0 more than once" in text


def test_otlp_demo_without_the_sdk_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(service, "otlp_sdk_available", lambda: False)
    assert main(["demo", "--otlp", "--rows", "10"]) == 2
    assert (
        capsys.readouterr().err.strip()
        == "demo --otlp needs the OpenTelemetry SDK: install logclust[otel]"
    )
    monkeypatch.setattr(demo, "otlp_sdk_available", lambda: False)
    with pytest.raises(ValueError, match=r"install logclust\[otel\]\. Received: otlp=True"):
        run_demo(rows=10, labeler=FakeLabeler(), otlp=True)
