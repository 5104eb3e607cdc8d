"""`logclust embed` / `logclust label` on real files, through the console entry point."""

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from logclust.cli.main import main
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
