"""Files and text the CLI reads and writes: one reader, one writer, one table renderer."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from pyarrow import csv

from logclust.text.log_format import LogFormat, apply_log_format
from logclust.wire.contract import BODY, SOURCE, validate_schema

FORMATS = ("table", "json", "csv")


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
    """One record per line (trailing newline dropped, empty lines skipped) as `body`."""
    text = Path(path).read_text(encoding="utf-8", errors="replace")
    lines = [line for line in text.splitlines() if line.strip()]
    return pa.table({BODY: pa.array(lines, pa.string())})


def write_table(table: pa.Table, path: str | Path) -> None:
    """Writes by suffix: `.csv`, `.arrow`/`.feather`/`.ipc`, else Parquet."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        csv.write_csv(_flatten_lists(table), path)
    elif suffix in (".arrow", ".feather", ".ipc"):
        with pa.OSFile(str(path), "wb") as f, pa.ipc.new_file(f, table.schema) as w:
            w.write_table(table)
    else:
        pq.write_table(table, path)


def _flatten_lists(table: pa.Table) -> pa.Table:
    for i, f in enumerate(table.schema):
        if pa.types.is_list(f.type):
            joined = [" | ".join(v or []) for v in table.column(i).to_pylist()]
            table = table.set_column(i, f.name, pa.array(joined, pa.string()))
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
