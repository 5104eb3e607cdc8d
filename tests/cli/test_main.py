"""`logclust embed` / `logclust label` on real files, through the console entry point."""

import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from logclust.cli import service
from logclust.cli.main import build_parser, main
from logclust.embed.bundle import Bundle
from tests.conftest import synthetic_lines


def test_label_text_file(tiny_bundle: Path, tmp_path: Path) -> None:
    src = tmp_path / "in.log"
    src.write_text("\n".join(t for t, _ in synthetic_lines(40)) + "\n")
    out = tmp_path / "out.parquet"
    assert (
        main(
            [
                "label",
                "--input",
                str(src),
                "--output",
                str(out),
                "--bundle",
                str(tiny_bundle),
                "--k",
                "5",
            ]
        )
        == 0
    )
    t = pq.read_table(out)
    assert t.column_names == ["body", "cluster_id"] and t.num_rows == 40
    assert t.schema.field("cluster_id").type == pa.int32()


def test_embed_parquet_keeps_columns(tiny_bundle: Path, tmp_path: Path) -> None:
    src = tmp_path / "in.parquet"
    pq.write_table(pa.table({"id": [1, 2], "body": ["a 1", "b 2"]}), src)
    out = tmp_path / "out.parquet"
    assert (
        main(["embed", "--input", str(src), "--output", str(out), "--bundle", str(tiny_bundle)])
        == 0
    )
    t = pq.read_table(out)
    assert t.column_names == ["id", "body", "embedding"]
    assert t.column("id").to_pylist() == [1, 2]
    assert len(t.column("embedding")[0].as_py()) == Bundle.load(tiny_bundle).dim


def test_missing_body_is_a_clear_error(
    tiny_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "in.parquet"
    pq.write_table(pa.table({"text": ["a"]}), src)
    assert (
        main(
            [
                "label",
                "--input",
                str(src),
                "--output",
                str(tmp_path / "o.parquet"),
                "--bundle",
                str(tiny_bundle),
            ]
        )
        == 2
    )
    assert "body" in capsys.readouterr().err


def test_label_raw_lines_with_a_log_format(tiny_bundle: Path, tmp_path: Path) -> None:
    src = tmp_path / "hdfs.log"
    src.write_text(
        "081109 203615 148 INFO dfs.DataNode$PacketResponder: PacketResponder 1 terminating\n"
        "081109 203807 222 WARN dfs.DataNode$PacketResponder: PacketResponder 2 terminating\n"
        "not a header line\n"
    )
    out = tmp_path / "out.parquet"
    args = ["label", "--input", str(src), "--output", str(out), "--bundle", str(tiny_bundle)]
    assert main([*args, "--log-format", "hdfs"]) == 0
    t = pq.read_table(out)
    assert t.column("body").to_pylist()[:2] == [
        "PacketResponder 1 terminating",
        "PacketResponder 2 terminating",
    ]
    assert t.column("log_level").to_pylist() == ["INFO", "WARN", None]
    assert t.column("body").to_pylist()[2] == "not a header line"
    ids = t.column("cluster_id").to_pylist()
    assert ids[0] == ids[1]  # same message, different headers
    assert main([*args, "--log-format", "<Date> <Oops"]) == 2


def test_serve_flags_for_thresholds_and_log_formats() -> None:
    assert service._log_formats(["hdfs=HDFS", "<Date> <Level>=<Content>", "openstack"]) == {
        "hdfs": "HDFS",
        "*": "openstack",
    }
    assert service._pairs(["a=0.3"]) == {"a": "0.3"}
    with pytest.raises(ValueError, match="NAME=VALUE"):
        service._pairs(["0.3"])


def test_client_commands_start_without_the_server_or_the_model_runtime() -> None:
    # The parser reads its defaults from the config dataclasses (`logclust.server.config`
    # and the configs it holds), which are light; the server itself stays out.
    heavy = ["logclust.server.app", "logclust.sidecar.core", "logclust.cluster.labeler"]
    heavy += ["logclust.cluster.router", "logclust.embed", "ai_edge_litert", "sentencepiece"]
    code = (
        "import sys; from logclust.cli import main, remote; "
        f"print([m for m in {heavy!r} if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    # The handlers are found when their command runs.
    args = build_parser().parse_args(["send", "x.log"])
    assert args.func.__name__ == "cmd_send"
