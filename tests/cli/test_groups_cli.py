"""`logclust latency --by group` and `logclust clusters --by group` against a real sidecar
on port 0 (the shipped bundle: prose is grouped by its meaning)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import grpc
import pyarrow as pa
import pytest

from logclust.cli.main import main
from logclust.client import Client
from logclust.cluster.config import StreamClusterConfig
from logclust.cluster.labeler import Labeler
from logclust.server import ServerConfig, create_server
from logclust.sidecar.config import StreamLabelerConfig

TEXTS = [
    "I want a refund for my order.",
    "Please, I want a refund for my order asap!",
    "Failed password for root from 10.0.0.1 port 22 ssh2",
    "Failed password for root from 10.0.0.2 port 22 ssh2",
]


@pytest.fixture
def addr() -> Iterator[str]:
    clusters = StreamClusterConfig(background_consolidation=False)
    config = ServerConfig(listen="127.0.0.1:0", labeler=StreamLabelerConfig(clusters=clusters))
    server, port = create_server(config, labeler=Labeler.load())
    with server:
        yield f"127.0.0.1:{port}"


def test_latency_and_clusters_by_group(addr: str, capsys: pytest.CaptureFixture[str]) -> None:
    with Client(addr) as client:
        table = pa.table({"body": TEXTS, "latency_ms": [10.0, 30.0, 1.0, 2.0]})
        labelled = client.label(table)
    groups = labelled.column("group_id").to_pylist()
    assert groups[0] == groups[1] != groups[2]
    assert main(["latency", "--addr", addr, "--by", "group", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    by_group = {r["group_id"]: r["count"] for r in rows}
    assert by_group[groups[0]] == 2 and sum(by_group.values()) == 4
    assert main(["clusters", "--addr", addr, "--by", "group", "--format", "json"]) == 0
    described = {r["group_id"]: r for r in json.loads(capsys.readouterr().out)}
    assert set(described) == set(groups)
    refund = described[groups[0]]
    assert refund["size"] == 2 and refund["exemplars"] and refund["templates"]
    with pytest.raises(SystemExit):
        main(["latency", "--addr", addr, "--by", "kind"])
    with Client(addr) as client, pytest.raises(grpc.RpcError) as err:
        client.latency(by="kind")
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "Received: by='kind'" in str(err.value.details())
