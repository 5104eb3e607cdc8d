"""Clusters as users get them: every loghub-2k system streamed through a real sidecar.

A `logclust serve` child process (default settings, one core) gets each system as its
own `source`; k is never given. Every system's lines are sent in batches, 5 passes, the
digits of each pass after the first re-drawn; the rows of the last pass are scored
against the ground-truth templates: GA (loghub's grouping accuracy), FGA (Loghub-2.0's
F1 of template-level grouping), PA (share of lines whose cluster's template reads as
their true template), template accuracy (share of clusters right in lines and text) and
ARI (`training.evaluate.grouping`, `training.evaluate.streaming`). Drain3 (default
settings, as `TemplateMiner()` runs without a drain3.ini) gets the same passes in the
same run, its last pass scored the same way (`--drain3-masking example`, the default,
adds the masking rules drain3 ships as its example). The demo's HTTP traffic (13 kinds) is
streamed too, scored after its first 1,000 rows.

    python -m bench.stream_quality [--data ../shared/data/loghub-2k] [--passes 5]
        [--format content|raw|line] [--report models/default/REPORT.md] [--json PATH]

`--format raw` sends the raw lines (headers included) with the system's `log_format`
preset, as `logclust send --log-format` does; `content` sends the message part; `line`
sends the raw lines with no format, as a log agent that knows none does.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from bench.harness import cli
from bench.harness.peers import has_drain3
from bench.harness.procs import SERVER_CORE
from bench.harness.report import Cell, Output, Table, fmt
from bench.harness.sidecar import Sidecar
from bench.workloads import has_loghub
from logclust.cli.traffic import generate_traffic
from logclust.client import Client
from logclust.text.log_format import LogFormat, apply_log_format
from training.data import TEST_SYSTEMS, LogSet, default_data_dir, load_loghub
from training.evaluate.grouping import pa as parsing_accuracy
from training.evaluate.report import write_section
from training.evaluate.streaming import passes, score, template_accuracy

# A smoke run streams these systems' first `SMOKE_LINES` lines.
SMOKE_SYSTEMS = ("HDFS", "Android")
SMOKE_LINES = 150
# HTTP rows scored only after this many (the first clusters form there).
HTTP_SKIP = 1000
METHODS = ("logclust", "drain3")
# Scores with one column per method, in table order: key, header, format.
SCORES = (
    ("ga", "GA", ".3f"),
    ("fga", "FGA", ".3f"),
    ("pa", "PA", ".3f"),
    ("ta", "template acc.", ".3f"),
    ("ari", "ARI", ".3f"),
)


# The masking rules drain3 ships as its example (`examples/drain3.ini`, and in comments
# of `drain3/masking.py`): what a user running Drain3 on logs configures first.
# `TemplateMinerConfig()` alone masks nothing (`--drain3-masking none`).
DRAIN3_EXAMPLE_MASKING = (
    (r"((?<=[^A-Za-z0-9])|^)(([0-9a-f]{2,}:){3,}([0-9a-f]{2,}))((?=[^A-Za-z0-9])|$)", "ID"),
    (r"((?<=[^A-Za-z0-9])|^)(\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3})((?=[^A-Za-z0-9])|$)", "IP"),
    (r"((?<=[^A-Za-z0-9])|^)([0-9a-f]{6,} ?){3,}((?=[^A-Za-z0-9])|$)", "SEQ"),
    (r"((?<=[^A-Za-z0-9])|^)([0-9A-F]{4} ?){4,}((?=[^A-Za-z0-9])|$)", "SEQ"),
    (r"((?<=[^A-Za-z0-9])|^)(0x[a-f0-9A-F]+)((?=[^A-Za-z0-9])|$)", "HEX"),
    (r"((?<=[^A-Za-z0-9])|^)([\-\+]?\d+)((?=[^A-Za-z0-9])|$)", "NUM"),
    (r"(?<=executed cmd )(\".+?\")", "CMD"),
)


@dataclass(frozen=True)
class Labelled:
    """One method's last pass over a stream: an id per line, and each id's template."""

    ids: list[int]
    templates: dict[int, str]


def drain_stream(lines_by_pass: list[list[str]], masking: str = "example") -> Labelled:
    """Drain3 (default settings; with `masking="example"`, drain3's example masking
    rules) over every pass; the last pass (every line its own cluster, no templates, in
    a smoke run without drain3)."""
    if not has_drain3():
        return Labelled(list(range(len(lines_by_pass[-1]))), {})
    from drain3 import TemplateMiner
    from drain3.masking import MaskingInstruction
    from drain3.template_miner_config import TemplateMinerConfig

    cfg = TemplateMinerConfig()  # the defaults, no drain3.ini read
    cfg.profiling_enabled = False
    if masking == "example":
        cfg.masking_instructions = [MaskingInstruction(p, m) for p, m in DRAIN3_EXAMPLE_MASKING]
    miner = TemplateMiner(config=cfg)
    ids: list[int] = []
    for lines in lines_by_pass:
        ids = [miner.add_log_message(line)["cluster_id"] for line in lines]
    return Labelled(ids, {c.cluster_id: c.get_template() for c in miner.drain.clusters})


def sidecar_stream(
    client: Client,
    name: str,
    lines_by_pass: list[list[str]],
    batch: int,
    log_format: str | None = None,
) -> Labelled:
    """Sends every pass of one system as source `name`; the last pass and the
    sidecar's templates of that source after it."""
    ids: list[int] = []
    for lines in lines_by_pass:
        table = pa.table({"body": pa.array(lines, pa.string()), "source": [name] * len(lines)})
        if log_format is not None:
            table = apply_log_format(LogFormat.resolve(log_format), table)
        ids = client.label(table, batch_size=batch).column("cluster_id").to_pylist()
    rows = client.clusters(source=name).to_pylist()
    return Labelled(ids, {r["cluster_id"]: r["template"] for r in rows})


