"""Handlers of the commands that talk to a running sidecar: `send`, `latency`, `clusters`,
`forget`.

They need the client and the CLI's file reading and writing only, never the server or the
model runtime, so these commands start quickly (`logclust.cli.main` imports a command's
module when the command runs).
"""

from __future__ import annotations

import argparse
import sys
import time

import pyarrow as pa

from logclust.cli import fleet
from logclust.cli.io import TableWriter, format_table, read_input
from logclust.client import DEFAULT_ADDR, Client, ClientTls
from logclust.client.plots import (
    PLOT_EXTRA_MISSING,
    PLOT_QUANTILES,
    plotting_available,
    write_p99_plot,
)
from logclust.client.tables import groups_table
from logclust.wire import ipc


def client_tls(args: argparse.Namespace) -> ClientTls | None:
    """`--tls-ca/--tls-cert/--tls-key` of a client command; None: plaintext."""
    if args.tls_ca is None and args.tls_cert is None and args.tls_key is None:
        return None
    return ClientTls(ca_file=args.tls_ca, cert_file=args.tls_cert, key_file=args.tls_key)


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
    """`logclust send`: streams a file; labelled batches are written as they arrive (the
    file is written while the sidecar labels the next batches), or counted per cluster."""
    table = read_input(args.input, args.log_format)
    if table.num_rows == 0:
        raise ValueError(f"Nothing to label. Received: 0 rows in {args.input}")
    progress = _Progress(table.num_rows)
    done = 0
    with Client(args.addr, tls=client_tls(args)) as client:
        labelled = client.label_stream(ipc.iter_slices(table, args.batch_size))
        if args.out:
            with TableWriter(args.out) as writer:
                for batch in labelled:
                    writer.write(batch)
                    progress(writer.rows)
            print(f"wrote {writer.rows} labelled rows to {args.out}")
            return 0
        ids = []
        for batch in labelled:
            ids.append(batch.column("cluster_id"))
            done += batch.num_rows
            progress(done)
    counts = pa.table({"cluster_id": pa.chunked_array(ids)}).group_by("cluster_id")
    print(format_table(counts.aggregate([("cluster_id", "count")]).sort_by("cluster_id"), "table"))
    return 0


def cmd_latency(args: argparse.Namespace) -> int:
    """`logclust latency`: quantiles per cluster (and window), optional p99 plot."""
    if len(_addrs(args)) > 1:
        return fleet.cmd_fleet_latency(args, client_tls(args))
    with Client(_addrs(args)[0], tls=client_tls(args)) as client:
        table = client.latency(
            quantiles=args.quantiles,
            since_s=args.since,
            window_s=args.window,
            source=args.source,
            by=args.by,
        )
        if args.plot and not plotting_available():
            print(PLOT_EXTRA_MISSING, file=sys.stderr)
        elif args.plot:
            window_s = args.window or 60.0
            over_time = client.latency(
                quantiles=PLOT_QUANTILES,
                since_s=args.since,
                window_s=window_s,
                source=args.source,
            )
            clusters = client.clusters(args.source)
            path = write_p99_plot(over_time, clusters, args.plot, window_s=window_s)
            print(f"wrote {path}", file=sys.stderr)
    print(format_table(table, args.format))
    return 0


def cmd_clusters(args: argparse.Namespace) -> int:
    """`logclust clusters`: every cluster with its template and exemplars."""
    if len(_addrs(args)) > 1:
        return fleet.cmd_fleet_clusters(args, client_tls(args))
    with Client(_addrs(args)[0], tls=client_tls(args)) as client:
        table = client.clusters(args.source)
    if args.by == "group":
        table = groups_table(table)
    print(format_table(table, args.format))
    return 0


def _addrs(args: argparse.Namespace) -> list[str]:
    """The `--addr` given (repeatable for the fleet queries), or the default."""
    args.addr = args.addr or [DEFAULT_ADDR]
    return list(args.addr)


def cmd_forget(args: argparse.Namespace) -> int:
    """`logclust forget`: exits 1 when the sidecar did not know the source."""
    with Client(args.addr, tls=client_tls(args)) as client:
        found = client.forget(args.source)
    print(f"forgot source {args.source!r}" if found else f"no source {args.source!r}")
    return 0 if found else 1
