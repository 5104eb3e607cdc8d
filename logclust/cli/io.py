"""Files and text the CLI reads and writes: one reader, one writer, one table renderer."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pyarrow import csv

from logclust.cli.defaults import FORMATS
from logclust.text.log_format import LogFormat, apply_log_format
from logclust.wire.contract import BODY, SOURCE, validate_schema

# Rows per Parquet row group written by `TableWriter` (a stream's batches are gathered).
ROW_GROUP_ROWS = 128 * 1024
# Bytes of text scanned for newlines at a time by `text_lines`.
_SCAN_BYTES = 1 << 22


def read_table(path: str | Path) -> pa.Table:
    """Reads records with a `body` column from a file.

    `.parquet` files, `.csv` files (header row; `body` read as string), `.arrow`,
    `.feather` and `.ipc` files (Arrow IPC file or stream format) are read as tables; any
    other file is read as text, one record per line, into a single `body` column.

    Raises:
        ContractError: the file has no usable `body` column.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        table = pq.read_table(path)
    elif suffix == ".csv":
        opts = csv.ConvertOptions(column_types={BODY: pa.string(), SOURCE: pa.string()})
        table = csv.read_csv(path, convert_options=opts)
    elif suffix in (".arrow", ".feather", ".ipc"):
        table = _read_arrow_file(path)
    else:
        table = read_text(path)
    validate_schema(table.schema)
    return table


def read_input(path: str | Path, log_format: str | None = None) -> pa.Table:
    """`read_table`, then raw log lines split by `log_format` (a preset name or format
    string; see `logclust.text.log_format`) when given: `body` becomes the content and
    the header fields `log_<field>` columns."""
    table = read_table(path)
    if log_format is None:
        return table
    return apply_log_format(LogFormat.resolve(log_format), table)


def _read_arrow_file(path: Path) -> pa.Table:
    try:
        with pa.memory_map(str(path)) as f:
            return pa.ipc.open_file(f).read_all()
    except pa.ArrowInvalid:
        with pa.memory_map(str(path)) as f:
            return pa.ipc.open_stream(f).read_all()


def read_text(path: str | Path) -> pa.Table:
    """One record per line as `body`: lines end with `\\n` or `\\r\\n`, blank lines are
    skipped, bytes that are not UTF-8 are replaced (U+FFFD)."""
    return pa.table({BODY: text_lines(Path(path).read_bytes())})


def text_lines(data: bytes) -> pa.Array:
    """The non-blank lines of UTF-8 text as a string array, without a Python object per
    line: the lines are cut from `data` at its newline offsets (unlike `str.splitlines`
    and `pa.array`, which make a Python string a line). `large_string` past 2 GiB."""
    raw = np.frombuffer(data, np.uint8)
    # Newlines found a block at a time: no file-sized temporary array.
    ends = [
        np.flatnonzero(raw[at : at + _SCAN_BYTES] == ord("\n")) + (at + 1)
        for at in range(0, raw.size, _SCAN_BYTES)
    ]
    # Each value spans a line and its newline, trimmed below; the last line may lack one.
    offsets = np.concatenate([np.zeros(1, np.int64), *ends])
    if offsets[-1] != raw.size:
        offsets = np.append(offsets, raw.size)
    large = raw.size > np.iinfo(np.int32).max
    kind, width = (pa.large_string(), np.int64) if large else (pa.string(), np.int32)
    buffers = [None, pa.py_buffer(offsets.astype(width)), pa.py_buffer(data)]
    lines = pa.Array.from_buffers(kind, offsets.size - 1, buffers)
    try:
        lines.validate(full=True)
    except pa.ArrowInvalid:
        # Not UTF-8 somewhere: replace the bad bytes (one pass over the whole text), again.
        return text_lines(data.decode("utf-8", errors="replace").encode("utf-8"))
    lines = pc.utf8_rtrim(lines, characters="\r\n")
    blank = pc.or_(pc.equal(pc.binary_length(lines), 0), pc.utf8_is_space(lines))
    return lines.filter(pc.invert(blank)) if blank.true_count else lines


def write_table(table: pa.Table, path: str | Path) -> None:
    """Writes by suffix: `.csv`, `.arrow`/`.feather`/`.ipc`, else Parquet."""
    with TableWriter(path) as writer:
        writer.write(table)