def smoke_sets(data: Path) -> dict[str, LogSet]:
    """The first lines of two systems (none without loghub)."""
    if not has_loghub(data):
        return {}
    sets = load_loghub(data, SMOKE_SYSTEMS)
    return {
        n: LogSet(
            n,
            ls.raw[:SMOKE_LINES],
            ls.content[:SMOKE_LINES],
            (ls.templates or [])[:SMOKE_LINES],
            (ls.template_texts or [])[:SMOKE_LINES],
        )
        for n, ls in sets.items()
    }


def log_sets(args: argparse.Namespace) -> dict[str, LogSet]:
    """The loghub systems to stream (a few lines of two in a smoke run)."""
    if args.smoke:
        return smoke_sets(args.data)
    if not has_loghub(args.data):
        raise SystemExit(f"no loghub-2k data in {args.data} (give --data)")
    sets = load_loghub(args.data)
    if args.systems:
        sets = {n: sets[n] for n in args.systems.split(",")}
    return sets


def scores(
    truth: list[str], truth_texts: list[str] | None, got: Labelled
) -> dict[str, float | None]:
    """Every score of one method's last pass."""
    s = score(truth, got.ids).to_dict()
    if truth_texts is None or not got.templates:
        return {**s, "pa": None, "ta": None}
    return {
        **s,
        "pa": parsing_accuracy(truth_texts, got.ids, got.templates),
        "ta": template_accuracy(truth_texts, got.ids, got.templates),
    }


def stream_one(client: Client, name: str, ls: LogSet, args: argparse.Namespace) -> dict[str, Any]:
    """One system through the sidecar and through Drain3: the scores of each last pass."""
    lines = ls.content if args.format == "content" else ls.raw
    t0 = time.perf_counter()
    fmt_name = name if args.format == "raw" else None
    mine = sidecar_stream(client, name, passes(lines, args.passes, args.seed), args.batch, fmt_name)
    seconds = time.perf_counter() - t0
    # Drain3 gets the message part either way (it has no header parser).
    drain = drain_stream(passes(ls.content, args.passes, args.seed), args.drain3_masking)
    truth = ls.templates or []
    row: dict[str, Any] = {"seconds": seconds}
    for method, got in zip(METHODS, (mine, drain), strict=True):
        for key, value in scores(truth, ls.template_texts, got).items():
            row[f"{method}_{key}"] = value
    print(
        f"{name:10s} GA {row['logclust_ga']:.3f} (Drain3 {row['drain3_ga']:.3f})  "
        f"FGA {row['logclust_fga']:.3f} ({row['drain3_fga']:.3f})  ARI {row['logclust_ari']:.3f}"
        f" ({row['drain3_ari']:.3f})  clusters {row['logclust_clusters']:.0f}/"
        f"{row['logclust_templates']:.0f}  {seconds:.0f} s",
        flush=True,
    )
    return row


def http_stream(client: Client, n: int, seed: int, masking: str) -> dict[str, Any]:
    """The demo's traffic as its own source, and through Drain3: scores after the first
    `HTTP_SKIP` rows (true groups: the request kinds; no true templates)."""
    traffic = generate_traffic(n, seed=seed)
    table = traffic.set_column(
        traffic.schema.get_field_index("source"), "source", pa.array(["http"] * n)
    )
    ids = client.label(table, batch_size=500).column("cluster_id").to_pylist()
    kinds = traffic.column("kind").to_pylist()[HTTP_SKIP:]
    drain = drain_stream([traffic.column("body").to_pylist()], masking)
    row: dict[str, Any] = {}
    for method, got in (("logclust", ids), ("drain3", drain.ids)):
        for key, value in score(kinds, got[HTTP_SKIP:]).to_dict().items():
            row[f"{method}_{key}"] = value
    print(
        f"HTTP       GA {row['logclust_ga']:.3f} (Drain3 {row['drain3_ga']:.3f})  "
        f"ARI {row['logclust_ari']:.3f} ({row['drain3_ari']:.3f})  clusters "
        f"{row['logclust_clusters']:.0f}/{row['logclust_templates']:.0f}  -1 "
        f"{row['logclust_unassigned']:.3%}",
        flush=True,
    )
    return row


