"""What a benchmark prints: a header (machine, date, command), Markdown tables and lines
on stdout, and, with `--json PATH`, the same as JSON (cells as numbers, not text).

Imports nothing of `logclust` at module level (see `bench.harness.code.use_code`).
"""

from __future__ import annotations

import json
import math
import os
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np


@dataclass(frozen=True)
class Fmt:
    """A number and how Markdown writes it (`format(value, spec)` then `unit`); JSON keeps
    the number."""

    value: float
    spec: str = ""
    unit: str = ""

    def __str__(self) -> str:
        return format(self.value, self.spec) + self.unit


def fmt(value: float | np.floating[Any] | np.integer[Any], spec: str = "", unit: str = "") -> Fmt:
    """A table cell: `value` written with `spec` (and `unit`, say `x` or ` ms`) in
    Markdown, as a number in JSON."""
    return Fmt(value.item() if isinstance(value, np.generic) else value, spec, unit)


Cell = str | int | float | Fmt | None


def _json_value(cell: Cell) -> Any:
    value = cell.value if isinstance(cell, Fmt) else cell
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN
    return value


def _markdown_value(cell: Cell) -> str:
    return "" if cell is None else str(cell)


class Table:
    """A Markdown table whose rows are also kept for JSON.

    Args:
        columns: column headers.
        title: a heading printed above it (`## title`), none when empty.
        note: a paragraph between the heading and the table.
        live: print each row as it is added (long benchmarks), the header at once.
        out: where Markdown goes (stdout).
    """

    def __init__(
        self,
        columns: Sequence[str],
        title: str = "",
        note: str = "",
        live: bool = False,
        out: TextIO | None = None,
    ) -> None:
        self.columns = list(columns)
        self.title = title
        self.note = note
        self.rows: list[list[Cell]] = []
        self.live = live
        self._out = out
        if live:
            self._print(self._head())

    def _print(self, text: str) -> None:
        print(text, file=self._out or sys.stdout, flush=True)

    def _head(self) -> str:
        return (
            "| "
            + " | ".join(self.columns)
            + " |\n"
            + "| "
            + " | ".join("---" for _ in self.columns)
            + " |"
        )

    def add(self, *cells: Cell) -> None:
        """One row, a cell per column."""
        if len(cells) != len(self.columns):
            raise ValueError(
                f"a row needs a cell per column ({len(self.columns)}). Received: {len(cells)}"
            )
        self.rows.append(list(cells))
        if self.live:
            self._print(self._row(self.rows[-1]))

    @staticmethod
    def _row(cells: list[Cell]) -> str:
        return "| " + " | ".join(_markdown_value(c) for c in cells) + " |"

    def markdown(self) -> str:
        return "\n".join([self._head(), *(self._row(r) for r in self.rows)])

    def to_json(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "note": self.note,
            "columns": self.columns,
            "rows": [[_json_value(c) for c in r] for r in self.rows],
        }


def machine() -> str:
    """Cores, CPU model, Python and the load average now."""
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    model = next((ln.split(":", 1)[1].strip() for ln in cpuinfo if ln.startswith("model name")), "")
    load = Path("/proc/loadavg").read_text().split()[:3]
    return (
        f"{os.cpu_count()} cores, {model or platform.processor()}, Python "
        f"{platform.python_version()}, load average before the run {' '.join(load)}"
    )


def bundle_summary(path: str | Path | None) -> str:
    """The bundle's folder, encoder file and the start of its hash."""
    # Imported here: this module is loaded before `use_code` picks the package.
    from logclust.embed.bundle import Bundle

    bundle = Bundle.load(path)
    name = bundle.encoder_path().name
    sha = bundle.manifest["files"][name]["sha256"]
    return f"{bundle.path} ({name}, sha256 {sha[:12]})"


class Output:
    """A benchmark's output: Markdown on stdout as it comes, JSON at `close()`.

    Args:
        script: the module's short name (`sidecar` for `bench.sidecar`).
        json_path: where the JSON goes; None writes none.
    """

    def __init__(self, script: str, json_path: str | Path | None = None) -> None:
        self.script = script
        self.json_path = Path(json_path) if json_path else None
        self.header_lines: dict[str, str] = {}
        self.items: list[dict[str, Any]] = []

    def __enter__(self) -> Output:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is None:
            self.close()

    def fact(self, key: str, value: str) -> None:
        """A `key: value` header line."""
        self.header_lines[key] = value
        print(f"{key}: {value}", flush=True)

    def header(
        self, bundle: str | Path | None = None, with_bundle: bool = True, **facts: str
    ) -> None:
        """What every benchmark prints first: machine, date, the command, what ran (each
        keyword as a `key words: value` line), the bundle."""
        self.fact("machine", machine())
        self.fact("date", time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
        self.fact("command", f"python -m bench.{self.script} {' '.join(sys.argv[1:])}".rstrip())
        for key, value in facts.items():
            self.fact(key.replace("_", " "), value)
        if with_bundle:
            self.fact("bundle", bundle_summary(bundle))

    def line(self, text: str = "") -> None:
        """A line of text (a note, a heading, a verdict)."""
        print(text, flush=True)
        self.items.append({"text": text})

    def table(
        self, columns: Sequence[str], title: str = "", note: str = "", live: bool = False
    ) -> Table:
        """A new table, printed by `show` (or, when `live`, its head now and each row as
        it is added)."""
        if live:
            self._title(title, note)
        t = Table(columns, title, note, live)
        self.items.append({"table": t})
        return t

    @staticmethod
    def _title(title: str, note: str) -> None:
        if title:
            print(f"\n## {title}\n", flush=True)
        if note:
            print(note + "\n", flush=True)

    def show(self, t: Table) -> None:
        """Prints a finished table under its title and note."""
        self._title(t.title, t.note)
        print(t.markdown(), flush=True)

    def close(self) -> None:
        """Writes the JSON file, if asked for."""
        if self.json_path is None:
            return
        items = [
            {"table": item["table"].to_json()} if "table" in item else item for item in self.items
        ]
        doc = {"script": f"bench.{self.script}", "header": self.header_lines, "items": items}
        self.json_path.write_text(json.dumps(doc, indent=1) + "\n")
