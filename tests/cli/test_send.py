"""`logclust send` against a real sidecar on port 0: text in, labelled rows streamed out."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pyarrow.parquet as pq
import pytest

from logclust.cli.main import main
from logclust.cluster.config import StreamClusterConfig
from logclust.server import ServerConfig, create_server
from logclust.sidecar.config import StreamLabelerConfig
from tests.conftest import synthetic_lines
from tests.fakes import FakeLabeler


@pytest.fixture
def addr() -> Iterator[str]:
    config = ServerConfig(
        listen="127.0.0.1:0",
        max_message_bytes=64 * 1024,
        labeler=StreamLabelerConfig(
            clusters=StreamClusterConfig(reservoir_size=100, background_consolidation=False)
        ),
    )
    server, port = create_server(config, labeler=FakeLabeler())
    with server:
        yield f"127.0.0.1:{port}"


def test_send_text_file_writes_rows_in_order(
    addr: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = [t for t, _ in synthetic_lines(1200)]
    src = tmp_path / "in.log"
    src.write_bytes(("\r\n".join(lines[:600]) + "\n\n" + "\n".join(lines[600:])).encode())
    out = tmp_path / "out.parquet"
    assert main(["send", str(src), "--addr", addr, "--out", str(out), "--batch-size", "250"]) == 0
    assert "1,200/1,200" in capsys.readouterr().err
    labelled = pq.read_table(out)
    assert labelled.column("body").to_pylist() == lines
    assert labelled.column_names == ["body", "cluster_id", "cluster_distance", "group_id"]
    # Five answers gathered in one row group.
    assert pq.read_metadata(out).num_row_groups == 1
    kinds = [k for _, k in synthetic_lines(1200)]
    ids = labelled.column("cluster_id").to_pylist()
    assert len({i for i, k in zip(ids, kinds, strict=True) if k == "gc"}) == 1


def test_send_failing_midway_leaves_no_output(addr: str, tmp_path: Path) -> None:
    src = tmp_path / "in.log"
    # The third batch is over the sidecar's 64 KB message limit.
    src.write_text("\n".join([f"short line {i}" for i in range(20)] + ["x" * 100_000]) + "\n")
    out = tmp_path / "out.parquet"
    with pytest.raises(grpc.RpcError) as err:
        main(["send", str(src), "--addr", addr, "--out", str(out), "--batch-size", "10"])
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert not out.exists()


def test_send_without_out_counts_rows_per_cluster(
    addr: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "in.log"
    src.write_text("currency_code=EUR\ncurrency_code=USD\ncurrency_code=GBP\n")
    assert main(["send", str(src), "--addr", addr, "--batch-size", "2"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["cluster_id", "cluster_id_count"]
    assert [row.split()[1] for row in table[1:]] == ["3"]
    empty = tmp_path / "empty.log"
    empty.write_text("\n  \n")
    assert main(["send", str(empty), "--addr", addr]) == 2
