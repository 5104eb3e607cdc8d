"""Sampling end to end: a real sidecar on port 0 with a storage budget, over gRPC and
OTLP forwarding; the flags and their bad values."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from dataclasses import replace

import grpc
import numpy as np
import pyarrow as pa
import pytest

from logclust.cli import main as cli
from logclust.cli.service import otlp_config, sampling_config
from logclust.client import Client
from logclust.cluster.config import StreamClusterConfig
from logclust.otlp.config import OtlpConfig
from logclust.otlp.sampled import SAMPLE_WEIGHT_ATTRIBUTE
from logclust.server import ServerConfig, SidecarServer, create_server
from logclust.sidecar.config import SamplingConfig, StreamLabelerConfig
from tests.fakes import FakeLabeler, fake_traffic
from tests.otlp.test_receiver import (
    Downstream,
    _attrs,
    _export,
    _free_port,
    _record,
    _request,
)

CLUSTERS = StreamClusterConfig(reservoir_size=1000, background_consolidation=False)
BUDGET = SamplingConfig(fraction=0.1)


def _config(sampling: SamplingConfig, otlp: OtlpConfig | None = None) -> ServerConfig:
    labeler = StreamLabelerConfig(clusters=CLUSTERS, max_rows_per_batch=20_000, sampling=sampling)
    return ServerConfig(
        listen="127.0.0.1:0", flush_interval_s=0.2, metrics_port=0, labeler=labeler, otlp=otlp
    )


@pytest.fixture
def sampled() -> Iterator[tuple[SidecarServer, int]]:
    srv, port = create_server(_config(BUDGET), labeler=FakeLabeler())
    with srv:
        yield srv, port


def test_answers_carry_keep_and_weight(sampled: tuple[SidecarServer, int]) -> None:
    srv, port = sampled
    traffic = fake_traffic(12_000, seed=3)
    with Client(f"127.0.0.1:{port}") as client:
        out = client.label(traffic, batch_size=1000)
    assert out.schema.field("keep").type == pa.bool_()
    assert out.schema.field("sample_weight").type == pa.float64()
    keep = out.column("keep").to_numpy(zero_copy_only=False)
    weight = out.column("sample_weight").to_numpy()
    assert 0.05 < keep.mean() < 0.2
    assert np.all(weight[~keep] == 0) and np.all(weight[keep] >= 1)
    assert weight.sum() == pytest.approx(out.num_rows, rel=0.05)
    ids = out.column("cluster_id").to_numpy()
    assert set(ids[keep].tolist()) == set(ids.tolist())  # every kind kept
    # The sidecar's own statistics still count every row.
    counted = sum(srv.sidecar.latency(source="frontend").column("count").to_pylist())
    assert counted == out.num_rows
    with urllib.request.urlopen(f"http://127.0.0.1:{srv.metrics.port}/metrics") as r:
        text = r.read().decode()
    kept = int(keep.sum())
    assert f'logclust_sampled_rows_total{{outcome="kept",source="frontend"}} {kept}.0' in text
    dropped = 'logclust_sampled_rows_total{outcome="dropped",source="frontend"} '
    assert f"{dropped}{out.num_rows - kept}.0" in text


def test_without_budget_the_columns_are_absent() -> None:
    srv, port = create_server(_config(SamplingConfig()), labeler=FakeLabeler())
    with srv, Client(f"127.0.0.1:{port}") as client:
        out = client.label(fake_traffic(500, seed=1))
    assert "keep" not in out.column_names and "sample_weight" not in out.column_names


def test_input_with_a_sample_column_is_refused(sampled: tuple[SidecarServer, int]) -> None:
    _, port = sampled
    table = pa.table({"body": ["GET /a 200"], "keep": [True]})
    with Client(f"127.0.0.1:{port}") as client, pytest.raises(grpc.RpcError) as e:
        client.label(table)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "Received: ['keep']" in e.value.details()


@pytest.fixture
def downstream() -> Iterator[Downstream]:
    d = Downstream(_free_port()).start()
    yield d
    d.stop()


def test_otlp_forwarding_drops_unkept_and_adds_weights(downstream: Downstream) -> None:
    otlp = OtlpConfig(
        listen="127.0.0.1:0", forward=f"127.0.0.1:{downstream.port}", forward_sampled=True
    )
    srv, _ = create_server(_config(BUDGET, otlp), labeler=FakeLabeler())
    n = 3000
    with srv:
        port = srv.otlp.port  # type: ignore[union-attr]
        for start in range(0, n, 500):
            records = [_record(i, f"GET /cart?id={i} 200") for i in range(start, start + 500)]
            assert not _export(port, _request(records).SerializeToString()).HasField(
                "partial_success"
            )
        srv.stop(grace=2)  # drains the forwarding queue
    got = [_attrs(r) for _, r in downstream.records]
    assert 0 < len(got) < 0.3 * n
    weights = [float(a[SAMPLE_WEIGHT_ATTRIBUTE]) for a in got]  # type: ignore[arg-type]
    assert all(w >= 1 for w in weights)
    assert sum(weights) == pytest.approx(n, rel=0.05)


def test_flags() -> None:
    parser = cli.build_parser()
    args = parser.parse_args(["serve", "--sample-fraction", "0.1", "--sample", "api=0.5"])
    cfg = sampling_config(args)
    assert cfg.fraction == 0.1 and dict(cfg.source_fractions) == {"api": 0.5}
    assert cfg.window_rows == SamplingConfig().window_rows  # the dataclass's default
    assert sampling_config(parser.parse_args(["serve"])).enabled is False
    with pytest.raises(ValueError, match=r"fraction must be in \(0, 1\]. Received: fraction=0.0"):
        sampling_config(parser.parse_args(["serve", "--sample-fraction", "0"]))
    with pytest.raises(ValueError, match=r"SOURCE=F with F a number. Received: api=lots"):
        sampling_config(parser.parse_args(["serve", "--sample", "api=lots"]))
    with pytest.raises(ValueError, match=r"Expected NAME=VALUE. Received: 'api'"):
        sampling_config(parser.parse_args(["serve", "--sample", "api"]))
    with pytest.raises(ValueError, match="--otlp-forward-sampled needs --otlp-forward"):
        otlp_config(parser.parse_args(["serve", "--otlp-forward-sampled"]))
    with pytest.raises(ValueError, match="forward_sampled needs forward"):
        OtlpConfig(listen="127.0.0.1:0", forward_sampled=True)
    otlp = OtlpConfig(listen="127.0.0.1:0", forward="127.0.0.1:1", forward_sampled=True)
    with pytest.raises(ValueError, match="forward_sampled needs a storage budget"):
        _config(SamplingConfig(), otlp)
    assert replace(_config(BUDGET, otlp)).otlp is otlp
