"""CLI subcommands of the sidecar: `serve`, `send`, `latency`, `clusters`, `demo`.

`logclust.cli` registers them with `add_service_commands(subparsers)`; each sets
`func` to its handler, which takes the parsed namespace and returns an exit code.
`python -m logclust.cli_service ...` runs them on their own.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import re
import sys
import time
from pathlib import Path

import pyarrow as pa

from logclust.server.config import DEFAULT_LISTEN

logger = logging.getLogger(__name__)

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
# Rows per encoder call in the sidecar. Misses arrive a few at a time, and on one core
# small batches were both faster and far lighter than 64 (BENCHMARKS.md: about 310 vs
# 250-270 lines/s, and 110 MB less peak RSS, on loghub and cold lines).
SERVE_ENCODER_BATCH = 8
FORMATS = ("table", "json", "csv")


def parse_duration(text: str) -> float:
    """`'10s'`, `'15m'`, `'2h'`, `'1d'`, `'250ms'` or plain seconds -> seconds."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(ms|s|m|h|d)?\s*", text)
    if m is None:
        raise argparse.ArgumentTypeError(f"not a duration like 10s, 15m, 2h. Received: {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2) or "s"]


def parse_quantiles(text: str) -> list[float]:
    """`'0.5,0.99'` -> `[0.5, 0.99]`, each in [0, 1]."""
    try:
        qs = [float(q) for q in text.split(",") if q.strip()]
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"quantiles are numbers. Received: {text!r}") from e
    if not qs or any(not 0.0 <= q <= 1.0 for q in qs):
        raise argparse.ArgumentTypeError(f"quantiles must be in [0, 1]. Received: {text!r}")
    return qs


