"""Handlers of the commands that run the model in this process: `embed`, `label`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pyarrow as pa

from logclust.cli.io import read_input, write_table
from logclust.cluster.labeler import Labeler


def _write_output(table: pa.Table, out: Path) -> None:
    write_table(table, out)
    print(f"wrote {table.num_rows} rows to {out}", file=sys.stderr)


def cmd_embed(args: argparse.Namespace) -> int:
    table = read_input(args.input, args.log_format)
    lab = Labeler.load(args.bundle, variant=args.variant)
    emb = lab.embed(table.column("body"))
    col = pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1)), lab.dim)
    _write_output(table.append_column("embedding", col), args.output)
    return 0


def cmd_label(args: argparse.Namespace) -> int:
    if args.engine == "spark":
        return _label_on_spark(args)
    table = read_input(args.input, args.log_format)
    lab = Labeler.load(args.bundle, variant=args.variant)
    if args.k is not None or args.fit:
        lab.fit(table.column("body"), k=args.k)
    ids = lab.label(table.column("body"))
    _write_output(table.append_column("cluster_id", pa.array(ids, pa.int32())), args.output)
    return 0


def _label_on_spark(args: argparse.Namespace) -> int:
    """`logclust label --engine spark`: pyspark is imported here only (the `spark` extra)."""
    if args.log_format is not None:
        raise ValueError(f"--engine spark labels the body as it is. Received: {args.log_format=}")
    try:
        from logclust.archive.spark import FitSpec, label_files
    except ImportError as e:
        raise ValueError(f"--engine spark needs logclust[spark]. Received: {e}") from e
    fit = FitSpec(fit=args.fit, k=args.k)
    out = str(args.output)
    rows = label_files(str(args.input), out, args.bundle, args.master, fit, args.variant)
    print(f"wrote {rows} rows to {args.output}", file=sys.stderr)
    return 0