def run(args: argparse.Namespace, out: Output) -> dict[str, dict[str, Any]]:
    sets = log_sets(args)
    out.header(
        args.bundle,
        passes=str(args.passes),
        format=args.format,
        drain3_masking=args.drain3_masking,
        encoder_variant=args.encoder_variant,
    )
    rows: dict[str, dict[str, Any]] = {}
    extra = ["--encoder-variant", args.encoder_variant]
    with Sidecar(args.bundle, SERVER_CORE, extra=extra) as side, Client(side.addr) as client:
        client.wait_ready(120)
        for name, ls in sets.items():
            rows[name] = stream_one(client, name, ls, args)
        rows["HTTP"] = http_stream(client, args.http_rows, args.seed, args.drain3_masking)
    return rows


def _cells(r: dict[str, Any]) -> list[Cell]:
    cells: list[Cell] = []
    for key, _, spec in SCORES:
        for m in METHODS:
            v = r.get(f"{m}_{key}")
            cells.append(None if v is None else fmt(v, spec))
    return cells


def _mean(rows: list[dict[str, Any]]) -> dict[str, Any]:
    keys = {k for r in rows for k in r}
    out = {}
    for k in keys:
        vals = [r[k] for r in rows if r.get(k) is not None]
        out[k] = float(np.mean(vals)) if len(vals) == len(rows) else None
    return out


def means(rows: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Means over the loghub systems: all, the train systems, the test systems."""
    logs = {n: r for n, r in rows.items() if n != "HTTP"}
    groups = {
        f"mean, {len(logs)} systems": list(logs),
        "mean, train systems": [n for n in logs if n not in TEST_SYSTEMS],
        f"mean, test systems ({', '.join(TEST_SYSTEMS)})": [n for n in logs if n in TEST_SYSTEMS],
    }
    return {label: _mean([logs[n] for n in names]) for label, names in groups.items() if names}


def results_table(out: Output, rows: dict[str, dict[str, Any]], args: argparse.Namespace) -> Table:
    """The results as a table (its note says how they were made)."""
    note = (
        f"Streamed through a real sidecar (`logclust serve`, default settings), k never "
        f"given, every system its own source, {args.passes} passes (digits re-drawn after "
        f"the first), `--format {args.format}`, last pass scored; Drain3 (default "
        f"settings, masking: `{args.drain3_masking}`) gets the same passes. HTTP: the "
        f"demo traffic, {args.http_rows:,} rows, "
        f"scored after the first {HTTP_SKIP:,} (true groups: the 13 request kinds). "
        f"Command: `python -m bench.stream_quality --passes {args.passes} --format "
        f"{args.format} --drain3-masking {args.drain3_masking} --encoder-variant "
        f"{args.encoder_variant}`."
    )
    heads = [f"{p}{h}" for _, h, _ in SCORES for p in ("", "Drain3 ")]
    t = out.table(
        ["stream", "templates", "clusters", "Drain3 clusters", *heads, "rows -1"], note=note
    )
    for n, r in rows.items():
        label = f"{n} (test)" if n in TEST_SYSTEMS else ("HTTP demo" if n == "HTTP" else n)
        t.add(
            label,
            fmt(r["logclust_templates"], ".0f"),
            fmt(r["logclust_clusters"], ".0f"),
            fmt(r["drain3_clusters"], ".0f"),
            *_cells(r),
            fmt(r["logclust_unassigned"], ".2%"),
        )
    for label, r in means(rows).items():
        t.add(f"**{label}**", None, None, None, *_cells(r), None)
    return t


def main(argv: list[str] | None = None) -> int:
    p = cli.parser(__doc__.split("\n\n")[0], "stream_quality")
    p.add_argument("--data", type=Path, default=default_data_dir())
    p.add_argument("--bundle", type=Path, default=None)
    p.add_argument("--passes", type=int, default=5)
    p.add_argument("--batch", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--http-rows", type=int, default=20_000)
    p.add_argument("--systems", default="", help="comma list of loghub systems (default: all)")
    p.add_argument("--format", choices=("content", "raw", "line"), default="content")
    p.add_argument(
        "--encoder-variant",
        choices=("auto", "float32", "int8"),
        default="auto",
        help="the sidecar's `--encoder-variant` (default: auto, as `logclust serve`)",
    )
    p.add_argument(
        "--drain3-masking",
        choices=("example", "none"),
        default="example",
        help="Drain3's masking: the rules drain3 ships as its example, or none",
    )
    p.add_argument("--report", type=Path, default=None, help="write the table into this file")
    args = p.parse_args(argv)
    cli.smoke(args, passes=2, batch=100, http_rows=1500)
    with cli.output(args, "stream_quality") as out:
        t = results_table(out, run(args, out), args)
        out.line()
        out.show(t)
    if args.report is not None:
        text = f"{t.note}\n\n{t.markdown()}\n"
        title = f"## Streaming quality, k never given (`--format {args.format}`)\n\n"
        write_section(args.report, f"stream-{args.format}", title + text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
