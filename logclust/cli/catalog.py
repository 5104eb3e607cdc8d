"""`logclust catalog build` and `logclust catalog show`: the fleet's catalog of known
kinds (`logclust.cluster.catalog`; docs/fleet.md)."""

from __future__ import annotations

import argparse
import sys

from logclust.cli.io import read_input
from logclust.cluster.catalog import bundle_id, read_catalog, write_catalog
from logclust.cluster.catalog_build import build_catalog
from logclust.cluster.config import StreamClusterConfig
from logclust.cluster.labeler import Labeler
from logclust.cluster.state import decode_state
from logclust.sidecar.catalog_fold import fold_stores


def cmd_catalog_build(args: argparse.Namespace) -> int:
    """`logclust catalog build`: writes the catalog and prints what it holds."""
    if not args.input and not args.store:
        raise ValueError("catalog build needs --input FILE or --store DIR. Received: neither")
    labeler = Labeler.load(args.bundle)
    config = StreamClusterConfig(threshold=args.threshold, keep_headers=args.keep_headers)
    tables = [read_input(path, args.log_format) for path in args.input]
    base = None if args.base is None else read_catalog(args.base)
    if base is not None:
        base.check_bundle(bundle_id(labeler.bundle.manifest), args.base)
    if args.store:
        catalog = fold_stores(args.store, labeler, config, extra=tables, base=base)
    else:
        catalog = build_catalog(tables, labeler, config, base=base)
    write_catalog(catalog, args.out)
    print(
        f"wrote {args.out}: {catalog.clusters} clusters in {len(catalog.states)} sources "
        f"(digest {catalog.digest[:12]})",
        file=sys.stderr,
    )
    return 0


def cmd_catalog_show(args: argparse.Namespace) -> int:
    """`logclust catalog show`: checks the file; one line per source."""
    catalog = read_catalog(args.catalog)
    print(f"catalog {args.catalog}: digest {catalog.digest[:12]}, bundle {catalog.bundle[:12]}")
    for name in catalog.states:
        state, _ = decode_state(catalog.state_bytes(name), catalog.dim)
        print(f"  {name}: {state.table.k} clusters, ids below {catalog.next_ids[name]}")
    return 0
