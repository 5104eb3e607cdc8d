"""The CLI's file reading and writing: text lines without per-line Python, streamed output."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from logclust.cli import io
from logclust.cli.io import TableWriter, read_table, read_text, text_lines, write_table


def test_text_lines_cuts_at_newlines_and_skips_blank_lines() -> None:
    data = "a 1\r\n\n  \nb\u00e9 2\x0cstill b\n\u3000\n\tc 3  \nlast".encode()
    lines = text_lines(data)
    assert lines.type == pa.string()
    # \r\n and \n end lines; a form feed does not; blank (also Unicode blank) lines go.
    assert lines.to_pylist() == ["a 1", "b\u00e9 2\x0cstill b", "\tc 3  ", "last"]
    assert text_lines(b"").to_pylist() == []
    assert text_lines(b"\n\n").to_pylist() == []
    assert text_lines(b"x\n").to_pylist() == ["x"]


def test_text_lines_across_scan_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    data = "".join(f"line {i}{'  ' * (i % 3)}\n" for i in range(50)).encode() + b"tail"
    whole = text_lines(data).to_pylist()
    monkeypatch.setattr(io, "_SCAN_BYTES", 5)  # a newline at block edges, blocks without any
    assert text_lines(data).to_pylist() == whole == data.decode().splitlines()


def test_text_lines_replaces_bytes_that_are_not_utf8() -> None:
    lines = text_lines(b"ok\nbad \xff\xfe byte\n")
    assert lines.to_pylist() == ["ok", "bad \ufffd\ufffd byte"]
    lines.validate(full=True)


def test_read_text_gives_the_body_column(tmp_path: Path) -> None:
    src = tmp_path / "in.log"
    src.write_text("one\ntwo\n")
    assert read_text(src).to_pydict() == {"body": ["one", "two"]}
    assert read_table(src).column_names == ["body"]


def _labelled(rows: int, start: int = 0) -> pa.Table:
    return pa.table(
        {
            "body": [f"line {i}" for i in range(start, start + rows)],
            "exemplars": pa.array(
                [["x", "y"] if i % 2 else None for i in range(rows)], pa.list_(pa.string())
            ),
            "cluster_id": pa.array([i % 3 for i in range(rows)], pa.int32()),
        }
    )


def test_parquet_writer_gathers_batches_into_row_groups(tmp_path: Path) -> None:
    out = tmp_path / "sub" / "out.parquet"
    with TableWriter(out, row_group_rows=5) as writer:
        for k in range(6):
            writer.write(_labelled(2, 2 * k))
    assert writer.rows == 12
    meta = pq.read_metadata(out)
    assert meta.num_rows == 12 and meta.num_row_groups == 2  # 6 rows, then 6
    back = pq.read_table(out)
    assert back.column("body").to_pylist() == [f"line {i}" for i in range(12)]
    group = meta.row_group(0)
    dictionary = {
        group.column(i).path_in_schema: group.column(i).has_dictionary_page for i in range(3)
    }
    # No dictionary for the (mostly distinct) body; the other columns keep theirs.
    assert dictionary == {"body": False, "exemplars.list.element": True, "cluster_id": True}


def test_csv_and_arrow_writers_stream_batches(tmp_path: Path) -> None:
    csv_out = tmp_path / "out.csv"
    with TableWriter(csv_out) as writer:
        writer.write(_labelled(2))
        writer.write(_labelled(1, 2))
    assert csv_out.read_text().splitlines() == [
        '"body","exemplars","cluster_id"',
        '"line 0","",0',
        '"line 1","x | y",1',
        '"line 2","",0',
    ]
    arrow_out = tmp_path / "out.arrow"
    write_table(_labelled(3), arrow_out)
    with pa.memory_map(str(arrow_out)) as f:
        assert pa.ipc.open_file(f).read_all().equals(_labelled(3))


def test_writer_leaves_no_file_after_a_failure_or_without_rows(tmp_path: Path) -> None:
    out = tmp_path / "out.parquet"
    with pytest.raises(RuntimeError, match="stream broke"), TableWriter(out) as writer:
        writer.write(_labelled(2))
        raise RuntimeError("stream broke")
    assert not out.exists()
    with TableWriter(out):
        pass
    assert not out.exists()