def add_service_commands(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Registers `serve`, `send`, `latency`, `clusters` and `demo` on `subparsers`."""
    p = subparsers.add_parser("serve", help="run the sidecar (gRPC)")
    p.add_argument("--listen", default=DEFAULT_LISTEN, help="host:port (default %(default)s)")
    p.add_argument("--bundle", default=None, help="model bundle (default: the built-in one)")
    p.add_argument("--store", default=None, help="state directory (default: memory only)")
    p.add_argument("--metrics-port", type=int, default=None, help="Prometheus HTTP port")
    p.add_argument("--flush-interval", type=float, default=1.0, help="seconds (max 5)")
    p.add_argument("--window", type=parse_duration, default=10.0, help="base latency window")
    p.add_argument("--retention", type=parse_duration, default=6 * 3600.0)
    p.add_argument(
        "--encoder-batch",
        type=int,
        default=SERVE_ENCODER_BATCH,
        help="rows per encoder call (default %(default)s)",
    )
    p.set_defaults(func=cmd_serve)

    p = subparsers.add_parser("send", help="label a file through a sidecar")
    p.add_argument("input", help="text (one record per line), .csv, .parquet or .arrow file")
    p.add_argument("--addr", default=DEFAULT_LISTEN)
    p.add_argument("--out", default=None, help="write labelled rows (.parquet, .csv, .arrow)")
    p.add_argument("--batch-size", type=int, default=10_000)
    p.set_defaults(func=cmd_send)

    p = subparsers.add_parser("latency", help="per-cluster latency quantiles")
    p.add_argument("--addr", default=DEFAULT_LISTEN)
    p.add_argument("--since", type=parse_duration, default=900.0, help="e.g. 15m (default)")
    p.add_argument("--window", type=parse_duration, default=None, help="e.g. 10s, 1m")
    p.add_argument("--quantiles", type=parse_quantiles, default=[0.5, 0.9, 0.99])
    p.add_argument("--source", default=None)
    p.add_argument("--format", choices=FORMATS, default="table")
    p.add_argument("--plot", default=None, help="PNG of p99 per cluster over time")
    p.set_defaults(func=cmd_latency)

    p = subparsers.add_parser("clusters", help="clusters and their descriptions")
    p.add_argument("--addr", default=DEFAULT_LISTEN)
    p.add_argument("--source", default=None)
    p.add_argument("--format", choices=FORMATS, default="table")
    p.set_defaults(func=cmd_clusters)

    p = subparsers.add_parser("demo", help="Online Boutique-like traffic through a sidecar")
    p.add_argument("--rows", type=int, default=20_000)
    p.add_argument("--plot", default="logclust-demo-p99.png", help="p99-over-time PNG")
    p.add_argument("--bundle", default=None, help="model bundle (default: the built-in one)")
    p.add_argument("--batch-size", type=int, default=1000)
    p.set_defaults(func=cmd_demo)


def _setup_logging() -> None:
    # A server reports where it listens and when it stops, even without -v.
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    ours = logging.getLogger("logclust")
    if ours.getEffectiveLevel() > logging.INFO:
        ours.setLevel(logging.INFO)


def cmd_serve(args: argparse.Namespace) -> int:
    """`logclust serve`: runs until SIGTERM/SIGINT."""
    from logclust.labeler import Labeler
    from logclust.server.app import serve
    from logclust.server.config import ServerConfig
    from logclust.server.memory import lean_process_memory

    _setup_logging()
    lean_process_memory()
    config = ServerConfig(
        listen=args.listen,
        store_dir=args.store,
        metrics_port=args.metrics_port,
        flush_interval_s=args.flush_interval,
        window_s=int(args.window),
        retention_s=int(args.retention),
    )
    serve(config, Labeler.load(args.bundle, batch_size=args.encoder_batch))
    return 0


class _Progress:
    """One self-overwriting progress line on stderr."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.t0 = time.perf_counter()

    def __call__(self, done: int) -> None:
        rate = done / max(time.perf_counter() - self.t0, 1e-9)
        sys.stderr.write(f"\rlabelled {done:,}/{self.total:,} rows ({rate:,.0f} rows/s)")
        sys.stderr.flush()
        if done >= self.total:
            sys.stderr.write("\n")


def cmd_send(args: argparse.Namespace) -> int:
    """`logclust send`: streams a file, writes or summarises the labelled rows."""
    from logclust.arrow_io import read_table
    from logclust.client import Client

    table = read_table(args.input)
    with Client(args.addr) as client:
        labelled = client.label(table, args.batch_size, progress=_Progress(table.num_rows))
    if args.out:
        write_table(labelled, args.out)
        print(f"wrote {labelled.num_rows} labelled rows to {args.out}")
    else:
        counts = labelled.group_by("cluster_id").aggregate([("cluster_id", "count")])
        print(format_table(counts.sort_by("cluster_id"), "table"))
    return 0


def cmd_latency(args: argparse.Namespace) -> int:
    """`logclust latency`: quantiles per cluster (and window), optional p99 plot."""
    from logclust.client import Client

    with Client(args.addr) as client:
        table = client.latency(
            quantiles=args.quantiles,
            since_s=args.since,
            window_s=args.window,
            source=args.source,
        )
        if args.plot:
            from logclust.demo import write_p99_plot

            over_time = client.latency(
                quantiles=[0.99],
                since_s=args.since,
                window_s=args.window or 60.0,
                source=args.source,
            )
            path = write_p99_plot(over_time, client.clusters(args.source), args.plot)
            print(f"wrote {path}", file=sys.stderr)
    print(format_table(table, args.format))
    return 0


def cmd_clusters(args: argparse.Namespace) -> int:
    """`logclust clusters`: every cluster with its template and exemplars."""
    from logclust.client import Client

    with Client(args.addr) as client:
        table = client.clusters(args.source)
    print(format_table(table, args.format))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """`logclust demo`: exits 1 when a demo check (ARI, p99 accuracy, slowest) fails."""
    from logclust.demo import run_demo

    report = run_demo(
        rows=args.rows, plot=args.plot, bundle=args.bundle, batch_size=args.batch_size
    )
    print(report.render())
    return 0 if report.passed else 1


def write_table(table: pa.Table, path: str | Path) -> None:
    """Writes by suffix: `.csv`, `.arrow`/`.feather`/`.ipc`, else Parquet."""
    suffix = Path(path).suffix.lower()
    if suffix == ".csv":
        from pyarrow import csv

        csv.write_csv(_flatten_lists(table), path)
    elif suffix in (".arrow", ".feather", ".ipc"):
        with pa.OSFile(str(path), "wb") as f, pa.ipc.new_file(f, table.schema) as w:
            w.write_table(table)
    else:
        import pyarrow.parquet as pq

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
        from pyarrow import csv

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


def main(argv: list[str] | None = None) -> int:
    """Runs one subcommand (for `python -m logclust.cli_service`)."""
    parser = argparse.ArgumentParser(prog="logclust")
    add_service_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