class TableWriter:
    """Writes tables to one file as they come (by suffix: `.csv`, `.arrow`/`.feather`/
    `.ipc`, else Parquet), so labelled batches are written while later ones are labelled.

    The file is opened at the first `write`, with that table's schema (no `write`, no
    file); Parquet row groups gather at least `row_group_rows` rows (a stream's batches
    are smaller).

    Args:
        path: the file (its folder is created).
        row_group_rows: Parquet rows gathered per row group.
    """

    def __init__(self, path: str | Path, row_group_rows: int = ROW_GROUP_ROWS) -> None:
        self.path = Path(path)
        self.suffix = self.path.suffix.lower()
        self.row_group_rows = row_group_rows
        self.rows = 0
        self._writer: pq.ParquetWriter | csv.CSVWriter | pa.RecordBatchFileWriter | None = None
        self._sink: pa.NativeFile | None = None
        self._pending: list[pa.Table] = []
        self._pending_rows = 0

    def __enter__(self) -> TableWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        self.close()
        if exc_type is not None:
            # A file is whole or absent: no half-written output after a failed stream.
            self.path.unlink(missing_ok=True)

    def write(self, table: pa.Table) -> None:
        """Appends `table` (same schema as the first one written)."""
        if self._writer is None:
            self._open(table.schema if self.suffix != ".csv" else _flatten_lists(table).schema)
        self.rows += table.num_rows
        if isinstance(self._writer, pq.ParquetWriter):
            self._pending.append(table)
            self._pending_rows += table.num_rows
            if self._pending_rows >= self.row_group_rows:
                self._flush_row_group()
        elif isinstance(self._writer, csv.CSVWriter):
            self._writer.write_table(_flatten_lists(table))
        else:
            assert self._writer is not None
            self._writer.write_table(table)

    def close(self) -> None:
        """Writes what is pending and closes the file."""
        if self._writer is None:
            return
        if isinstance(self._writer, pq.ParquetWriter):
            self._flush_row_group()
        self._writer.close()
        if self._sink is not None:
            self._sink.close()

    def _open(self, schema: pa.Schema) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.suffix == ".csv":
            self._writer = csv.CSVWriter(str(self.path), schema)
        elif self.suffix in (".arrow", ".feather", ".ipc"):
            self._sink = pa.OSFile(str(self.path), "wb")
            self._writer = pa.ipc.new_file(self._sink, schema)
        else:
            # The body is mostly distinct text: a dictionary for it is built, found too
            # big and dropped in every column chunk (time spent for a file no smaller).
            leaves = [p for f in schema if f.name != BODY for p in _leaf_paths(f.name, f.type)]
            self._writer = pq.ParquetWriter(str(self.path), schema, use_dictionary=leaves)

    def _flush_row_group(self) -> None:
        if self._pending:
            assert isinstance(self._writer, pq.ParquetWriter)
            group = pa.concat_tables(self._pending)
            self._writer.write_table(group, row_group_size=max(group.num_rows, 1))
        self._pending, self._pending_rows = [], 0


def _leaf_paths(name: str, kind: pa.DataType) -> list[str]:
    """Parquet column paths of an Arrow field (`exemplars.list.element` for a list)."""
    if isinstance(kind, pa.ListType | pa.LargeListType | pa.FixedSizeListType):
        return _leaf_paths(f"{name}.list.element", kind.value_type)
    if isinstance(kind, pa.StructType):
        return [p for f in kind for p in _leaf_paths(f"{name}.{f.name}", f.type)]
    if isinstance(kind, pa.MapType):
        return [
            *_leaf_paths(f"{name}.key_value.key", kind.key_type),
            *_leaf_paths(f"{name}.key_value.value", kind.item_type),
        ]
    return [name]


def _flatten_lists(table: pa.Table) -> pa.Table:
    """List columns as `a | b` strings (CSV has no lists); a null list becomes ""."""
    for i, f in enumerate(table.schema):
        if pa.types.is_list(f.type) or pa.types.is_large_list(f.type):
            joined = pc.fill_null(pc.binary_join(table.column(i), " | "), "")
            table = table.set_column(i, f.name, joined.cast(pa.string()))
    return table


def format_table(table: pa.Table, fmt: str) -> str:
    """Renders a table as aligned text, JSON lines array or CSV."""
    if fmt == "json":
        return json.dumps(table.to_pylist(), default=str, indent=1)
    if fmt == "csv":
        buf = io.BytesIO()
        csv.write_csv(_flatten_lists(table), buf)
        return buf.getvalue().decode()
    if fmt != "table":
        raise ValueError(f"format must be one of {FORMATS}. Received: {fmt!r}")
    rows = [[_cell(v) for v in r.values()] for r in table.to_pylist()]
    header = table.column_names
    widths = [max([len(h)] + [len(r[j]) for r in rows]) for j, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(line.rstrip() for line in lines)


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        text = " | ".join(str(v) for v in value)
    else:
        text = str(value)
    return text if len(text) <= 80 else text[:77] + "..."
