"""`logclust latency` and `logclust clusters` with several `--addr`: one answer for the
fleet (`logclust.cli.fleet_query`), sidecars that did not answer named on stderr."""

from __future__ import annotations

import argparse
import sys

from logclust.cli.fleet_query import FleetAnswer, fleet_clusters, fleet_latency
from logclust.cli.io import format_table
from logclust.client import ClientTls


def _report(answer: FleetAnswer, fmt: str) -> int:
    """Prints the table; names each unreachable sidecar; 1 when none answered."""
    for addr, why in answer.unreachable.items():
        print(f"unreachable: {addr} ({why})", file=sys.stderr)
    print(format_table(answer.table, fmt))
    return 1 if answer.unreachable and answer.table.num_rows == 0 else 0


def cmd_fleet_latency(args: argparse.Namespace, tls: ClientTls | None) -> int:
    """`logclust latency --addr A --addr B ...`."""
    if args.plot:
        raise ValueError(f"--plot takes one --addr. Received: {len(args.addr)} addresses")
    answer = fleet_latency(args.addr, args.quantiles, args.since, args.window, args.source, tls=tls)
    return _report(answer, args.format)


def cmd_fleet_clusters(args: argparse.Namespace, tls: ClientTls | None) -> int:
    """`logclust clusters --addr A --addr B ...`."""
    return _report(fleet_clusters(args.addr, args.source, tls=tls), args.format)
